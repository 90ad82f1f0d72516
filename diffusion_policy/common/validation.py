"""Checks every entry point runs on its arguments before any work starts (one-line ValueErrors)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def check_device(device: str):
    """The torch device named by `device`; ValueError unless a policy can be put there."""
    import torch  # here: the CLIs import this module before argparse runs

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device; use cpu or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available here; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif parsed.type != "cpu":
        raise ValueError(f"--device {device}: only cpu and cuda:N are supported")
    return parsed


def check_output_dir(path, flag: str = "--output_dir") -> Path:
    """ValueError unless `path` is (or can become) a directory this process can write files in.

    Nothing is created: a temporary file is written and removed in the nearest existing ancestor."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file; pass a directory")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{flag} {path}: {ancestor} is a file, so the directory cannot be created")
    try:
        with tempfile.NamedTemporaryFile(dir=ancestor, prefix=".bac-write-check-"):
            pass
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot write in {ancestor} ({error.strerror}); choose a writable "
                         "directory") from None
    return path


def check_range(flag: str, value, low=None, high=None, allow_none: bool = True) -> None:
    """ValueError naming `flag` and its allowed range unless low <= value <= high."""
    if value is None and allow_none:
        return
    if value is None or (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            allowed = f">= {low}"
        elif low is None:
            allowed = f"<= {high}"
        else:
            allowed = f"in [{low}, {high}]"
        raise ValueError(f"{flag} must be {allowed}, got {value}")

