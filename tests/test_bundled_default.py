"""The shipped default: checkpoint, its README row, its schedules, and a two-run sweep over it."""

import re
import shlex
from pathlib import Path

import pytest
import torch

from diffusion_policy.acceleration import CacheConfig, apply_cache, cache_report
from diffusion_policy.common.checkpoint import load_checkpoint
from diffusion_policy.default_job import DEFAULT_ASSETS, DEFAULT_CHECKPOINT

REPO = Path(__file__).resolve().parents[1]


def readme_command() -> str:
    """The last `python train.py ...` command of checkpoint/README.md (the one that wrote the file)."""
    text = (REPO / "checkpoint" / "README.md").read_text().replace("\\\n", " ")
    commands = re.findall(r"python train\.py .*$", text, re.M)
    assert commands, "checkpoint/README.md states no `python train.py ...` command"
    return commands[-1]


@pytest.fixture(scope="module")
def default_policy():
    policy, cfg = load_checkpoint(DEFAULT_CHECKPOINT)
    return policy, cfg


def test_shipped_checkpoint_matches_its_readme_row(default_policy):
    policy, cfg = default_policy
    args = shlex.split(readme_command())
    overrides = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("--"))
    assert f"--config-name={cfg.name}_workspace" in args
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


def test_shipped_schedules_fit_the_checkpoint(default_policy):
    policy, _ = default_policy
    apply_cache(policy, CacheConfig("optimal", optimal_steps_dir=str(DEFAULT_ASSETS), num_caches=10,
                                    num_bu_blocks=3))
    obs = {"obs": torch.zeros(1, policy.n_obs_steps, policy.obs_dim)}
    with torch.no_grad():
        action = policy.predict_action(obs)["action"]
    assert action.shape == (1, policy.n_action_steps, policy.action_dim) and torch.isfinite(action).all()
    evaluations = sum(cache_report(policy)["block_evaluations"].values())
    assert evaluations < 0.25 * 24 * policy.num_inference_steps  # really cached


def test_two_run_sweep_on_the_bundled_default(tmp_path):
    from test_benchmark_suite import load_script

    suite = load_script("benchmark_suite")
    plan = suite.plan_runs(
        checkpoint_root=str(REPO / "checkpoint"), results_dir=str(tmp_path / "results"),
        assets_dir=str(REPO / "assets"), tasks=("lift_lowdim",), seeds=(0,), ckpt_kinds=("latest",),
        modes=("original", "threshold"),
        options=suite.EvalOptions(skip_video=True, n_test=1, n_train=0, n_envs=1, max_steps=8),
    )
    assert len(plan.runs) == 2
    outcomes = suite.run_plan(plan.runs, jobs=1)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    rows = suite.aggregate(tmp_path / "results", plots=False)
    assert {r["mode"] for r in rows} == {"original", "threshold"}
    assert (tmp_path / "results" / "summary.md").is_file()
