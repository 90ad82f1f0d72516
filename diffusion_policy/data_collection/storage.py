"""Crash-safe file writes for the dataset writers.

Every file is written to a hidden temp name next to its target (`.<name>.bac-tmp`), flushed and
fsynced, then moved over the target with `os.replace` (atomic on POSIX). Temp names never match
the globs readers use (`*.parquet`, `*.mp4`), so a half-written file is never read; a killed run
leaves them behind and the next writer opened on the directory deletes them.
"""

import fcntl
import io
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_SUFFIX = ".bac-tmp"
LOCK_NAME = ".bac_writer.lock"


def temp_path(path: Path) -> Path:
    return path.parent / f".{path.name}{TMP_SUFFIX}"


def commit_file(tmp: Path, path: Path) -> None:
    """fsync `tmp`, atomically move it onto `path`, fsync the directory (durable across power loss)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
    commit_file(tmp, path)


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=4, ensure_ascii=False) + "\n").encode())


def write_parquet_atomic(path: Path, schema: pa.Schema, tables: list[pa.Table]) -> None:
    """Write `tables` (one row group each, e.g. one per episode) as a snappy parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with pq.ParquetWriter(str(tmp), schema=schema, compression="snappy") as writer:
        for table in tables:
            if table.num_rows:
                writer.write_table(table.cast(schema))
    commit_file(tmp, path)


def write_pandas_parquet_atomic(path: Path, frame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    write_bytes_atomic(path, buffer.getvalue())


def read_json(path: Path, what: str):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: {what}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): {what}") from None


def remove_stale_temps(root: Path) -> list[Path]:
    """Delete the temp files/dirs a killed writer left under `root`; returns what was removed."""
    stale = sorted(p for p in root.rglob(f"*{TMP_SUFFIX}"))
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    return stale


def dir_has_content(root: Path) -> bool:
    return root.is_dir() and any(p.name != LOCK_NAME for p in root.iterdir())


class DirectoryLock:
    """Exclusive advisory lock (flock) on `<root>/.bac_writer.lock`; the kernel drops it on exit/kill."""

    def __init__(self, root: Path):
        self.path = root / LOCK_NAME
        self._file = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            raise RuntimeError(
                f"another writer is using {self.path.parent}; "
                "wait for it to finish or choose another --output_dir"
            ) from None

    def release(self) -> None:
        if self._file is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None
