"""Feature statistics in lerobot's layout: min, max, mean, std, count, q01, q10, q50, q90, q99.

Per episode the numbers are exact: numpy over the episode's frames for vectors; for videos, per
RGB channel over the pixels of up to ~100 evenly spaced frames (lerobot's sampling), scaled to
[0, 1] and shaped (3, 1, 1), with count = number of sampled frames. The dataset-wide numbers
(meta/stats.json) aggregate the episodes the way lerobot does: min/max/mean/std are exact
(parallel-variance formula), quantiles are count-weighted means of the per-episode quantiles.
"""

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count") + QUANTILE_KEYS


def vector_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """values (T,) or (T, D) -> each stat (1,) or (D,); min/max keep the data's dtype."""
    values = values.reshape(len(values), -1)
    as_float = values.astype(np.float64)
    stats = {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": as_float.mean(axis=0),
        "std": as_float.std(axis=0),
        "count": np.array([len(values)], dtype=np.int64),
    }
    for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
        stats[key] = np.quantile(as_float, q, axis=0)
    return stats


def sample_frame_indices(num_frames: int) -> np.ndarray:
    """lerobot's choice of frames for image stats: all of a short episode, ~T^0.75 (>= 100) otherwise."""
    num_samples = max(min(num_frames, 100), min(int(num_frames**0.75), 10_000))
    return np.round(np.linspace(0, num_frames - 1, num_samples)).astype(int)


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """frames (T, H, W, 3) uint8 -> per-channel stats in [0, 1], each (3, 1, 1); count (1,)."""
    sampled = frames[sample_frame_indices(len(frames))]
    height, width = sampled.shape[1:3]
    if max(height, width) >= 300:  # lerobot downsamples large images to ~150 px before stats
        step = int(max(height, width) / 150)
        sampled = sampled[:, ::step, ::step]
    histograms = np.stack([np.bincount(sampled[..., c].ravel(), minlength=256) for c in range(3)])
    per_channel = [_histogram_stats(h) for h in histograms]
    stats = {key: np.array([s[key] for s in per_channel]).reshape(3, 1, 1) / 255.0 for key in per_channel[0]}
    stats["count"] = np.array([len(sampled)], dtype=np.int64)
    return stats


def _histogram_stats(histogram: np.ndarray) -> dict[str, float]:
    """Exact stats of the uint8 values counted in `histogram` (256,), in pixel units."""
    levels = np.arange(256, dtype=np.float64)
    n = histogram.sum()
    present = np.flatnonzero(histogram)
    mean = (levels * histogram).sum() / n
    stats = {
        "min": float(present[0]),
        "max": float(present[-1]),
        "mean": mean,
        "std": np.sqrt(((levels - mean) ** 2 * histogram).sum() / n),
    }
    cumulative = np.cumsum(histogram)

    def value_at(rank: int) -> float:  # the rank-th smallest value (0-based)
        return float(np.searchsorted(cumulative, rank, side="right"))

    for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
        position = q * (n - 1)  # numpy's default 'linear' quantile
        low, high = int(np.floor(position)), int(np.ceil(position))
        stats[key] = value_at(low) + (position - low) * (value_at(high) - value_at(low))
    return stats


def aggregate_stats(episode_stats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Combine one feature's per-episode stats into dataset stats (lerobot's rule)."""
    counts = np.array([s["count"][0] for s in episode_stats], dtype=np.float64)
    total = counts.sum()
    means = np.stack([np.asarray(s["mean"], dtype=np.float64) for s in episode_stats])
    variances = np.stack([np.asarray(s["std"], dtype=np.float64) ** 2 for s in episode_stats])
    weights = counts.reshape(-1, *([1] * (means.ndim - 1)))
    mean = (means * weights).sum(axis=0) / total
    variance = ((variances + (means - mean) ** 2) * weights).sum(axis=0) / total
    aggregated = {
        "min": np.min(np.stack([s["min"] for s in episode_stats]), axis=0),
        "max": np.max(np.stack([s["max"] for s in episode_stats]), axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(total)], dtype=np.int64),
    }
    for key in QUANTILE_KEYS:
        quantiles = np.stack([np.asarray(s[key], dtype=np.float64) for s in episode_stats])
        aggregated[key] = (quantiles * weights).sum(axis=0) / total
    return aggregated
