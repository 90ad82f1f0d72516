"""The CUDA path: no host sync in the denoising loop, compiled (CUDA graphs) equals eager, pinned copies.

Marked `gpu` and skipped, with the reason, where no CUDA device is visible; `scripts/gpu_check.sh`
runs them on a GPU machine together with the benchmark.
"""

import dataclasses

import numpy as np
import pytest
import torch

from diffusion_policy.acceleration import CacheConfig, apply_cache
from diffusion_policy.common.pytorch_util import host_to_device
from tests.test_acceleration import ACT_DIM, HORIZON, OBS_DIM, TO, build_schedules, make_policy

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible (GPU tests run in scripts/gpu_check.sh)"),
]
DEVICE = "cuda:0"


def _cuda_obs(batch: int = 2) -> dict:
    return {"obs": torch.randn(batch, TO, OBS_DIM, generator=torch.Generator().manual_seed(1)).to(DEVICE)}


def _configs(steps_dir) -> dict[str, CacheConfig]:
    optimal = dict(mode="optimal", optimal_steps_dir=str(steps_dir / "optimal_steps" / "cosine"), num_caches=3)
    return {
        "original": CacheConfig("original"),
        "threshold_3": CacheConfig("threshold", cache_threshold=3),
        "optimal_3": CacheConfig(**optimal),
        "optimal_3_bu2": CacheConfig(**optimal, num_bu_blocks=2),
    }


@pytest.fixture(scope="module")
def policy_and_schedules(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schedules")
    policy = make_policy()
    build_schedules(policy, {"obs": torch.randn(2, TO, OBS_DIM, generator=torch.Generator().manual_seed(1))}, tmp)
    return policy.to(DEVICE), tmp


def _sample_loop(policy, obs, seed=0):
    """The denoising loop alone (predict_action without normalisation and slicing)."""
    nobs = policy.normalize_obs(obs)
    cond = policy.encode_obs(policy._first_steps(nobs))
    data = torch.zeros((cond.shape[0], HORIZON, ACT_DIM), device=DEVICE)
    generator = torch.Generator(device=DEVICE).manual_seed(seed)
    return policy.conditional_sample(data, None, cond=cond, generator=generator)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_no_host_sync_in_the_denoising_loop(policy_and_schedules, compiled):
    policy, steps_dir = policy_and_schedules
    obs = _cuda_obs()
    for label, config in _configs(steps_dir).items():
        apply_cache(policy, dataclasses.replace(config, compile=compiled))
        with torch.no_grad():
            _sample_loop(policy, obs)  # warm-up: compilation, CUDA graph capture, the run's tables
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                _sample_loop(policy, obs)
            except RuntimeError as err:
                pytest.fail(f"{label}: a host sync inside the denoising loop: {err}")
            finally:
                torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("batch", [1, 28])
def test_compiled_equals_eager_on_cuda_in_every_mode(policy_and_schedules, batch):
    policy, steps_dir = policy_and_schedules
    obs = _cuda_obs(batch)
    for label, config in _configs(steps_dir).items():
        apply_cache(policy, config)
        with torch.no_grad():
            expected = policy.predict_action(obs, generator=torch.Generator(device=DEVICE).manual_seed(0))
        apply_cache(policy, dataclasses.replace(config, compile=True))
        with torch.no_grad():
            for _ in range(2):  # the first call compiles and captures; the second replays
                got = policy.predict_action(obs, generator=torch.Generator(device=DEVICE).manual_seed(0))
        torch.testing.assert_close(got["action_pred"], expected["action_pred"], atol=1e-5, rtol=1e-5, msg=label)
    apply_cache(policy, CacheConfig("original"))


def test_host_to_device_pins_and_copies_without_blocking():
    values = np.random.default_rng(0).standard_normal((28, TO, OBS_DIM))
    moved = host_to_device(values, DEVICE, torch.float32)
    assert moved.device.type == "cuda" and moved.dtype == torch.float32
    torch.testing.assert_close(moved.cpu(), torch.as_tensor(values, dtype=torch.float32))
