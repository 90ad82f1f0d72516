"""Crash-safe file writes for the dataset writers.

Every file is written to a hidden temp name next to its target (`.<name>.bac-tmp`), flushed and
fsynced, then moved over the target with `os.replace` (atomic on POSIX). Temp names never match
the globs readers use (`*.parquet`, `*.mp4`), so a half-written file is never read; a killed run
leaves them behind and the next writer opened on the directory deletes them.
"""

import errno
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


class DirectoryBusyError(RuntimeError):
    """Another writer holds the output directory's lock."""


class DirectoryLock:
    """Exclusive advisory lock (flock) on `<root>/.bac_writer.lock`; the kernel drops it on exit/kill.

    The lock file is never deleted: a writer that unlinked it before unlocking would let a second
    writer create a new file, lock that one, and hold "the" lock at the same time as the first."""

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
            raise DirectoryBusyError(
                f"another writer is using {self.path.parent}; "
                "wait for it to finish or choose another --output_dir"
            ) from None

    def release(self) -> None:
        if self._file is None:
            return
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None


# ---------------------------------------------------------------------------------------------
# whole-directory commits: build the next version beside the directory, then swap the two

_RENAME_EXCHANGE = 2  # linux/fs.h


def _renameat2():
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):  # not Linux, or a libc without the wrapper
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries (Linux renameat2(RENAME_EXCHANGE)). Returns False where
    the platform or filesystem cannot (nothing moved then); other failures raise OSError."""
    import ctypes

    function = _renameat2()
    if function is None:
        return False
    at_fdcwd = -100
    if function(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(error, os.strerror(error), str(a))


def staging_dir(root: Path) -> Path:
    """Where the next version of `root` is built (a sibling: same filesystem, never read by readers)."""
    return root.parent / f".{root.name}.bac-staging"


def hardlink_tree(src: Path, dst: Path) -> None:
    """`dst` = a copy of `src` whose files are hard links (no data copied). Safe only because every
    write here replaces a file (temp + rename) instead of modifying it in place."""
    shutil.copytree(src, dst, copy_function=os.link, ignore=shutil.ignore_patterns(f"*{TMP_SUFFIX}"))


def directory_swap_supported(parent: Path) -> bool:
    """True if exchange_paths works in `parent` (checked on two empty temp dirs)."""
    import tempfile

    a, b = Path(tempfile.mkdtemp(dir=parent, prefix=".bac-swap-")), Path(tempfile.mkdtemp(dir=parent, prefix=".bac-swap-"))
    try:
        return exchange_paths(a, b)
    finally:
        shutil.rmtree(a, ignore_errors=True)
        shutil.rmtree(b, ignore_errors=True)
