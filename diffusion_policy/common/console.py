"""What the command-line tools print: this package's messages, real warnings, no library chatter."""

from __future__ import annotations

import logging


def setup_console_logging(level: int = logging.INFO) -> None:
    """This package's log records at `level`; every other library's at WARNING and above only (their
    INFO lines, e.g. PyOpenGL's 'No OpenGL_accelerate module loaded', are not for our users)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("diffusion_policy").setLevel(level)
