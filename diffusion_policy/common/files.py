"""Small file helpers every module uses: atomic writes and file hashes.

An atomic write goes to a hidden temp file next to its target, then `os.replace` moves it over the
target (atomic on POSIX): a reader sees the old file or the new one, never half of one, and a crash
leaves at most a `.<name>.<pid>.<rand>.tmp` behind. (data_collection/storage.py adds fsyncs and
directory swaps for datasets that must survive power loss and kill -9 mid-commit.)
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def write_atomic(path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call `write(binary_file)` on a temp file next to `path`, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def to_jsonable(value: Any) -> Any:
    """numpy scalars/arrays, tuples and nested containers -> plain JSON values."""
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def write_json_atomic(path, data: Any, indent: int = 2) -> Path:
    return write_text_atomic(path, json.dumps(to_jsonable(data), indent=indent) + "\n")


def sha256_of_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
