"""What both dataset writers share: opening the output dir (new, or resumed), the episode buffer,
the writer lock and finalize()."""

import logging
from pathlib import Path

from diffusion_policy.data_collection.episode_buffer import EpisodeBuffer, check_features
from diffusion_policy.data_collection.storage import DirectoryLock, dir_has_content, remove_stale_temps

logger = logging.getLogger(__name__)


def check_fps(fps) -> int:
    if float(fps) != int(fps) or int(fps) <= 0:
        raise ValueError(f"fps must be a positive whole number (the dataset stores integer fps), got {fps}")
    return int(fps)


class EpisodeWriter:
    """Collects frames with add_frame() and commits whole episodes with save_episode().

    Subclasses implement `_create()`, `_reopen()` and `_commit(arrays, episode_meta)`; the
    latter must leave the directory loadable at every instant (see each format's docstring).
    """

    def __init__(self, root, fps, features: dict, resume: bool):
        self.root = Path(root)
        self.fps = check_fps(fps)
        self.user_features = check_features(features)
        self._buffer = EpisodeBuffer(self.user_features)
        exists = dir_has_content(self.root)
        if exists and not resume:
            raise FileExistsError(
                f"{self.root} exists; pass --resume to continue it or choose another --output_dir"
            )
        self._lock = DirectoryLock(self.root)
        self._lock.acquire()
        try:
            if exists:
                for path in remove_stale_temps(self.root):
                    logger.info("removed %s left by an interrupted run", path)
                self._reopen()
            else:
                self._create()
        except BaseException:
            self._lock.release()
            raise
        self._closed = False

    @property
    def num_episodes(self) -> int:
        """Episodes committed so far; also the index the next saved episode gets."""
        raise NotImplementedError

    @property
    def num_buffered_frames(self) -> int:
        return len(self._buffer)

    def add_frame(self, frame: dict) -> None:
        """Buffer one time step: a value for every feature (e.g. observation.state (Ds,), action
        (Da,), next.reward, next.done, next.success, observation.images.<cam> (H, W, 3) uint8)."""
        self._check_open()
        self._buffer.add(frame)

    def save_episode(self, episode_meta: dict | None = None) -> int:
        """Commit the buffered frames as the next episode; returns its episode index."""
        self._check_open()
        if len(self._buffer) == 0:
            raise ValueError("save_episode() needs at least one add_frame() first")
        episode_index = self.num_episodes
        self._commit(self._buffer.arrays(), dict(episode_meta or {}))
        self._buffer.clear()
        return episode_index

    def discard_episode(self) -> None:
        """Drop the buffered frames (e.g. after an env error) without writing anything."""
        self._buffer.clear()

    def finalize(self) -> None:
        """Release the directory. Every committed episode is already complete on disk."""
        if self._closed:
            return
        if len(self._buffer):
            logger.warning("finalize(): discarding %d frames of an unsaved episode", len(self._buffer))
            self._buffer.clear()
        self._lock.release()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.finalize()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this writer was finalized; open a new one with resume=True to add episodes")

    def _create(self) -> None:
        raise NotImplementedError

    def _reopen(self) -> None:
        raise NotImplementedError

    def _commit(self, arrays: dict, episode_meta: dict) -> None:
        raise NotImplementedError
