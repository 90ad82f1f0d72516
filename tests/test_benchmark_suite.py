"""Benchmark suite: planning per filter, missing checkpoints, skip-existing, local and Ray execution,
and the aggregated table, on a fake checkpoint tree with a fake eval command."""

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import diffusion_policy.cli.aggregate as agg
import diffusion_policy.cli.suite as suite

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class FakeEvalJob(suite.EvalJob):
    """Stands in for the evaluation: writes both result files with the score parsed from the
    checkpoint name (latest: 0.5), logs each call to calls.txt in the run's cwd, and fails (exit 3)
    for threshold when the checkpoint path contains "can_mh" and the file fail_threshold exists."""

    def run(self) -> None:
        mode = self.cache.mode
        with open("calls.txt", "a") as f:
            f.write(self.output_dir + "\n")
        print("fake eval", mode)
        if mode == "threshold" and "can_mh" in self.checkpoint and Path("fail_threshold").exists():
            sys.exit(3)
        match = re.search(r"test_mean_score=([0-9.]+)\.ckpt", self.checkpoint)
        score = float(match.group(1)) if match else 0.5
        speedup = {"original": 1.0, "threshold": 2.0, "optimal": 3.0}[mode]
        out = Path(self.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval_results.json").write_text(json.dumps({"mean_score": score, "cache": {"mode": mode}}))
        (out / "benchmark_results.json").write_text(json.dumps({
            "cache": {"mode": mode}, "speedup": speedup, "latency": {"median_ms": 100 / speedup},
            "latency_original": {"median_ms": 100.0}, "flops_per_predict_action": 1e9 / speedup,
            "flops_per_predict_action_original": 1e9, "action_frequency_hz": 80 * speedup}))


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A fake checkpoint tree (empty .ckpt files) and schedules; cwd = tmp_path.

    can_ph: train_0 complete, train_1 without latest.ckpt, no train_2;  can_mh: train_0 complete;
    kitchen: train_0..2 complete, no schedule;  lift_lowdim: flat bundled checkpoint;  the rest absent.
    """
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "checkpoint"
    scored = ["epoch=0100-test_mean_score=0.900.ckpt", "epoch=0250-test_mean_score=1.000.ckpt",
              "epoch=0300-test_mean_score=1.000.ckpt"]
    for seed, names in ((0, scored + ["latest.ckpt"]), (1, scored)):
        for name in names:
            touch(ckpt / f"can_ph/diffusion_policy_transformer/train_{seed}/checkpoints/{name}")
    for name in ("epoch=0050-test_mean_score=0.600.ckpt", "latest.ckpt"):
        touch(ckpt / f"can_mh/diffusion_policy_transformer/train_0/checkpoints/{name}")
        for seed in range(3):
            touch(ckpt / f"low_dim/kitchen/diffusion_policy_transformer/train_{seed}/checkpoints/{name}")
    touch(ckpt / "lift_lowdim/lift_lowdim_transformer.ckpt")
    for task in ("can_ph", "can_mh", "lift_lowdim"):
        touch(tmp_path / f"assets/{task}/optimal_steps/cosine/num_caches_5.json")
    return tmp_path


def planned_dirs(text: str) -> set[str]:
    """The -o of every command a dry run printed."""
    dirs = set()
    for line in text.splitlines():
        parts = line.split()
        if "-o" in parts:
            dirs.add(parts[parts.index("-o") + 1])
    return dirs


def runs_of(task: str, seeds, kinds=("max", "latest"), settings=("original", "threshold_5", "optimal_k5_bu3")
            ) -> set[str]:
    return {f"results/{task}/train_{s}/{k}/{m}" for s in seeds for k in kinds for m in settings}


CAN_PH = runs_of("can_ph", [0]) | runs_of("can_ph", [1], kinds=["max"])
CAN_MH = runs_of("can_mh", [0])
KITCHEN = runs_of("kitchen", [0, 1, 2], settings=["original", "threshold_5"])  # no schedule: optimal left out
LIFT_LOWDIM = runs_of("lift_lowdim", [0], kinds=["max"])  # flat: one checkpoint, no latest.ckpt


@pytest.mark.parametrize("flags, expected", [
    ([], CAN_PH | CAN_MH | KITCHEN | LIFT_LOWDIM),
    (["--ph_only"], CAN_PH),
    (["--mh_only"], CAN_MH),
    (["--lowdim_only"], KITCHEN | LIFT_LOWDIM),
    (["--task", "can_ph"], CAN_PH),
    (["--task", "kitchen,can_mh"], KITCHEN | CAN_MH),
])
def test_dry_run_lists_the_planned_runs_for_each_filter(tree, capsys, flags, expected):
    assert suite.main(["run", "--device", "cuda:0", "--dry_run", *flags]) == 0
    out = capsys.readouterr().out
    assert planned_dirs(out) == expected
    assert f"planned: {len(expected)} run(s) to do, 0 already done" in out
    assert not (tree / "results").exists()  # a dry run writes nothing


def test_command_of_one_run(tree):
    from diffusion_policy.acceleration import CacheConfig
    from diffusion_policy.env_runner.settings import EvalSettings

    options = suite.EvalOptions(cache=CacheConfig(num_caches=5, num_bu_blocks=3),
                                settings=EvalSettings(skip_video=True, n_test=2, max_steps=10))
    plan = suite.plan_runs(device="cuda:0", tasks=["can_ph"], seeds=[0], ckpt_kinds=["max"],
                           grid=suite.CacheGrid(modes=("optimal",)), options=options)
    (run,) = plan.runs
    assert run.name == "can_ph/train_0/max/optimal_k5_bu3"
    best = "checkpoint/can_ph/diffusion_policy_transformer/train_0/checkpoints/epoch=0300-test_mean_score=1.000.ckpt"
    assert list(run.command[1:]) == [
        "--checkpoint", best, "-o", "results/can_ph/train_0/max/optimal_k5_bu3", "--device", "cuda:0",
        "--cache_mode", "optimal", "--optimal_steps_dir", "assets/can_ph/optimal_steps/cosine", "--metric", "cosine",
        "--num_caches", "5", "--num_bu_blocks", "3", "--n_test", "2", "--max_steps", "10", "--seed", "0",
        "--latency_samples", "20", "--skip_video",
    ]
    # the flags parse back into the same settings (one builder both ways)
    import diffusion_policy.cli.evaluate as eval_cli
    from diffusion_policy.cli import flags

    parsed = eval_cli.parse_args(list(run.command[1:]))
    assert flags.cache_config_from_args(parsed) == CacheConfig(mode="optimal", num_caches=5, num_bu_blocks=3,
                                                               optimal_steps_dir="assets/can_ph/optimal_steps/cosine")
    assert run.log_path == "results/can_ph/train_0/max/optimal_k5_bu3/run.log"


def test_epochs_kind_adds_every_scored_checkpoint(tree):
    plan = suite.plan_runs(tasks=["can_ph"], seeds=[0], ckpt_kinds=["epochs"], grid=suite.CacheGrid(modes=("original",)))
    assert [r.name for r in plan.runs] == [f"can_ph/train_0/epoch_{e}/original" for e in ("0100", "0250", "0300")]


def test_missing_checkpoints_are_listed_once(tree, capsys):
    assert suite.main(["run", "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    missing = lines[1:lines.index(next(line for line in lines if line.startswith("planned:")))]
    assert lines[0] == f"missing ({len(missing)}):"
    for task in ("lift_ph", "lift_mh", "square_ph", "square_mh", "transport_ph", "transport_mh", "tool_hang_ph",
                 "block_pushing"):
        assert sum(line.strip().startswith(f"{task}:") for line in missing) == 1, task
    assert sum("can_ph train_1: no latest.ckpt" in line for line in missing) == 1
    for task, seed in (("can_ph", 2), ("can_mh", 1), ("can_mh", 2)):
        assert sum(f"{task} train_{seed}: no directory" in line for line in missing) == 1
    assert sum("kitchen: no schedule" in line for line in missing) == 1
    assert sum("lift_lowdim train_0: no latest.ckpt" in line for line in missing) == 1
    assert len(missing) == 14
    assert not any("pusht" in line for line in missing)  # optional task: silent when absent


def test_bad_filters_give_one_error_line(tree, capsys):
    assert suite.main(["run", "--task", "nope", "--dry_run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown task(s) nope; known:") and "\n" not in err
    assert suite.main(["run", "--task", "kitchen", "--ph_only", "--dry_run"]) == 2
    assert "no task matches" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        suite.main(["run", "--ph_only", "--mh_only"])


def test_schedules_plan_uses_train_0_max_and_skips_done(tree, capsys):
    plan = suite.plan_schedules(device="cuda:0", num_caches=[5, 8], metrics=["cosine"])
    assert [r.name for r in plan.runs] == ["can_ph", "can_mh", "kitchen", "lift_lowdim"]
    kitchen = plan.runs[2]
    assert list(kitchen.command[1:]) == [
        "-c", "checkpoint/low_dim/kitchen/diffusion_policy_transformer/train_0/checkpoints/"
        "epoch=0050-test_mean_score=0.600.ckpt", "-o", "assets/kitchen", "-d", "cuda:0",
        "--num_caches", "5,8", "--metric", "cosine"]
    for path in ("num_caches_5.json", "num_caches_8.json", "bubbling_union.json"):
        (tree / "assets/kitchen/optimal_steps/cosine" / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / "assets/kitchen/optimal_steps/cosine" / path).write_text("{}")
    plan = suite.plan_schedules(tasks=["kitchen"], num_caches=[5, 8], metrics=["cosine"])
    assert [r.name for r in plan.done] == ["kitchen"] and not plan.runs
    forced = suite.plan_schedules(tasks=["kitchen"], num_caches=[5, 8], metrics=["cosine"], force_recompute=True)
    assert [r.name for r in forced.runs] == ["kitchen"] and "--force_recompute" in forced.runs[0].command
    assert suite.main(["schedules", "--lowdim_only", "--dry_run"]) == 0
    assert "block_pushing: no checkpoints" in capsys.readouterr().out


def write_result(run_dir: Path, score, speedup=1.0, flops=1e9, hz=80.0, cache=None, episodes=None,
                 n_episodes=None) -> None:
    """Hand-made result files; `episodes`: the test episodes' scores (their mean must be `score`);
    `n_episodes`: test episodes without per-episode scores (as Kitchen's runner logs them)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = cache or {"mode": run_dir.name}
    metrics = {f"test/sim_max_reward_{100000 + i}": value for i, value in enumerate(episodes or ())}
    rewards = [{"prefix": "test/", "seed": i, "rewards": [], "total_reward": 0.0, "max_reward": 0.0}
               for i in range(n_episodes or len(episodes or ()))]
    (run_dir / "eval_results.json").write_text(json.dumps({"mean_score": score, "cache": cache, "metrics": metrics,
                                                          "episode_rewards": rewards}))
    (run_dir / "benchmark_results.json").write_text(json.dumps({
        "cache": cache, "speedup": speedup, "latency": {"median_ms": 100.0 / speedup},
        "latency_original": {"median_ms": 100.0}, "flops_per_predict_action": flops,
        "flops_per_predict_action_original": 1e9, "action_frequency_hz": hz}))


def test_existing_results_are_skipped_and_failures_reported(tree):
    write_result(tree / "results/can_mh/train_0/max/original", 0.6)
    (tree / "results/can_mh/train_0/latest/original").mkdir(parents=True)
    (tree / "results/can_mh/train_0/latest/original/eval_results.json").write_text("{corrupt")  # re-run
    (tree / "fail_threshold").touch()
    plan = suite.plan_runs(tasks=["can_mh"], job_type=FakeEvalJob)
    assert [r.name for r in plan.done] == ["can_mh/train_0/max/original"]
    assert len(plan.runs) == 5

    lines = []
    outcomes = suite.run_plan(plan.runs, jobs=2, report=lines.append)
    calls = (tree / "calls.txt").read_text().split()
    assert sorted(calls) == sorted(r.output_dir for r in plan.runs)  # the existing run was not re-run
    failed = sorted(o.name for o in outcomes if not o.ok)
    assert failed == ["can_mh/train_0/latest/threshold_5", "can_mh/train_0/max/threshold_5"]
    assert all(o.returncode == 3 for o in outcomes if not o.ok) and len(lines) == 5
    for run in plan.runs:  # every run's output went to its own log, next to its results
        assert "fake eval" in Path(run.log_path).read_text()
    rerun = next(r for r in plan.runs if r.name == "can_mh/train_0/latest/original")
    assert suite.is_complete(rerun)  # the corrupt result was replaced
    assert json.loads(Path(rerun.expected[0]).read_text())["mean_score"] == 0.5

    (tree / "fail_threshold").unlink()
    again = suite.plan_runs(tasks=["can_mh"], job_type=FakeEvalJob)
    assert sorted(r.name for r in again.runs) == failed  # restartable: only the failed runs are left


def test_cli_exit_code_and_summary(tree, monkeypatch, capsys):
    monkeypatch.setattr(suite, "EvalJob", FakeEvalJob)
    (tree / "fail_threshold").touch()
    assert suite.main(["run", "--task", "can_mh", "--jobs", "2", "--no_plots"]) == 1
    out = capsys.readouterr().out
    assert "done: 4 ok, 2 failed, 0 skipped" in out
    assert out.count("FAILED") == 2 + 2  # progress lines + the final list
    rows = list(csv.DictReader(open(tree / "results/summary.csv")))
    assert [(r["task"], r["setting"]) for r in rows] == [("can_mh", "original"), ("can_mh", "optimal_k5_bu3")]
    (tree / "fail_threshold").unlink()
    assert suite.main(["run", "--task", "can_mh", "--no_plots"]) == 0
    assert "done: 2 ok, 0 failed, 4 skipped" in capsys.readouterr().out


def test_ray_backend_runs_two_tiny_runs(tree):
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'ray[default]' (the dist extra)")
    plan = suite.plan_runs(tasks=["can_mh"], ckpt_kinds=["max"], grid=suite.CacheGrid(modes=("original", "optimal")),
                           job_type=FakeEvalJob)
    assert len(plan.runs) == 2
    # the Ray workers import this module to run its FakeEvalJob
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    try:
        outcomes = suite.run_plan(plan.runs, backend="ray", report=lambda line: None)
    finally:
        ray.shutdown()
    assert sorted(o.name for o in outcomes) == ["can_mh/train_0/max/optimal_k5_bu3", "can_mh/train_0/max/original"]
    assert all(o.ok for o in outcomes)
    assert all(suite.is_complete(run) for run in plan.runs)


def test_ray_backend_without_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(RuntimeError, match=r"pip install 'ray\[default\]'"):
        job = suite.ScheduleJob("x.ckpt", "x")
        suite.run_plan([suite.PlannedRun("x", job, ".", "x.log", (), ".")], backend="ray")


def test_last_n_score_takes_the_last_ten_checkpoints():
    R = agg.RunRecord
    records = [R("t", 0, f"epoch_{e:04d}", "original", mean_score=float(e)) for e in range(1, 12)]
    records.append(R("t", 0, "latest", "original", mean_score=100.0))
    assert agg.last_n_score(records) == pytest.approx((sum(range(3, 12)) + 100.0) / 10)
    assert agg.last_n_score([R("t", 0, "latest", "original", mean_score=0.7)]) == pytest.approx(0.7)
    assert agg.last_n_score([R("t", 0, "max", "original", mean_score=0.7)]) is None


def test_aggregation_of_hand_made_results(tmp_path, capsys):
    res = tmp_path / "results"
    optimal = {"mode": "optimal", "metric": "cosine", "num_caches": 5, "num_bu_blocks": 3}
    for seed, (mx, latest) in enumerate([(1.0, 0.9), (0.8, 0.7)]):
        write_result(res / f"can_ph/train_{seed}/max/original", mx)
        write_result(res / f"can_ph/train_{seed}/latest/original", latest)
    for seed, (mx, latest, speedup) in enumerate([(1.0, 0.8, 3.0), (0.9, 0.6, 2.0)]):
        for kind, score in (("max", mx), ("latest", latest)):
            write_result(res / f"can_ph/train_{seed}/{kind}/optimal_k5_bu3", score, speedup, flops=4e8,
                         hz=80 * speedup, cache=optimal)
    # kitchen: one seed, last-10 over two epochs + latest; a corrupt benchmark file, a run without files
    threshold = {"mode": "threshold", "cache_threshold": 5}
    write_result(res / "kitchen/train_0/epoch_0100/threshold_5", 0.2, 2.0, cache=threshold)
    write_result(res / "kitchen/train_0/epoch_0200/threshold_5", 0.4, 2.0, cache=threshold)
    write_result(res / "kitchen/train_0/latest/threshold_5", 0.6, 2.0, cache=threshold)
    write_result(res / "kitchen/train_0/max/threshold_5", 0.5, 2.0, cache=threshold)
    (res / "kitchen/train_0/max/threshold_5/benchmark_results.json").write_text("{not json")
    (res / "kitchen/train_1/max/threshold_5").mkdir(parents=True)
    (res / "kitchen/train_1/max/threshold_5/run.log").write_text("crashed")
    (res / "benchmark_inference.json").write_text("{}")  # other files in results/ are ignored

    warnings = []
    rows = agg.aggregate(res, warn=warnings.append)
    assert len(rows) == 3 and len(warnings) == 3
    assert any("kitchen/train_0/max/threshold_5/benchmark_results.json is unreadable" in w for w in warnings)
    assert sum("kitchen/train_1/max/threshold_5/" in w and "is missing" in w for w in warnings) == 2

    table = {(r["task"], r["setting"]): r for r in csv.DictReader(open(res / "summary.csv"))}
    assert list(table) == [("can_ph", "original"), ("can_ph", "optimal_k5_bu3"), ("kitchen", "threshold_5")]
    expected = {  # by hand: mean and population std over the seeds
        ("can_ph", "original"): dict(success_max=0.9, success_max_std=0.1, success_last10=0.8,
                                     success_last10_std=0.1, speedup=1.0, flops_per_chunk=1e9,
                                     action_frequency_hz=80.0, n_runs=4),
        ("can_ph", "optimal_k5_bu3"): dict(success_max=0.95, success_max_std=0.05, success_last10=0.7,
                                           success_last10_std=0.1, speedup=2.5, latency_ms=41.6666667,
                                           flops_per_chunk=4e8, action_frequency_hz=200.0, n_runs=4),
        ("kitchen", "threshold_5"): dict(success_max=0.5, success_max_std=0.0, success_last10=0.4,
                                         success_last10_std=0.0, speedup=2.0, n_runs=4),
    }
    for key, values in expected.items():
        for column, value in values.items():
            assert float(table[key][column]) == pytest.approx(value), (key, column)
    assert table[("can_ph", "optimal_k5_bu3")]["cache"] == "optimal cosine k=5 bu=3"
    assert table[("can_ph", "optimal_k5_bu3")]["mode"] == "optimal"
    assert table[("kitchen", "threshold_5")]["n_seeds_max"] == "1"
    assert table[("can_ph", "original")]["success_max_se"] == ""  # no episodes recorded: unknown, not 0

    md = (res / "summary.md").read_text()
    assert "| can_ph | optimal cosine k=5 bu=3 | 0.950 (std 0.050, 2 seeds) | 0.700 (std 0.100, 2 seeds) | – | 2.50× |" in md
    for name in ("summary_success_vs_speedup.png", "summary_modes.png"):
        assert (res / name).read_bytes().startswith(PNG_MAGIC)
    assert not list(res.glob(".*.tmp"))

    assert agg.main([str(res), "--no_plots"]) == 0
    assert "| kitchen | threshold every 5 |" in capsys.readouterr().out
    assert agg.main([str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_one_row_per_setting_with_the_standard_error_of_the_episodes(tmp_path):
    """The paper's table on one seed: a row per cache setting in table order, success ± standard error."""
    res = tmp_path / "results"
    rng = np.random.default_rng(0)
    settings = {  # written in a scrambled order; the table sorts them
        "optimal_k10_bu3": {"mode": "optimal", "metric": "cosine", "num_caches": 10, "num_bu_blocks": 3},
        "threshold_10": {"mode": "threshold", "cache_threshold": 10},
        "optimal_k5_bu0": {"mode": "optimal", "metric": "cosine", "num_caches": 5, "num_bu_blocks": 0},
        "optimal_k5_bu3_forecast1": {"mode": "optimal", "metric": "cosine", "num_caches": 5, "num_bu_blocks": 3,
                                     "strategy": "forecast", "forecast_order": 1},
        "original": {"mode": "original"},
        "optimal_k8_bu3": {"mode": "optimal", "metric": "cosine", "num_caches": 8, "num_bu_blocks": 3},
        "optimal_k8_bu3_recompute_l0ffn": {"mode": "optimal", "metric": "cosine", "num_caches": 8, "num_bu_blocks": 3,
                                           "recompute_blocks": ["decoder.layers.0.ffn"]},
        "threshold_5": {"mode": "threshold", "cache_threshold": 5},
        "optimal_k5_bu3": {"mode": "optimal", "metric": "cosine", "num_caches": 5, "num_bu_blocks": 3},
    }
    scores = {}
    for name, cache in settings.items():
        scores[name] = rng.uniform(0, 1, size=50)
        write_result(res / f"pusht/train_0/latest/{name}", float(scores[name].mean()), cache=cache,
                     episodes=scores[name].tolist())
    # Kitchen logs no per-episode score: the binomial bound from its 50 test episodes
    write_result(res / "kitchen/train_0/latest/original", 0.8, n_episodes=50)
    rows = agg.aggregate(res, plots=False)
    assert [r["setting"] for r in rows if r["task"] == "pusht"] == [
        "original", "threshold_5", "threshold_10", "optimal_k5_bu0", "optimal_k5_bu3", "optimal_k8_bu3",
        "optimal_k8_bu3_recompute_l0ffn", "optimal_k10_bu3", "optimal_k5_bu3_forecast1"]
    for row in rows:
        if row["task"] == "pusht":
            episodes = scores[row["setting"]]
            assert row["success_last10"] == pytest.approx(episodes.mean())
            assert row["success_last10_se"] == pytest.approx(episodes.std(ddof=1) / np.sqrt(50))
            assert row["n_episodes"] == 50 and row["success_max"] is None
    (kitchen,) = [r for r in rows if r["task"] == "kitchen"]
    assert kitchen["success_last10_se"] == pytest.approx(np.sqrt(0.8 * 0.2 / 50))
    md = (res / "summary.md").read_text()
    original = scores["original"]
    assert "success max" not in md  # no `max` checkpoint anywhere: no empty column
    assert f"| pusht | original | {original.mean():.3f} ± {original.std(ddof=1) / np.sqrt(50):.3f} | 50 |" in md
    assert "| pusht | optimal cosine k=5 bu=3 forecast 1 |" in md
    assert "| pusht | optimal cosine k=8 bu=3 recompute L0.ffn |" in md
    assert "| kitchen | original | 0.800 ± 0.057 | 50 |" in md


def test_episode_scores_that_do_not_average_to_the_mean_are_left_out(tmp_path):
    res = tmp_path / "results"
    write_result(res / "pusht/train_0/latest/original", 0.9, episodes=[0.1, 0.2, 0.3])
    warnings = []
    (row,) = agg.aggregate(res, plots=False, warn=warnings.append)
    assert row["success_last10"] == pytest.approx(0.9) and row["success_last10_se"] is None
    assert any("do not average to mean_score" in w for w in warnings)


def test_suite_grid_spans_the_papers_settings(tree, capsys):
    """--cache_threshold 5,10 --num_caches 5,8,10 --num_bu_blocks 0,3: 1 + 2 + 6 settings per checkpoint,
    each in its own results dir; a missing schedule leaves out exactly the settings that need it."""
    for k in (8, 10):
        touch(tree / f"assets/can_mh/optimal_steps/cosine/num_caches_{k}.json")
    touch(tree / "assets/can_mh/optimal_steps/cosine/num_caches_10.json")
    args = ["run", "--task", "can_mh", "--ckpt_kinds", "max", "--cache_threshold", "5,10", "--num_caches", "5,8,10",
            "--num_bu_blocks", "0,3", "--dry_run"]
    assert suite.main(args) == 0
    out = capsys.readouterr().out
    settings = ["original", "threshold_5", "threshold_10"] + [
        f"optimal_k{k}_bu{bu}" for k in (5, 8, 10) for bu in (0, 3)]
    assert planned_dirs(out) == {f"results/can_mh/train_0/max/{name}" for name in settings}
    assert "--num_bu_blocks 0" in out and "--cache_threshold 10" in out
    (tree / "assets/can_mh/optimal_steps/cosine/num_caches_8.json").unlink()
    assert suite.main(args) == 0
    out = capsys.readouterr().out
    assert "results/can_mh/train_0/max/optimal_k8_bu0" not in planned_dirs(out)
    assert len(planned_dirs(out)) == 7
    assert sum("can_mh: no schedule" in line and "optimal_k8_bu0, optimal_k8_bu3 left out" in line
               for line in out.splitlines()) == 1
    assert suite.main(["run", "--task", "can_mh", "--num_bu_blocks", "-1", "--dry_run"]) == 2


def test_setting_names():
    from diffusion_policy.acceleration import CacheConfig

    assert suite.setting_name(CacheConfig()) == "original"
    assert suite.setting_name(CacheConfig("threshold", cache_threshold=10)) == "threshold_10"
    optimal = dict(mode="optimal", optimal_steps_dir="x", num_caches=8, num_bu_blocks=0)
    assert suite.setting_name(CacheConfig(**optimal)) == "optimal_k8_bu0"
    assert suite.setting_name(CacheConfig(**optimal, metric="l2")) == "optimal_l2_k8_bu0"
    assert suite.setting_name(CacheConfig(**optimal, strategy="forecast", forecast_order=2)) == "optimal_k8_bu0_forecast2"


def test_schedules_of_a_shipped_flat_checkpoint_come_from_its_latest(tree):
    touch(tree / "checkpoint/pusht_lowdim/latest.ckpt")
    plan = suite.plan_schedules(tasks=["pusht_lowdim"], num_caches=[5], metrics=["cosine"], strategies=["reuse", "forecast"])
    (run,) = plan.runs
    assert run.command[1:3] == ("-c", "checkpoint/pusht_lowdim/latest.ckpt") and not plan.missing
    assert run.command[-2:] == ("--strategy", "reuse,forecast")
    assert {Path(p).name for p in run.expected} == {"bubbling_union.json", "num_caches_5.json", "forecast_num_caches_5.json"}


def test_several_sampling_seeds_give_one_run_each(tree, capsys):
    """--seed 0,2: every setting twice, same episodes; seed 0 keeps the setting's own dir (results made before
    sampling seeds were a list stay valid), seed 2 goes to <setting>_sampling_seed2 and runs with --seed 2."""
    args = ["run", "--task", "can_mh", "--ckpt_kinds", "max", "--cache_mode", "original,threshold", "--dry_run"]
    assert suite.main(args + ["--seed", "0,2"]) == 0
    out = capsys.readouterr().out
    base = "results/can_mh/train_0/max"
    assert planned_dirs(out) == {f"{base}/original", f"{base}/threshold_5", f"{base}/original_sampling_seed2",
                                 f"{base}/threshold_5_sampling_seed2"}
    seeded = [line for line in out.splitlines() if "_sampling_seed2" in line]
    assert len(seeded) == 2 and all("--seed 2" in line for line in seeded)
    assert sum("--seed 0" in line for line in out.splitlines()) == 2
    with pytest.raises(SystemExit):
        suite.main(args + ["--seed", "x"])
    assert suite.main(args + ["--latency_samples", "5"]) == 0  # passed on to every run
    assert all("--latency_samples 5" in line for line in capsys.readouterr().out.splitlines() if "bac-eval" in line)
    assert suite.main(args + ["--latency_samples", "0"]) == 2


def test_sampling_seeds_are_pooled_into_one_evaluation(tmp_path):
    """Three sampling seeds' runs of one checkpoint and setting: one row, the mean of their scores, the
    standard error of that mean, their episodes summed (shown 3×50); speed averaged over the runs."""
    res = tmp_path / "results"
    rng = np.random.default_rng(1)
    cache = {"mode": "threshold", "cache_threshold": 5}
    runs = {}
    for sampling_seed, speedup in ((0, 4.0), (1, 5.0), (2, 6.0)):
        episodes = rng.uniform(0, 1, size=50)
        name = "threshold_5" if sampling_seed == 0 else f"threshold_5_sampling_seed{sampling_seed}"
        write_result(res / f"pusht/train_0/latest/{name}", float(episodes.mean()), speedup, cache=cache,
                     episodes=episodes.tolist())
        runs[sampling_seed] = episodes
    write_result(res / "pusht/train_0/latest/original", 0.7, episodes=[0.6, 0.8])
    rows = agg.aggregate(res, plots=False)
    assert [r["setting"] for r in rows] == ["original", "threshold_5"]
    pooled = rows[1]
    means = [e.mean() for e in runs.values()]
    errors = [e.std(ddof=1) / np.sqrt(50) for e in runs.values()]
    assert pooled["success_last10"] == pytest.approx(np.mean(means))
    assert pooled["success_last10_se"] == pytest.approx(np.sqrt(np.sum(np.square(errors))) / 3)
    assert pooled["n_episodes"] == 150 and pooled["n_sampling_seeds"] == 3 and pooled["n_runs"] == 3
    assert pooled["speedup"] == pytest.approx(5.0)
    assert rows[0]["n_sampling_seeds"] == 1 and rows[0]["n_episodes"] == 2
    md = (res / "summary.md").read_text()
    assert f"| pusht | threshold every 5 | {np.mean(means):.3f} ± {pooled['success_last10_se']:.3f} | 3×50 | 5.00× |" in md
    assert "| pusht | original | 0.700 ± 0.100 | 2 |" in md
    csv_row = list(csv.DictReader(open(res / "summary.csv")))[1]
    assert csv_row["setting"] == "threshold_5" and csv_row["n_sampling_seeds"] == "3"


@pytest.mark.parametrize("tree_dir", ["results", "results/seed_study"])
def test_committed_tables_are_what_their_runs_aggregate_to(tree_dir, tmp_path):
    """The README's tables come from committed runs: aggregating a copy of each committed tree again gives
    the committed summary.md, row for row (the sampling-seed study: its 3×50-episode pooled rows)."""
    import shutil

    source = REPO / tree_dir
    copy = tmp_path / "tree"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("seed_study", "sensitivity", "*.png", "summary.*"))
    agg.aggregate(copy, plots=False, warn=lambda message: None)
    table = [line for line in (copy / "summary.md").read_text().splitlines() if line.startswith("| ")]
    committed = [line for line in (source / "summary.md").read_text().splitlines() if line.startswith("| ")]
    assert table == committed


def test_run_dir_names_round_trip():
    for setting, sampling_seed in (("original", 0), ("threshold_5", 2), ("optimal_k5_bu3_forecast1", 11)):
        assert suite.parse_run_dir_name(suite.run_dir_name(setting, sampling_seed)) == (setting, sampling_seed)
    assert suite.run_dir_name("original", 0) == "original"  # seed 0 keeps the setting's own dir
    assert suite.parse_run_dir_name("x_sampling_seedab") == ("x_sampling_seedab", 0)
