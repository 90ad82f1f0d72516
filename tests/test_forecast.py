"""The forecasting cache: exact on polynomials, the forecast-error DP against brute force, schedules
marked with their strategy, calibration over several observations."""

import numpy as np
import pytest
import torch

from diffusion_policy.acceleration import CacheConfig, apply_cache, update_steps_for
from diffusion_policy.acceleration.hooks import BlockCacheHook, evaluate_polynomial, fit_polynomial
from diffusion_policy.activation_utils.calibrate import record_calibration_activations
from diffusion_policy.activation_utils.forecast_schedule import (
    brute_force_forecast_steps,
    forecast_costs,
    forecast_error,
    forecast_update_steps,
    forecast_update_steps_from_costs,
)
from diffusion_policy.activation_utils.schedule_builder import build_schedule_assets
from diffusion_policy.activation_utils.schedule_files import (
    ScheduleMismatchError,
    load_schedule,
    load_similarity_matrices,
    schedule_path,
)
from diffusion_policy.common.checkpoint import weights_fingerprint
from diffusion_policy.policy.denoising import DenoisingState
from tests.test_acceleration import N_STEPS, build_schedules, make_policy, sample


@pytest.fixture
def obs():
    return {"obs": torch.randn(2, 2, 5, generator=torch.Generator().manual_seed(1))}


def _answers(order: int, update_steps: list[int], output_of_step, num_steps: int = 12,
             forecast_after: list[bool] | None = None) -> dict[int, torch.Tensor]:
    """What a BlockCacheHook answers at every step for a block whose true output is output_of_step."""
    state = DenoisingState()
    hook = BlockCacheHook(state, [s in update_steps for s in range(num_steps)], order=order,
                          forecast_after=forecast_after)
    answers = {}
    with state.run(torch.arange(num_steps)):
        for step in range(num_steps):
            state.begin_step(step, torch.tensor(num_steps - 1 - step))
            answers[step] = hook.forward(None, lambda x, ctx: output_of_step(step), None, None)
    return answers


@pytest.mark.parametrize("order", [1, 2])
def test_forecast_is_exact_on_a_polynomial_of_its_order(order):
    a, b, c = (torch.randn(4, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(3))
    truth = (lambda s: a + b * s) if order == 1 else (lambda s: a + b * s + c * s * s)
    updates = [0, 2, 5, 9]
    answers = _answers(order, updates, truth)
    for step, answer in answers.items():
        if step > updates[order]:  # order + 1 updates seen: from then on the forecast is exact
            torch.testing.assert_close(answer, truth(step), atol=1e-9, rtol=1e-9)
    # before enough history, the last output is reused
    assert torch.equal(answers[1], truth(0))
    if order == 2:
        assert torch.equal(answers[3], truth(2)) and not torch.allclose(answers[3], truth(3))
    # order 1 is not exact on a quadratic (the test can fail)
    quadratic = _answers(1, updates, lambda s: a + c * s * s)
    assert not torch.allclose(quadratic[11], a + c * 121)


def test_a_segment_marked_reuse_reuses_and_the_next_forecasts_again():
    a, b = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([0.5, -1.0], dtype=torch.float64)
    truth = lambda s: a + b * s  # noqa: E731
    after = [s in (0, 2, 9) for s in range(12)]  # the segment after step 5 reuses
    answers = _answers(1, [0, 2, 5, 9], truth, forecast_after=after)
    assert torch.equal(answers[6], truth(5)) and torch.equal(answers[8], truth(5))  # reused
    torch.testing.assert_close(answers[3], truth(3))  # forecast from 0, 2
    torch.testing.assert_close(answers[11], truth(11))  # forecast from 5, 9 (history kept while reusing)


def test_polynomial_fit_evaluates_back_to_its_points_and_is_affine_invariant():
    ys = [torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 3.0], dtype=torch.float64),
          torch.tensor([2.0, 1.0], dtype=torch.float64)]
    coefficients = fit_polynomial(list(zip([0.1, 0.3, 0.6], ys)))
    for u, y in zip([0.1, 0.3, 0.6], ys):
        torch.testing.assert_close(evaluate_polynomial(coefficients, u), y)
    # in timestep t = 99 - 100 u instead of u: the same extrapolated value
    in_timesteps = fit_polynomial(list(zip([99 - 10.0, 99 - 30.0, 99 - 60.0], ys)))
    torch.testing.assert_close(evaluate_polynomial(in_timesteps, 99 - 80.0), evaluate_polynomial(coefficients, 0.8))


@pytest.mark.parametrize("order", [1, 2])
def test_forecast_with_every_step_an_update_is_the_uncached_policy(obs, order):
    policy = make_policy()
    expected = sample(policy, obs)
    apply_cache(policy, CacheConfig("threshold", cache_threshold=1, strategy="forecast", forecast_order=order,
                                    reuse_condition=False))
    assert torch.equal(sample(policy, obs), expected)


