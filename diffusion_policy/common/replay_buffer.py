"""Episode storage: every key's steps concatenated along time, plus the episode end indices.

Layout (the original Diffusion Policy zarr layout, zarr 2 API):
    data/<key>         (N, ...)  all steps of all episodes, in order
    meta/episode_ends  (E,) int64, exclusive end index of each episode in data
The root is either a zarr group (on disk, zip, or in memory; chunks stay compressed until read)
or a plain {'data': {...}, 'meta': {...}} dict of numpy arrays.
"""

import os
import shutil

import numpy as np
import zarr

EPISODE_ENDS_CHUNK = 1024
TARGET_CHUNK_BYTES = 4 * 2**20  # default time chunking aims at ~4 MiB per chunk


def _default_chunks(shape: tuple, dtype, growing: bool = False) -> tuple:
    """Chunk along time only, ~TARGET_CHUNK_BYTES per chunk (at most the array's length unless
    the array will keep growing)."""
    step_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    steps = max(1, TARGET_CHUNK_BYTES // max(step_bytes, 1))
    if not growing:
        steps = min(steps, max(shape[0], 1))
    return (steps,) + tuple(shape[1:])


def _open_store(path: str, mode: str):
    """zarr store for a directory or a `.zip` file."""
    path = os.path.expanduser(str(path))
    if mode == "r" and not os.path.exists(path):
        raise FileNotFoundError(f"replay buffer not found: {path} (check the dataset path in the task config)")
    if path.endswith(".zip"):
        return zarr.ZipStore(path, mode=mode)
    return zarr.DirectoryStore(path)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def _check_layout(root: zarr.Group, where: str) -> None:
    if "data" not in root or "meta" not in root or "episode_ends" not in root["meta"]:
        raise ValueError(f"{where} is not a replay buffer: expected groups data/ and meta/episode_ends")


class ReplayBuffer:
    """Episodes of synchronized arrays; `buffer[key]` is the (N, ...) array of all steps of `key`."""

    def __init__(self, root: zarr.Group | dict):
        self.root = root
        self._numpy_backing = {}  # key -> over-allocated array whose prefix is data[key] (numpy backend)

    # ---------------------------------------------------------------- construction
    @classmethod
    def create_empty_numpy(cls) -> "ReplayBuffer":
        return cls({"data": {}, "meta": {"episode_ends": np.zeros((0,), dtype=np.int64)}})

    @classmethod
    def create_empty_zarr(cls, store=None) -> "ReplayBuffer":
        """Empty zarr-backed buffer (in memory unless a store is given)."""
        root = zarr.group(store=zarr.MemoryStore() if store is None else store)
        root.require_group("data")
        meta = root.require_group("meta")
        if "episode_ends" not in meta:
            meta.zeros("episode_ends", shape=(0,), chunks=(EPISODE_ENDS_CHUNK,), dtype=np.int64, compressor=None)
        return cls(root)

    @classmethod
    def create_from_path(cls, path: str, mode: str = "r") -> "ReplayBuffer":
        """Open a zarr replay buffer on disk without loading it: mode 'r' (read), 'a' (append,
        created if missing) or 'w' (start empty). Writing a `.zip` this way needs
        `buffer.root.store.close()` at the end; `save_to_path` is simpler for zip files."""
        if mode not in ("r", "a", "w"):
            raise ValueError(f"mode must be 'r', 'a' or 'w', got {mode!r}")
        store = _open_store(path, mode)
        if mode == "r":
            root = zarr.open_group(store, mode="r")
            _check_layout(root, str(path))
            return cls(root)
        if mode == "w":
            zarr.group(store=store, overwrite=True)
        return cls.create_empty_zarr(store)

    @classmethod
    def copy_from_path(cls, path: str, keys: list | None = None, store=None) -> "ReplayBuffer":
        """Load `keys` (default: all) of a zarr replay buffer at `path` into memory.

        With `store=None` the arrays are decompressed into numpy; with a zarr store (e.g.
        `zarr.MemoryStore()`) the compressed chunks are copied as they are and decoded on access.
        """
        src_store = _open_store(path, "r")
        try:
            src_root = zarr.open_group(src_store, mode="r")
            _check_layout(src_root, str(path))
            available = list(src_root["data"].keys())
            keys = available if keys is None else list(keys)
            missing = [key for key in keys if key not in available]
            if missing:
                raise KeyError(f"{path} has no data keys {missing} (available: {available})")
            if store is None:
                root = {
                    "meta": {name: array[:] for name, array in src_root["meta"].arrays()},
                    "data": {key: src_root["data"][key][:] for key in keys},
                }
                return cls(root)
            root = zarr.group(store=store)
            root.require_group("data")
            zarr.copy_store(src_store, store, source_path="meta", dest_path="meta", if_exists="replace")
            for key in keys:
                zarr.copy_store(
                    src_store, store, source_path=f"data/{key}", dest_path=f"data/{key}", if_exists="replace"
                )
            return cls(root)
        finally:
            if isinstance(src_store, zarr.ZipStore):
                src_store.close()

    # ---------------------------------------------------------------- saving
    def save_to_store(self, store, chunks: dict | None = None, compressors: dict | None = None) -> None:
        """Write the buffer into an (empty) zarr store.

        numpy-backed data is chunked/compressed per `chunks` / `compressors` ({key: ...}; defaults:
        ~4 MiB time chunks, zarr's default compressor); zarr-backed data is copied chunk by chunk.
        """
        chunks = chunks or {}
        compressors = compressors or {}
        if self.backend == "zarr":
            zarr.copy_store(self.root.store, store)
            return
        root = zarr.group(store=store)
        data_group = root.require_group("data")
        meta_group = root.require_group("meta")
        for name, array in self.meta.items():
            meta_group.array(name, array, chunks=_default_chunks(array.shape, array.dtype), compressor=None)
        for key, array in self.data.items():
            kwargs = {"compressor": compressors[key]} if key in compressors else {}
            data_group.array(key, array, chunks=chunks.get(key, _default_chunks(array.shape, array.dtype)), **kwargs)

    def save_to_path(self, path: str, chunks: dict | None = None, compressors: dict | None = None,
                     attrs: dict | None = None) -> str:
        """Save as a zarr directory, or a zip file if `path` ends with `.zip`; replaces `path` atomically.

        `attrs` go to the root group's attributes (e.g. how the data was made)."""
        path = os.path.expanduser(str(path))
        tmp_path = f"{path}.tmp-{os.getpid()}"
        if path.endswith(".zip"):
            tmp_path += ".zip"
        _remove(tmp_path)  # leftover of an interrupted save
        store = _open_store(tmp_path, "w")
        try:
            self.save_to_store(store, chunks=chunks, compressors=compressors)
            if attrs:
                zarr.group(store=store).attrs.update(attrs)
        except BaseException:
            if isinstance(store, zarr.ZipStore):
                store.close()
            _remove(tmp_path)
            raise
        if isinstance(store, zarr.ZipStore):
            store.close()
        if os.path.isdir(path) and not path.endswith(".zip"):
            old_path = f"{path}.old-{os.getpid()}"
            os.replace(path, old_path)
            os.replace(tmp_path, path)
            shutil.rmtree(old_path)
        else:
            os.replace(tmp_path, path)
        return path

    # ---------------------------------------------------------------- properties
    @property
    def backend(self) -> str:
        return "numpy" if isinstance(self.root, dict) else "zarr"

    @property
    def data(self):
        return self.root["data"]

    @property
    def meta(self):
        return self.root["meta"]

    @property
    def episode_ends(self):
        """(E,) exclusive end index of each episode (numpy or zarr array)."""
        return self.meta["episode_ends"]

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(np.asarray(self.episode_ends[:]), prepend=0)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def n_steps(self) -> int:
        return int(self.episode_ends[-1]) if self.n_episodes > 0 else 0

    def keys(self):
        return self.data.keys()

    def __getitem__(self, key: str):
        return self.data[key]

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __getstate__(self) -> dict:
        # the over-allocated backing arrays would double a pickled (e.g. spawned worker's) copy
        return {**self.__dict__, "_numpy_backing": {}}

    def __repr__(self) -> str:
        return f"ReplayBuffer({self.backend}, n_episodes={self.n_episodes}, n_steps={self.n_steps}, keys={list(self.keys())})"

    # ---------------------------------------------------------------- episodes
    def add_episode(self, episode: dict, chunks: dict | None = None, compressors: dict | None = None) -> None:
        """Append one episode: {key: (T, ...)} with the same T for every key and, once the buffer
        holds data, the same keys and per-step shapes as before. `chunks` / `compressors`
        ({key: ...}) apply to zarr arrays created by this call."""
        episode = {key: np.asarray(value) for key, value in episode.items()}
        lengths = {key: len(value) for key, value in episode.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"episode arrays must have the same length, got {lengths}")
        if len(self.data) > 0 and set(episode) != set(self.keys()):
            raise ValueError(f"episode keys {sorted(episode)} differ from buffer keys {sorted(self.keys())}")
        for key, value in episode.items():
            if key in self.data and self.data[key].shape[1:] != value.shape[1:]:
                raise ValueError(
                    f"episode {key!r} step shape {value.shape[1:]} differs from buffer {self.data[key].shape[1:]}"
                )
        n_new = next(iter(lengths.values()))
        new_end = self.n_steps + n_new

        if self.backend == "numpy":
            for key, value in episode.items():
                self._append_numpy(key, value)
            self.meta["episode_ends"] = np.append(self.meta["episode_ends"], np.int64(new_end))
            return

        chunks = chunks or {}
        compressors = compressors or {}
        for key, value in episode.items():
            if key not in self.data:
                kwargs = {"compressor": compressors[key]} if key in compressors else {}
                self.data.zeros(
                    key,
                    shape=(0,) + value.shape[1:],
                    chunks=chunks.get(key, _default_chunks(value.shape, value.dtype, growing=True)),
                    dtype=value.dtype,
                    **kwargs,
                )
            self.data[key].append(value)
        self.meta["episode_ends"].append(np.array([new_end], dtype=np.int64))

    def _append_numpy(self, key: str, value: np.ndarray) -> None:
        """Append along time into a capacity-doubling array, so loading E episodes costs O(N), not
        O(E * N). Earlier views of data[key] stay valid: their prefix is never written again."""
        current = self.data.get(key)
        n_old = 0 if current is None else len(current)
        n_new = n_old + len(value)
        backing = self._numpy_backing.get(key)
        if current is not None and (backing is None or current.base is not backing):
            backing = None  # data[key] was set outside add_episode: start a fresh backing array
        if backing is None or len(backing) < n_new:
            dtype = value.dtype if current is None else current.dtype
            grown = np.empty((max(2 * n_new, 16),) + value.shape[1:], dtype=dtype)
            if n_old > 0:
                grown[:n_old] = current
            backing = self._numpy_backing[key] = grown
        backing[n_old:n_new] = value
        self.data[key] = backing[:n_new]

    def get_episode_slice(self, idx: int) -> slice:
        idx = range(self.n_episodes)[idx]  # supports negative indices, raises IndexError
        start = int(self.episode_ends[idx - 1]) if idx > 0 else 0
        return slice(start, int(self.episode_ends[idx]))

    def get_episode(self, idx: int, copy: bool = False) -> dict:
        """{key: (T, ...) numpy array} of episode `idx` (views into numpy data unless `copy`)."""
        steps = self.get_episode_slice(idx)
        episode = {key: self.data[key][steps] for key in self.keys()}
        if copy and self.backend == "numpy":
            episode = {key: value.copy() for key, value in episode.items()}
        return episode
