"""Append-only JSON-lines log of training metrics (`logs.json.txt`, one dict per line)."""

from __future__ import annotations

import json
import numbers
import os
from typing import TextIO

from diffusion_policy.common.files import write_text_atomic


def numeric_items(log: dict) -> dict:
    """The entries of `log` that are plain numbers (videos, arrays and nested dicts are dropped)."""
    return {
        key: (int(value) if isinstance(value, numbers.Integral) else float(value))
        for key, value in log.items()
        if isinstance(value, numbers.Number) and not isinstance(value, bool) and not isinstance(value, complex)
    }


class JsonLogger:
    """`with JsonLogger(path) as logger: logger.log({'train_loss': 0.1, 'global_step': 3})`.

    Appends to an existing file, so a resumed run continues its log. With `resume_step`, lines
    logged at or after that global_step by the interrupted run (after its last checkpoint) are
    dropped first, as is a partial last line. Only numeric values are written.
    """

    def __init__(self, path: str, resume_step: int | None = None):
        self.path = path
        self.resume_step = resume_step
        self.file: TextIO | None = None

    def _keep(self, line: str) -> bool:
        if not line.endswith("\n"):
            return False  # cut off by a crash
        if self.resume_step is None:
            return True
        try:
            return json.loads(line).get("global_step", -1) < self.resume_step
        except json.JSONDecodeError:
            return False

    def start(self) -> None:
        if os.path.exists(self.path):
            with open(self.path) as f:
                lines = [line for line in f if self._keep(line)]
            write_text_atomic(self.path, "".join(lines))
        self.file = open(self.path, "a", buffering=1)  # noqa: SIM115 (closed in stop())

    def stop(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def log(self, data: dict) -> None:
        self.file.write(json.dumps(numeric_items(data)) + "\n")

    def __enter__(self) -> JsonLogger:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def read_json_log(path: str) -> list[dict]:
    """All complete lines of a JSON-lines log."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n") and line.strip()]
