"""End to end: evaluate tiny random checkpoints in simulation in every cache mode."""

import json

import pytest

from checkpoint_fixtures import write_tiny_checkpoint
from diffusion_policy.activation_utils.calibrate import compute_optimal_schedules

EVAL_FIELDS = {"checkpoint", "task", "cache", "mean_score", "metrics", "episode_rewards", "videos", "n_episodes"}
BENCH_FIELDS = {"task", "cache", "num_inference_steps", "n_action_steps", "batch_size", "latency", "latency_original",
                "speedup", "rollout_latency", "flops_per_predict_action", "flops_per_predict_action_original",
                "flops_ratio", "block_evaluations_per_predict_action", "action_frequency_hz", "environment"}


@pytest.fixture(scope="module", params=["pusht_lowdim", "lift_lowdim"])
def task_checkpoint(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    ckpt = write_tiny_checkpoint(tmp / "tiny.ckpt", request.param)
    assets = tmp / "assets"
    written = compute_optimal_schedules(str(ckpt), str(assets), num_caches_list=(2, 4), metrics=("cosine",),
                                        make_plots=False)
    assert any(p.name == "num_caches_2.json" for p in written)
    return request.param, ckpt, assets


@pytest.mark.parametrize("mode_args", [
    ["--cache_mode", "original"],
    ["--cache_mode", "threshold", "--cache_threshold", "3"],
    ["--cache_mode", "optimal", "--num_caches", "2", "--num_bu_blocks", "1"],
], ids=["original", "threshold", "optimal"])
def test_eval_script_writes_every_field(task_checkpoint, mode_args, tmp_path, capsys):
    import diffusion_policy.cli.evaluate as eval_script

    task, ckpt, assets = task_checkpoint
    out = tmp_path / "results"
    args = ["--checkpoint", str(ckpt), "-o", str(out), "--n_test", "1", "--n_train", "0", "--n_envs", "1",
            "--max_steps", "8", "--skip_video", "--latency_samples", "2", *mode_args]
    if "optimal" in mode_args:
        args += ["--optimal_steps_dir", str(assets / "optimal_steps" / "cosine")]
    assert eval_script.main(args) == 0
    results = json.loads((out / "eval_results.json").read_text())
    bench = json.loads((out / "benchmark_results.json").read_text())
    assert EVAL_FIELDS <= set(results) and BENCH_FIELDS <= set(bench)
    assert results["task"] == task and results["n_episodes"] == 1
    assert 0.0 <= results["mean_score"] <= 1.0
    assert results["episode_rewards"][0]["seed"] >= 0 and len(results["episode_rewards"][0]["rewards"]) == 8
    assert results["cache"]["mode"] == mode_args[1]
    assert bench["latency"]["median_ms"] > 0 and bench["latency_original"]["median_ms"] > 0
    n_blocks = 3 * 2 * 8  # 2 layers x 3 blocks x 8 denoising steps
    assert bench["block_evaluations_per_predict_action_original"] == n_blocks
    if mode_args[1] == "original":
        assert bench["block_evaluations_per_predict_action"] == n_blocks
        assert bench["flops_per_predict_action"] == bench["flops_per_predict_action_original"]
    else:
        assert bench["block_evaluations_per_predict_action"] < n_blocks
        assert bench["flops_per_predict_action"] < bench["flops_per_predict_action_original"]
    assert "mean_score" in capsys.readouterr().out


def test_eval_script_missing_checkpoint_is_one_line(tmp_path, capsys):
    import diffusion_policy.cli.evaluate as eval_script

    assert eval_script.main(["--checkpoint", str(tmp_path / "missing.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.ckpt" in err


def test_optimal_without_steps_dir_is_refused(task_checkpoint, capsys):
    import diffusion_policy.cli.evaluate as eval_script

    _, ckpt, _ = task_checkpoint
    assert eval_script.main(["--checkpoint", str(ckpt), "--cache_mode", "optimal"]) == 2
    assert "--optimal_steps_dir" in capsys.readouterr().err


def test_runner_falls_back_to_the_cfg_task_name_without_the_dataset(tmp_path):
    """A checkpoint trained on a dataset file this machine lacks still evaluates (test episodes)."""
    from diffusion_policy.common.checkpoint import load_checkpoint
    from diffusion_policy.env_runner.factory import make_env_runner

    ckpt = write_tiny_checkpoint(tmp_path / "tiny.ckpt", "lift_lowdim", ("task.dataset_path=data/elsewhere/demos.hdf5",))
    _, cfg = load_checkpoint(ckpt)
    from omegaconf import open_dict

    with open_dict(cfg):  # as in checkpoints written before the runner config named its task
        del cfg.task.env_runner["task_name"]
    runner = make_env_runner(cfg, str(tmp_path), n_test=1, n_train=0)
    obs = runner.first_observation()
    assert obs["obs"].shape == (1, cfg.n_obs_steps, 19)


def test_results_round_trip_through_their_json_files(tmp_path):
    from diffusion_policy.env_runner.results import (
        BenchmarkResult,
        EpisodeReward,
        EvalResult,
        LatencyStats,
    )

    evaluation = EvalResult("c.ckpt", "lift_lowdim", {"mode": "original"}, 0.5, {"test/mean_score": 0.5},
                            [EpisodeReward("test/", 100000, [0.0, 1.0], 1.0, 1.0)], {}, 1, "2026-12-02T12:00:00")
    latency = LatencyStats(10.0, 12.0, 10.5, 20)
    benchmark = BenchmarkResult("lift_lowdim", {"mode": "original"}, 100, 8, 1, latency, latency, 1.0, latency,
                                1e9, 1e9, 1.0, 2400, 2400, 800.0, 800.0, {"torch": "2.13.0"})
    assert EvalResult.load(evaluation.save(tmp_path)) == evaluation
    assert BenchmarkResult.load(benchmark.save(tmp_path)) == benchmark
    (tmp_path / "broken.json").write_text('{"task": "x"}')
    with pytest.raises(ValueError, match="not a complete BenchmarkResult"):
        BenchmarkResult.load(tmp_path / "broken.json")