@pytest.mark.parametrize("fuse", [True, False])
def test_fused_forecast_plan_equals_block_by_block_forecast(obs, fuse):
    policy = make_policy()
    apply_cache(policy, CacheConfig("threshold", cache_threshold=3, strategy="forecast", fuse_cached_blocks=False))
    expected = sample(policy, obs)
    apply_cache(policy, CacheConfig("threshold", cache_threshold=3, strategy="forecast", fuse_cached_blocks=fuse))
    torch.testing.assert_close(sample(policy, obs), expected, atol=1e-5, rtol=0)
    # and forecasting differs from reuse (the strategy is really applied)
    apply_cache(policy, CacheConfig("threshold", cache_threshold=3))
    assert not torch.allclose(sample(policy, obs), expected, atol=1e-4)


@pytest.mark.parametrize("metric", ["cosine", "l2", "mse"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forecast_dp_equals_brute_force(metric, seed):
    rng = np.random.default_rng(seed)
    steps = np.arange(9)[:, None]
    acts = np.sin(0.6 * steps + rng.normal(size=(1, 5))) + 0.05 * steps**2 * rng.normal(size=(1, 5)) \
        + 0.2 * rng.normal(size=(9, 5))
    costs = forecast_costs(acts, metric)
    for num_caches in (1, 2, 3, 4):
        chosen, flags = forecast_update_steps_from_costs(*costs, num_caches)
        best_steps, best_error = brute_force_forecast_steps(acts, metric, num_caches)
        assert chosen[0] == 0 and len(chosen) == num_caches
        assert forecast_error(acts, chosen, metric, flags) == pytest.approx(best_error, abs=1e-9), (chosen, best_steps)


def test_forecast_dp_prefers_forecastable_steps_over_reuse_ones():
    # a block drifting along a line: two early updates forecast everything; reuse needs many
    acts = np.outer(np.arange(20.0), np.ones(4)) + np.ones(4)
    steps, flags = forecast_update_steps([acts], "l2", 3)
    assert steps[:2] == [0, 1] and flags[-1]  # the line from 0, 1 forecasts every later step (ties: empty segments)
    assert forecast_error(acts, steps, "l2", flags) == pytest.approx(0.0, abs=1e-9)
    # a block that jumps between two levels: reusing beats a line through the jump
    jumps = np.where(np.arange(20) < 10, 0.0, 5.0)[:, None] * np.ones(4)
    steps, flags = forecast_update_steps([jumps + 1], "l2", 3)
    assert forecast_error(jumps + 1, steps, "l2", flags) == pytest.approx(0.0, abs=1e-9)
    assert flags[1:] == [False] * (len(flags) - 1) or steps[1] == 10


def test_schedules_carry_their_strategy_and_a_mismatch_is_refused(obs, tmp_path):
    policy = make_policy()
    activations = build_schedules(policy, obs, tmp_path)
    build_schedule_assets(tmp_path, activations, ["cosine"], [3], num_layers=3,
                          scheduler={"class": "DDPMScheduler", "num_train_timesteps": N_STEPS,
                                     "num_inference_steps": N_STEPS},
                          checkpoint_sha256="0" * 64, model_fingerprint=weights_fingerprint(policy),
                          make_plots=False, strategies=("forecast",))
    forecast = load_schedule(tmp_path / "optimal_steps" / "cosine", "cosine", 3, "forecast")
    assert forecast.strategy == "forecast" and forecast.forecast_order == 1
    assert all(len(forecast.forecast_segments[n]) == len(forecast.steps[n]) for n in forecast.block_names)
    assert load_schedule(tmp_path / "optimal_steps" / "cosine", "cosine", 3).strategy == "reuse"
    # a file made for one strategy, given to the other: refused with one line naming both
    reuse_file = schedule_path(tmp_path, "cosine", 3)
    with pytest.raises(ScheduleMismatchError, match="made for the 'reuse' cache strategy, not 'forecast'"):
        load_schedule(reuse_file, "cosine", 3, "forecast")
    config = CacheConfig("optimal", optimal_steps_dir=str(reuse_file), num_caches=3, strategy="forecast")
    with pytest.raises(ScheduleMismatchError, match="--strategy forecast"):
        apply_cache(policy, config)
    # the forecast schedule is what a forecast cache runs
    config = CacheConfig("optimal", optimal_steps_dir=str(tmp_path / "optimal_steps" / "cosine"), num_caches=3,
                         strategy="forecast")
    assert update_steps_for(policy, config)["decoder.layers.0.sa"][:-1] == forecast.steps["decoder.layers.0.sa"][
        : len(update_steps_for(policy, config)["decoder.layers.0.sa"]) - 1]
    apply_cache(policy, config)
    assert sample(policy, obs).isfinite().all()


def test_missing_forecast_schedule_names_the_command(tmp_path, obs):
    policy = make_policy()
    build_schedules(policy, obs, tmp_path)
    config = CacheConfig("optimal", optimal_steps_dir=str(tmp_path), num_caches=3, strategy="forecast")
    with pytest.raises(FileNotFoundError, match="no forecast schedule .* --strategy forecast"):
        apply_cache(policy, config)


def test_calibration_over_copies_of_one_observation_equals_calibration_over_it(tmp_path):
    policy = make_policy()
    one = {"obs": torch.randn(1, 2, 5, generator=torch.Generator().manual_seed(7))}
    single = record_calibration_activations(policy, [one], seed=0)
    copies = record_calibration_activations(policy, [one] * 3, seed=0)
    assert copies["decoder.layers.0.sa"].shape[1] == 3
    scheduler = {"class": "DDPMScheduler", "num_train_timesteps": N_STEPS, "num_inference_steps": N_STEPS}
    common = dict(num_layers=3, scheduler=scheduler, checkpoint_sha256="0" * 64,
                  model_fingerprint=weights_fingerprint(policy), make_plots=False, strategies=("reuse", "forecast"))
    build_schedule_assets(tmp_path / "one", single, ["cosine", "l2"], [3, 5], **common)
    build_schedule_assets(tmp_path / "copies", copies, ["cosine", "l2"], [3, 5], **common)
    for metric in ("cosine", "l2"):
        for num_caches in (3, 5):
            for strategy in ("reuse", "forecast"):
                a = load_schedule(tmp_path / "one", metric, num_caches, strategy)
                b = load_schedule(tmp_path / "copies", metric, num_caches, strategy)
                assert a.steps == b.steps
    # other observations change the aggregated costs (the aggregation reads them all)
    others = [{"obs": torch.randn(1, 2, 5, generator=torch.Generator().manual_seed(s)) * 3} for s in range(4)]
    build_schedule_assets(tmp_path / "others", record_calibration_activations(policy, [one, *others], seed=0),
                          ["cosine"], [5], **common)
    mean = load_similarity_matrices(tmp_path / "others", "cosine")["decoder.layers.1.ffn"]
    alone = load_similarity_matrices(tmp_path / "one", "cosine")["decoder.layers.1.ffn"]
    assert not np.allclose(mean, alone, atol=1e-6)


def test_schedules_cli_calibrates_on_several_episodes_and_writes_forecast_schedules(tmp_path, capsys):
    import json

    import diffusion_policy.cli.schedules as cli
    from tests.checkpoint_fixtures import write_tiny_checkpoint
    from tests.test_bad_input import one_error_line

    ckpt = write_tiny_checkpoint(tmp_path / "tiny.ckpt", "pusht_lowdim")
    out = tmp_path / "assets"
    assert cli.main(["-c", str(ckpt), "-o", str(out), "--num_caches", "3", "--strategy", "reuse,forecast",
                     "--calibration_episodes", "2", "--no_plots"]) == 0
    for name in ("num_caches_3.json", "forecast_num_caches_3.json"):
        schedule = json.loads((out / "optimal_steps" / "cosine" / name).read_text())
        assert schedule["calibration"] == {"source": "env", "observations": 2, "seed": 0}
    assert json.loads((out / "optimal_steps" / "cosine" / "forecast_num_caches_3.json").read_text())[
        "strategy"] == "forecast"
    with np.load(out / "original" / "activations.npz") as saved:
        assert saved["decoder.layers.0.sa"].shape[1] == 2  # one entry per calibration observation
    capsys.readouterr()
    line = one_error_line(capsys, cli.main, ["-c", str(ckpt), "-o", str(tmp_path / "b"), "--calibration_samples",
                                             "4", "--no_plots"])
    assert "--calibration_samples goes with --calibration dataset" in line
    line = one_error_line(capsys, cli.main, ["-c", str(ckpt), "-o", str(tmp_path / "c"), "--strategy", "forecast",
                                             "--metric", "l1", "--num_caches", "3", "--no_plots"])
    assert "--strategy forecast needs --metric in cosine, l2, mse" in line


def test_dataset_calibration_takes_samples_spread_over_the_dataset(tmp_path):
    from omegaconf import OmegaConf

    from diffusion_policy.activation_utils.calibrate import calibration_observations
    from diffusion_policy.common.checkpoint import load_checkpoint
    from tests.checkpoint_fixtures import write_tiny_checkpoint
    from tests.test_datasets import _episodes, _pusht_episode, _write_zarr

    policy, cfg = load_checkpoint(write_tiny_checkpoint(tmp_path / "tiny.ckpt", "pusht_lowdim"))
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    cfg.task.dataset.zarr_path = _write_zarr(tmp_path / "pusht.zarr", _episodes(0, _pusht_episode))
    observations = calibration_observations(cfg, policy, "dataset", 3)
    assert len(observations) == 3 and observations[0]["obs"].shape == (1, policy.n_obs_steps, policy.obs_dim)
    assert not torch.equal(observations[0]["obs"], observations[2]["obs"])
    first = calibration_observations(cfg, policy, "dataset", 1)[0]
    assert torch.equal(first["obs"], observations[0]["obs"])  # the first sample first
    with pytest.raises(ValueError, match="--calibration_samples 100000 exceeds the dataset's"):
        calibration_observations(cfg, policy, "dataset", 100000)
