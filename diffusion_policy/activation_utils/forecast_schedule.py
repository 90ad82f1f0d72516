"""Update steps chosen for the forecasting cache: an exact dynamic program over pairs of update steps.

With order-1 forecasting (acceleration/hooks.py, BlockCacheHook), a block's answer at a step s
after its update steps a < b is the line through its outputs there, F_ab(s) = y_b + (s - b)/(b - a)
(y_b - y_a); before its second update it reuses y_0. Each segment may also reuse y_b instead, when
that is the smaller error (a DDPM sampler adds fresh noise at every step, and a line through two
noisy outputs can overshoot over a long segment): the schedule records, per update step, which of the
two its segment uses. For update steps 0 = c_0 < c_1 < ... < c_{k-1} (c_k = N) the error is

    sum_{0 < s < c_1} d(y_s, y_0)  +  sum_{j >= 1} min( sum_{c_j < s < c_{j+1}} d(y_s, F_{c_{j-1} c_j}(s)),
                                                       sum_{c_j < s < c_{j+1}} d(y_s, y_{c_j}) )

with d the metric's distance (cosine: 1 - cosine similarity; l2; mse). A segment's cost depends on
its last two update steps, so the program runs over pairs:

    g_2[0, b] = R[b],   g_{j+1}[b, c] = min_a g_j[a, b] + C[a, b, c],   best = min_{a,b} g_k[a, b] + C[a, b, N]

O(k N^3) time, O(N^3) memory (N = 100: 8 MB per array). Every d(y_s, F_ab(s)) comes from the Gram
matrix of the step vectors (no (N, N, N, D) tensor). Costs of several calibration observations are
averaged before the program runs. Order 2 uses these schedules too (a program over triples would be
O(k N^4)); the schedule records the order its costs were measured with.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

FORECAST_METRICS = ("cosine", "l2", "mse")


def _check_metric(metric: str) -> None:
    if metric not in FORECAST_METRICS:
        raise ValueError(f"forecast schedules support the metrics {', '.join(FORECAST_METRICS)} (distances that "
                         f"follow from inner products), not {metric!r}")


def _distance_from_gram(dot_fy, norm2_f, norm2_y, dist2, metric: str, dim: int) -> np.ndarray:
    """d(y, F) from <F, y>, |F|^2, |y|^2 and |F - y|^2 (arrays of one shape)."""
    if metric == "cosine":
        denom = np.sqrt(np.maximum(norm2_f, 0.0) * np.maximum(norm2_y, 0.0))
        cos = np.where(denom > 0, dot_fy / np.maximum(denom, np.finfo(np.float64).tiny), 0.0)
        return 1.0 - np.clip(cos, -1.0, 1.0)
    dist2 = np.maximum(dist2, 0.0)
    return np.sqrt(dist2) if metric == "l2" else dist2 / dim


def forecast_costs(acts: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R, C, Q) of one block's (N, ...) activations: R[c] = error of reusing y_0 on steps 0 < s < c
    (c = 0..N); C[a, b, c] = error of the line through steps a < b on steps b < s < c (c = 0..N),
    +inf where not a < b < c; Q[b, c] = error of reusing y_b on steps b < s < c, +inf where not b < c."""
    _check_metric(metric)
    y = np.asarray(acts, dtype=np.float64).reshape(np.shape(acts)[0], -1)  # (N, D)
    if not np.all(np.isfinite(y)):
        raise ValueError("activations contain NaN or inf; record them again from a healthy model")
    num_steps, dim = y.shape
    gram = y @ y.T  # (N, N)
    diag = np.diag(gram)

    # reuse of y_0 on the first segment
    reuse = _distance_from_gram(gram[0], diag[0], diag, diag[0] - 2 * gram[0] + diag, metric, dim)  # (N,)
    reuse[0] = 0.0
    R = np.concatenate([[0.0], np.cumsum(reuse)])  # R[c] = sum_{s < c} reuse[s] (reuse[0] = 0)
    # reuse of y_b on steps b < s < c
    pair = _distance_from_gram(gram, diag[:, None], diag[None, :], diag[:, None] - 2 * gram + diag[None, :],
                               metric, dim)  # (b, s)
    later = np.arange(num_steps)[None, :] > np.arange(num_steps)[:, None]
    pair_cum = np.concatenate([np.zeros((num_steps, 1)), np.cumsum(np.where(later, pair, 0.0), axis=1)], axis=1)
    Q = np.where(np.arange(num_steps + 1)[None, :] > np.arange(num_steps)[:, None], pair_cum, np.inf)  # (N, N+1)

    a = np.arange(num_steps)[:, None, None]
    b = np.arange(num_steps)[None, :, None]
    s = np.arange(num_steps)[None, None, :]
    valid = (a < b) & (b < s)
    alpha = np.where(valid, (s - b) / np.where(a < b, b - a, 1), 0.0)  # (N, N, N)
    g_ab, g_aa, g_bb = gram[:, :, None], np.diag(gram)[:, None, None], np.diag(gram)[None, :, None]
    g_bs, g_as, g_ss = gram[None, :, :], gram[:, None, :], diag[None, None, :]
    # F = y_b + alpha (y_b - y_a)
    dot_fy = g_bs + alpha * (g_bs - g_as)
    norm2_f = g_bb + 2 * alpha * (g_bb - g_ab) + alpha**2 * (g_bb - 2 * g_ab + g_aa)
    dist2 = (g_bb - 2 * g_bs + g_ss) + 2 * alpha * (g_bb - g_bs - g_ab + g_as) + alpha**2 * (g_bb - 2 * g_ab + g_aa)
    error = np.where(valid, _distance_from_gram(dot_fy, norm2_f, g_ss, dist2, metric, dim), 0.0)  # (N, N, N)
    cumulative = np.concatenate([np.zeros((num_steps, num_steps, 1)), np.cumsum(error, axis=2)], axis=2)
    c = np.arange(num_steps + 1)[None, None, :]
    C = np.where((a < b) & (b < c), cumulative, np.inf)  # (N, N, N+1)
    return R, C, Q


