"""Step-to-step similarity of one block's activations across denoising steps.

A block's recorded activations form an array (N, ...) over N denoising steps
(index 0 = first, noisiest step). Each step is flattened to a vector of D values
and compared with every other step, giving an (N, N) matrix S where S[i, j]
compares step i with step j.
"""

import numpy as np

# metric name -> True when larger values mean "more alike" (similarity),
# False when smaller values do (distance).
METRICS = {"cosine": True, "l1": False, "l2": False, "mse": False}

# Upper bound on the (rows, N, D) difference tensor built per chunk, in bytes.
_CHUNK_BYTES = 8 * 2**20


def _as_step_vectors(acts: np.ndarray) -> np.ndarray:
    """(N, ...) activations -> (N, D) float64 step vectors."""
    acts = np.asarray(acts)
    if acts.ndim < 1 or acts.shape[0] < 1:
        raise ValueError(f"activations must have shape (N, ...) with N >= 1 steps, got shape {acts.shape}")
    vectors = acts.reshape(acts.shape[0], -1).astype(np.float64)
    if vectors.shape[1] == 0:
        raise ValueError(f"activations have no values per step (shape {acts.shape})")
    if not np.all(np.isfinite(vectors)):
        raise ValueError("activations contain NaN or inf; record them again from a healthy model")
    return vectors


def _pairwise_difference_reduce(vectors: np.ndarray, reduce) -> np.ndarray:
    """out[i, j] = reduce(vectors[i] - vectors[j]) over the last axis, in row chunks.

    The exact differences are formed (no Gram-matrix shortcut) so that nearly
    identical steps still get accurate small distances.
    """
    num_steps, dim = vectors.shape
    rows_per_chunk = max(1, _CHUNK_BYTES // (8 * num_steps * dim))
    out = np.empty((num_steps, num_steps), dtype=np.float64)
    for start in range(0, num_steps, rows_per_chunk):
        stop = min(start + rows_per_chunk, num_steps)
        diff = vectors[start:stop, None, :] - vectors[None, :, :]  # (rows, N, D)
        out[start:stop] = reduce(diff)
    return out


def _cosine(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1)  # (N,)
    denom = np.maximum(np.outer(norms, norms), np.finfo(np.float64).tiny)
    sim = (vectors @ vectors.T) / denom
    return np.clip(sim, -1.0, 1.0)


def similarity_matrix(acts: np.ndarray, metric: str) -> np.ndarray:
    """(N, N) float64 matrix comparing every pair of steps of one block.

    cosine: cosine similarity of the flattened step vectors (zero vectors give 0).
    l1:     mean absolute difference.
    l2:     Euclidean norm of the difference.
    mse:    mean squared difference.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
    vectors = _as_step_vectors(acts)  # (N, D)
    if metric == "cosine":
        return _cosine(vectors)
    dim = vectors.shape[1]
    if metric == "l1":
        return _pairwise_difference_reduce(vectors, lambda d: np.abs(d, out=d).sum(axis=-1) / dim)
    squared_sum = _pairwise_difference_reduce(vectors, lambda d: np.einsum("ijk,ijk->ij", d, d))
    return np.sqrt(squared_sum) if metric == "l2" else squared_sum / dim


def caching_error(acts: np.ndarray) -> float:
    """Mean over all step pairs (i, j), diagonal included, of the mean |a_i - a_j|.

    How much a block's output drifts across denoising; Bubbling Union ranks
    blocks by it.
    """
    return float(similarity_matrix(acts, "l1").mean())
