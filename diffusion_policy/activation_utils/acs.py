"""Adaptive Caching Scheduler (ACS): optimal cache update steps for one block.

Given an (N, N) matrix S comparing denoising steps, choose k update steps
0 = c_1 < c_2 < ... < c_k < N. They split the N steps into k contiguous segments;
every step t in [c_i, c_{i+1}) reuses the cache computed at c_i, so the schedule's
quality is  sum_i sum_{t in segment i} S[c_i, t]  (maximised for a similarity,
minimised for a distance). Exact dynamic programming, O(k N^2).
"""

import numpy as np


def _segment_costs(matrix: np.ndarray) -> np.ndarray:
    """cost[a, b] = sum_{t=a}^{b-1} S[a, t] for 0 <= a < b <= N; +inf elsewhere. Shape (N, N+1)."""
    num_steps = matrix.shape[0]
    # prefix[a, b] = sum_{t<b} S[a, t], shape (N, N+1)
    prefix = np.concatenate([np.zeros((num_steps, 1)), np.cumsum(matrix, axis=1)], axis=1)
    rows = np.arange(num_steps)
    cost = prefix - prefix[rows, rows][:, None]
    valid = np.arange(num_steps + 1)[None, :] > rows[:, None]  # b > a
    return np.where(valid, cost, np.inf)


def schedule_objective(matrix: np.ndarray, update_steps: list[int]) -> float:
    """sum over all steps t of S[c(t), t], c(t) = latest update step <= t."""
    matrix = np.asarray(matrix, dtype=np.float64)
    bounds = list(update_steps) + [matrix.shape[0]]
    return float(sum(matrix[start, start:stop].sum() for start, stop in zip(bounds[:-1], bounds[1:])))


def optimal_update_steps(matrix: np.ndarray, num_caches: int, maximize: bool) -> list[int]:
    """Best k = min(num_caches, N) update steps for one block; sorted, first element 0.

    matrix: (N, N), matrix[a, t] compares the cache computed at step a with step t.
    maximize: True for similarities (cosine), False for distances (l1, l2, mse).
    Ties are broken deterministically (the earliest start for each last segment).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
        raise ValueError(f"ACS needs a square (N, N) matrix with N >= 1, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("ACS matrix contains NaN or inf; recompute the similarity matrices")
    if isinstance(num_caches, bool) or not isinstance(num_caches, (int, np.integer)) or num_caches < 1:
        raise ValueError(f"num_caches must be an integer >= 1, got {num_caches!r}")

    num_steps = matrix.shape[0]
    num_segments = min(int(num_caches), num_steps)
    cost = _segment_costs(-matrix if maximize else matrix)  # (N, N+1), minimised

    # best[b] = least cost covering steps [0, b) with j segments; j = 1 first.
    best = cost[0].copy()  # (N+1,)
    # start_of_last[j][b] = start a of the last segment in the best j-segment cover of [0, b)
    start_of_last = [np.zeros(num_steps + 1, dtype=np.int64)]
    for _ in range(1, num_segments):
        # total[a, b] = best cover of [0, a) with j-1 segments + segment [a, b);
        # unreachable covers are +inf (best[0] is always +inf), so argmin skips them.
        total = best[:num_steps, None] + cost  # (N, N+1)
        start = np.argmin(total, axis=0)  # (N+1,)
        best = total[start, np.arange(num_steps + 1)]
        start_of_last.append(start)

    steps = []
    end = num_steps
    for starts in reversed(start_of_last):
        end = int(starts[end])
        steps.append(end)
    return sorted(steps)
