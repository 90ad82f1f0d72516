"""ACS dynamic programming and similarity metrics vs brute force / naive loops."""

import itertools
import time

import numpy as np
import pytest

from diffusion_policy.activation_utils import similarity
from diffusion_policy.activation_utils.acs import optimal_update_steps, schedule_objective
from diffusion_policy.activation_utils.similarity import METRICS, caching_error, similarity_matrix


def naive_similarity(acts: np.ndarray, metric: str) -> np.ndarray:
    vectors = acts.reshape(acts.shape[0], -1).astype(np.float64)
    n = len(vectors)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            a, b = vectors[i], vectors[j]
            if metric == "cosine":
                out[i, j] = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            elif metric == "l1":
                out[i, j] = np.mean(np.abs(a - b))
            elif metric == "l2":
                out[i, j] = np.sqrt(np.sum((a - b) ** 2))
            else:
                out[i, j] = np.mean((a - b) ** 2)
    return out


def brute_force_best(matrix: np.ndarray, k: int, maximize: bool) -> float:
    n = matrix.shape[0]
    objectives = [
        schedule_objective(matrix, [0, *rest]) for rest in itertools.combinations(range(1, n), k - 1)
    ]
    return max(objectives) if maximize else min(objectives)


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_similarity_matches_naive_loop(metric):
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(7, 3, 5)).astype(np.float32)
    result = similarity_matrix(acts, metric)
    assert result.dtype == np.float64 and result.shape == (7, 7)
    np.testing.assert_allclose(result, naive_similarity(acts, metric), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("metric", ["l1", "l2", "mse"])
def test_similarity_chunked_path_matches_naive(metric, monkeypatch):
    monkeypatch.setattr(similarity, "_CHUNK_BYTES", 1)  # one row per chunk
    acts = np.random.default_rng(1).normal(size=(6, 4))
    np.testing.assert_allclose(similarity_matrix(acts, metric), naive_similarity(acts, metric), rtol=1e-10)


def test_similarity_diagonal_and_zero_vector():
    acts = np.random.default_rng(2).normal(size=(5, 8))
    np.testing.assert_allclose(np.diag(similarity_matrix(acts, "cosine")), 1.0)
    assert np.all(np.diag(similarity_matrix(acts, "l2")) == 0.0)
    acts[2] = 0.0
    cos = similarity_matrix(acts, "cosine")
    assert np.all(np.isfinite(cos)) and cos[2, 0] == 0.0


def test_similarity_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown metric"):
        similarity_matrix(np.ones((3, 2)), "dot")
    with pytest.raises(ValueError, match="NaN"):
        similarity_matrix(np.array([[1.0], [np.nan]]), "l1")
    with pytest.raises(ValueError, match="N >= 1"):
        similarity_matrix(np.ones((0, 2)), "l1")


def test_caching_error_matches_naive():
    acts = np.random.default_rng(3).normal(size=(6, 2, 3))
    flat = acts.reshape(6, -1)
    expected = np.mean([np.mean(np.abs(flat[i] - flat[j])) for i in range(6) for j in range(6)])
    assert caching_error(acts) == pytest.approx(expected, rel=1e-12)
    assert caching_error(np.ones((4, 3))) == 0.0


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_acs_matches_brute_force_on_metric_matrices(metric):
    rng = np.random.default_rng(4)
    for n in range(2, 10):
        acts = np.cumsum(rng.normal(size=(n, 6)), axis=0)  # drifting activations
        matrix = similarity_matrix(acts, metric)
        maximize = METRICS[metric]
        for k in range(1, n + 1):
            steps = optimal_update_steps(matrix, k, maximize)
            assert steps[0] == 0 and steps == sorted(set(steps)) and len(steps) == k
            assert schedule_objective(matrix, steps) == pytest.approx(brute_force_best(matrix, k, maximize), abs=1e-9)


@pytest.mark.parametrize("maximize", [True, False])
def test_acs_matches_brute_force_on_arbitrary_matrices(maximize):
    rng = np.random.default_rng(5)
    for n in range(1, 10):
        matrix = rng.normal(size=(n, n))  # asymmetric, mixed signs
        for k in range(1, n + 1):
            steps = optimal_update_steps(matrix, k, maximize)
            assert len(steps) == k and steps[0] == 0 and all(a < b for a, b in zip(steps, steps[1:]))
            assert schedule_objective(matrix, steps) == pytest.approx(brute_force_best(matrix, k, maximize), abs=1e-9)


def test_acs_finds_piecewise_constant_segments():
    acts = np.repeat(np.eye(3) * 5.0, [4, 3, 3], axis=0)  # constant on [0,4), [4,7), [7,10)
    for metric in METRICS:
        assert optimal_update_steps(similarity_matrix(acts, metric), 3, METRICS[metric]) == [0, 4, 7]


def test_acs_clips_num_caches_and_validates():
    matrix = np.random.default_rng(6).random((4, 4))
    assert optimal_update_steps(matrix, 10, True) == [0, 1, 2, 3]
    assert optimal_update_steps(matrix, 1, False) == [0]
    with pytest.raises(ValueError, match="square"):
        optimal_update_steps(np.ones((3, 4)), 2, True)
    with pytest.raises(ValueError, match="num_caches"):
        optimal_update_steps(matrix, 0, True)
    with pytest.raises(ValueError, match="num_caches"):
        optimal_update_steps(matrix, 2.5, True)
    with pytest.raises(ValueError, match="NaN"):
        optimal_update_steps(np.full((2, 2), np.nan), 1, True)


def test_acs_is_fast_for_100_steps_20_caches_24_blocks():
    rng = np.random.default_rng(7)
    matrices = [similarity_matrix(np.cumsum(rng.normal(size=(100, 32)), axis=0), "cosine") for _ in range(24)]
    start = time.perf_counter()
    schedules = [optimal_update_steps(m, 20, True) for m in matrices]
    elapsed = time.perf_counter() - start
    assert all(len(s) == 20 for s in schedules)
    assert elapsed < 1.0, f"ACS took {elapsed:.3f} s for 24 blocks"
