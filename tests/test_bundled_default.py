"""The shipped default: checkpoint, its README row, its schedules, and a two-run sweep over it."""

import re
import shlex
from pathlib import Path

import pytest
import torch

from diffusion_policy.acceleration import CacheConfig, apply_cache, cache_report
from diffusion_policy.common.checkpoint import load_checkpoint
from diffusion_policy.default_job import DEFAULT_CHECKPOINT, shipped_tasks, task_paths

REPO = Path(__file__).resolve().parents[1]


SHIPPED = shipped_tasks()


def readme_command(task: str) -> str:
    """The last `python train.py ...` command of checkpoint/README.md's section on `task`'s checkpoint
    (the command that wrote the file)."""
    text = (REPO / "checkpoint" / "README.md").read_text().replace("\\\n", " ")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    section = next((s for s in sections if s.startswith(f"Reproduce `{task}/latest.ckpt`")), None)
    assert section is not None, f"checkpoint/README.md has no '## Reproduce `{task}/latest.ckpt`' section"
    commands = re.findall(r"python train\.py .*$", section, re.MULTILINE)
    assert commands, f"checkpoint/README.md states no `python train.py ...` command for {task}"
    return commands[-1]


def test_the_default_is_shipped():
    assert DEFAULT_CHECKPOINT.parent.name in SHIPPED


@pytest.mark.parametrize("task", SHIPPED)
def test_shipped_checkpoint_matches_its_readme_row(task):
    policy, cfg = load_checkpoint(REPO / "checkpoint" / task / "latest.ckpt")
    assert cfg.task.name == task
    row = next((line for line in (REPO / "checkpoint" / "README.md").read_text().splitlines()
                if line.startswith(f"| `{task}/latest.ckpt`")), None)
    assert row is not None, f"checkpoint/README.md has no table row for {task}/latest.ckpt"
    args = shlex.split(readme_command(task))
    overrides = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("--"))
    # the workspace config the cfg came from: <name>_workspace or a task variant <name>_<variant>_workspace
    assert any(a.startswith(f"--config-name={cfg.name}") and a.endswith("_workspace") for a in args), args
    checks = {
        "task": cfg.task.name,
        "horizon": cfg.horizon,
        "n_obs_steps": cfg.n_obs_steps,
        "n_action_steps": cfg.n_action_steps,
        "policy.model.n_layer": cfg.policy.model.n_layer,
        "policy.model.n_head": cfg.policy.model.n_head,
        "policy.model.n_emb": cfg.policy.model.n_emb,
        "training.num_epochs": cfg.training.num_epochs,
        "dataloader.batch_size": cfg.dataloader.batch_size,
        "optimizer.learning_rate": cfg.optimizer.learning_rate,
    }
    for key, value in checks.items():
        assert key in overrides, f"README command does not state {key}"
        assert str(overrides[key]) == str(value) or float(overrides[key]) == float(value), key
    # the architecture the README states is the one in the file
    assert len(policy.model.decoder.layers) == int(overrides["policy.model.n_layer"])
    assert policy.num_inference_steps == 100 and type(policy.noise_scheduler).__name__ == "DDPMScheduler"
    assert f"{cfg.training.num_epochs} epochs" in row, "the README row states another epoch count"


@pytest.mark.parametrize("task", SHIPPED)
def test_shipped_schedules_fit_the_checkpoint(task):
    policy, _ = load_checkpoint(REPO / "checkpoint" / task / "latest.ckpt")
    apply_cache(policy, CacheConfig("optimal", optimal_steps_dir=str(REPO / "assets" / task), num_caches=10,
                                    num_bu_blocks=3))
    obs = {"obs": torch.zeros(1, policy.n_obs_steps, policy.obs_dim)}
    with torch.no_grad():
        action = policy.predict_action(obs)["action"]
    assert action.shape == (1, policy.n_action_steps, policy.action_dim) and torch.isfinite(action).all()
    evaluations = sum(cache_report(policy)["block_evaluations"].values())
    assert evaluations < 0.25 * 24 * policy.num_inference_steps  # really cached


def test_two_run_sweep_on_the_bundled_default(tmp_path):
    import diffusion_policy.cli.suite as suite
    from diffusion_policy.env_runner.settings import EvalSettings
    plan = suite.plan_runs(
        checkpoint_root=str(REPO / "checkpoint"), results_dir=str(tmp_path / "results"),
        assets_dir=str(REPO / "assets"), tasks=("lift_lowdim",), seeds=(0,), ckpt_kinds=("latest",),
        grid=suite.CacheGrid(modes=("original", "threshold")),
        options=suite.EvalOptions(settings=EvalSettings(skip_video=True, n_test=1, n_train=0, n_envs=1, max_steps=8)),
    )
    assert len(plan.runs) == 2
    outcomes = suite.run_plan(plan.runs, jobs=1)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    rows = suite.aggregate(tmp_path / "results", plots=False)
    assert [(r["setting"], r["mode"]) for r in rows] == [("original", "original"), ("threshold_5", "threshold")]
    assert all(r["n_episodes"] == 1 for r in rows)
    assert (tmp_path / "results" / "summary.md").is_file()


def test_main_job_runs_any_shipped_task_and_names_the_shipped_ones(tmp_path, capsys):
    from diffusion_policy.cli import default

    for task in SHIPPED:
        checkpoint, assets, output = task_paths(task)
        assert checkpoint == REPO / "checkpoint" / task / "latest.ckpt" and assets == REPO / "assets" / task
        assert output.name == ("default" if checkpoint == DEFAULT_CHECKPOINT else f"default_{task}")
    (tmp_path / "checkpoint" / "made_up").mkdir(parents=True)
    (tmp_path / "checkpoint" / "made_up" / "latest.ckpt").write_bytes(b"")
    assert shipped_tasks(tmp_path) == ["made_up"]
    assert default.main(["--task", "pusht_nope", "-o", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and "no shipped checkpoint for task 'pusht_nope'" in line and "lift_lowdim" in line
    assert not (tmp_path / "out").exists()


def test_the_suite_lists_every_shipped_checkpoint():
    from diffusion_policy.cli.suite import discover_tasks, find_checkpoints

    specs = {spec.name: spec for spec in discover_tasks(REPO / "checkpoint")}
    for task in SHIPPED:
        assert task in specs, f"the suite does not find checkpoint/{task}"
        found, _ = find_checkpoints(REPO / "checkpoint", specs[task], [0], ["latest"])
        assert found == {0: {"latest": REPO / "checkpoint" / task / "latest.ckpt"}}
