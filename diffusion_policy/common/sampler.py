"""Fixed-length training sequences cut from replay-buffer episodes, padded at episode edges.

A sequence of length L may start up to `pad_before` steps before an episode's first step and end
up to `pad_after` steps after its last step; the missing steps repeat the first / last frame.
Sequences never cross episode boundaries.
"""

import numba
import numpy as np

from diffusion_policy.common.replay_buffer import ReplayBuffer


@numba.jit(nopython=True, cache=True)
def create_indices(
    episode_ends: np.ndarray,
    sequence_length: int,
    episode_mask: np.ndarray,
    pad_before: int = 0,
    pad_after: int = 0,
) -> np.ndarray:
    """(S, 4) int64 rows [buffer_start, buffer_end, sample_start, sample_end]: the buffer steps
    [buffer_start, buffer_end) fill positions [sample_start, sample_end) of a length-L sequence."""
    pad_before = min(max(pad_before, 0), sequence_length - 1)
    pad_after = min(max(pad_after, 0), sequence_length - 1)
    rows = []
    for i in range(len(episode_ends)):
        if not episode_mask[i]:
            continue
        episode_start = 0 if i == 0 else episode_ends[i - 1]
        episode_length = episode_ends[i] - episode_start
        # offsets of the sequence start relative to the episode start
        for offset in range(-pad_before, episode_length - sequence_length + pad_after + 1):
            first = max(offset, 0)
            last = min(offset + sequence_length, episode_length)
            rows.append(
                (
                    episode_start + first,
                    episode_start + last,
                    first - offset,
                    sequence_length - (offset + sequence_length - last),
                )
            )
    indices = np.zeros((len(rows), 4), dtype=np.int64)
    for j in range(len(rows)):
        for k in range(4):
            indices[j, k] = rows[j][k]
    return indices


def get_val_mask(n_episodes: int, val_ratio: float, seed: int = 0) -> np.ndarray:
    """Boolean (E,) mask of validation episodes: round(E * val_ratio) of them, at least 1 and at
    most E - 1 (when val_ratio > 0), drawn with numpy's default_rng(seed)."""
    val_mask = np.zeros(n_episodes, dtype=bool)
    if val_ratio <= 0:
        return val_mask
    n_val = min(max(1, round(n_episodes * val_ratio)), n_episodes - 1)
    rng = np.random.default_rng(seed=seed)
    val_mask[rng.choice(n_episodes, size=n_val, replace=False)] = True
    return val_mask


def downsample_mask(mask: np.ndarray, max_n: int | None, seed: int = 0) -> np.ndarray:
    """Keep a random subset of at most `max_n` of the True entries of `mask`."""
    if max_n is None or np.sum(mask) <= max_n:
        return mask
    selected = np.nonzero(mask)[0]
    rng = np.random.default_rng(seed=seed)
    keep = selected[rng.choice(len(selected), size=int(max_n), replace=False)]
    result = np.zeros_like(mask)
    result[keep] = True
    return result


class SequenceSampler:
    """Index -> dict of (sequence_length, ...) numpy arrays, over the episodes in `episode_mask`.

    `key_first_k` = {key: k} reads only the first k steps of `key` (for observations only used
    for the first n_obs_steps); the remaining steps are filled with NaN (0 for integer arrays)
    and must not be used.
    """

    def __init__(
        self,
        replay_buffer: ReplayBuffer,
        sequence_length: int,
        pad_before: int = 0,
        pad_after: int = 0,
        keys: list | None = None,
        episode_mask: np.ndarray | None = None,
        key_first_k: dict | None = None,
    ):
        if sequence_length < 1:
            raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
        episode_ends = np.asarray(replay_buffer.episode_ends[:], dtype=np.int64)
        if episode_mask is None:
            episode_mask = np.ones(episode_ends.shape, dtype=bool)
        if episode_mask.shape != episode_ends.shape:
            raise ValueError(f"episode_mask shape {episode_mask.shape} != n_episodes {episode_ends.shape}")
        if np.any(episode_mask):
            indices = create_indices(episode_ends, sequence_length, episode_mask, pad_before, pad_after)
        else:
            indices = np.zeros((0, 4), dtype=np.int64)
        self.indices = indices  # (S, 4)
        self.keys = list(replay_buffer.keys()) if keys is None else list(keys)
        self.sequence_length = sequence_length
        self.replay_buffer = replay_buffer
        self.key_first_k = dict(key_first_k or {})

    def __len__(self) -> int:
        return len(self.indices)

    def _read(self, key: str, start: int, end: int) -> np.ndarray:
        array = self.replay_buffer[key]
        if key not in self.key_first_k:
            return array[start:end]
        n_read = min(self.key_first_k[key], end - start)
        fill = np.nan if np.issubdtype(array.dtype, np.floating) else 0
        out = np.full((end - start,) + array.shape[1:], fill_value=fill, dtype=array.dtype)
        out[:n_read] = array[start : start + n_read]
        return out

    def sample_sequence(self, idx: int) -> dict:
        buffer_start, buffer_end, sample_start, sample_end = self.indices[idx]
        result = dict()
        for key in self.keys:
            steps = self._read(key, buffer_start, buffer_end)
            if sample_start > 0 or sample_end < self.sequence_length:
                padded = np.empty((self.sequence_length,) + steps.shape[1:], dtype=steps.dtype)
                padded[:sample_start] = steps[0]
                padded[sample_end:] = steps[-1]
                padded[sample_start:sample_end] = steps
                steps = padded
            result[key] = steps
        return result