def forecast_update_steps_from_costs(R: np.ndarray, C: np.ndarray, Q: np.ndarray, num_caches: int
                                     ) -> tuple[list[int], list[bool]]:
    """The k = min(num_caches, N) update steps of least error given (mean) costs R, C, Q, and per
    update step whether its segment forecasts (True) or reuses (False; always the first)."""
    num_steps = C.shape[0]
    k = min(int(num_caches), num_steps)
    forecasts = C < Q[None, :, :]  # (a, b, c): the line beats reuse on the segment after b
    C = np.minimum(C, Q[None, :, :])
    if k == 1:
        return [0], [False]
    g = np.full((num_steps, num_steps), np.inf)
    g[0, 1:] = R[1:num_steps]  # two updates: 0 and b, steps < b covered by reuse
    parents = []
    for _ in range(k - 2):
        total = g[:, :, None] + C[:, :, :num_steps]  # (a, b, c): last updates a < b, next c
        parent = np.argmin(total, axis=0)  # (b, c)
        g = np.take_along_axis(total, parent[None], axis=0)[0]
        parents.append(parent)
    final = g + C[:, :, num_steps]  # (a, b)
    a, b = np.unravel_index(np.argmin(final), final.shape)
    if not np.isfinite(final[a, b]):
        raise ValueError(f"no schedule with {k} update steps in {num_steps} steps")
    steps = [int(b), int(a)]
    for parent in reversed(parents):
        steps.append(int(parent[steps[-1], steps[-2]]))
    steps = sorted(steps)
    bounds = [*steps, num_steps]
    flags = [False] + [bool(forecasts[bounds[j - 1], bounds[j], bounds[j + 1]]) for j in range(1, k)]
    return steps, flags


def forecast_update_steps(acts_per_observation: list[np.ndarray], metric: str, num_caches: int
                          ) -> tuple[list[int], list[bool]]:
    """(update steps, forecast flag per step) of least error, costs averaged over the calibration
    observations (each (N, ...))."""
    costs = [forecast_costs(acts, metric) for acts in acts_per_observation]
    return forecast_update_steps_from_costs(*(np.mean([c[i] for c in costs], axis=0) for i in range(3)), num_caches)


# ----------------------------------------------------------------------------- reference (tests)
def forecast_error(acts: np.ndarray, update_steps: list[int], metric: str, flags: list[bool] | None = None) -> float:
    """The error of a schedule (flags: per update step, whether its segment forecasts; default all but
    the first), simulated step by step on the vectors (no Gram matrix)."""
    _check_metric(metric)
    y = np.asarray(acts, dtype=np.float64).reshape(np.shape(acts)[0], -1)
    updates = sorted(update_steps)
    flags = [False] + [True] * (len(updates) - 1) if flags is None else flags
    total = 0.0
    for s in range(y.shape[0]):
        past = [u for u in updates if u <= s]
        if past[-1] == s:
            continue
        if len(past) < 2 or not flags[len(past) - 1]:
            f = y[past[-1]]
        else:
            a, b = past[-2], past[-1]
            f = y[b] + (s - b) / (b - a) * (y[b] - y[a])
        if metric == "cosine":
            total += 1.0 - float(np.dot(f, y[s]) / (np.linalg.norm(f) * np.linalg.norm(y[s])))
        elif metric == "l2":
            total += float(np.linalg.norm(f - y[s]))
        else:
            total += float(np.mean((f - y[s]) ** 2))
    return total


def brute_force_forecast_steps(acts: np.ndarray, metric: str, num_caches: int) -> tuple[list[int], float]:
    """Every schedule with step 0 and k - 1 others, every segment forecasting or reusing: the least
    error and a schedule reaching it."""
    from itertools import product

    num_steps = np.shape(acts)[0]
    k = min(num_caches, num_steps)
    best = None
    for rest in combinations(range(1, num_steps), k - 1):
        steps = [0, *rest]
        for choice in product([False, True], repeat=k - 1):
            error = forecast_error(acts, steps, metric, [False, *choice])
            if best is None or error < best[1] - 1e-12:
                best = (steps, error)
    return best
