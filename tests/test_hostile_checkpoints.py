"""Crafted checkpoints must not run code, choose output paths, or pass a schedule of another model.

Every crafted cfg asks hydra or OmegaConf to create a marker file; the tests assert the loader
refuses with one line naming the key path and the opt-in, and that the marker never appears.
"""

import copy
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from checkpoint_fixtures import tiny_config, write_tiny_checkpoint
from diffusion_policy.acceleration import CacheConfig, apply_cache
from diffusion_policy.activation_utils.calibrate import compute_optimal_schedules
from diffusion_policy.activation_utils.schedule_files import ForeignScheduleError
from diffusion_policy.common.checkpoint import (
    UnsafeCheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    weights_fingerprint,
)
from diffusion_policy.common.safe_config import resolve_untrusted_cfg, safe_slug

TRUST_OPT_IN = "--trust_checkpoint"


def open_node(marker: Path) -> dict:
    """A hydra node that creates `marker` when instantiated (what an attacker would run)."""
    return {"_target_": "builtins.open", "_args_": [str(marker), "w"]}


def crafted_checkpoint(tmp_path: Path, edit, name: str = "crafted.ckpt") -> Path:
    """A tiny Push-T checkpoint whose cfg `edit(cfg)` changed, saved WITHOUT resolving it (as an
    attacker would write it: torch.save of an OmegaConf DictConfig with interpolations)."""
    import dill
    import hydra

    cfg = tiny_config("pusht_lowdim")
    torch.manual_seed(0)
    policy = hydra.utils.instantiate(cfg.policy)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    edit(cfg)
    path = tmp_path / name
    payload = {"cfg": cfg, "state_dicts": {"ema_model": policy.state_dict()}, "pickles": {"epoch": dill.dumps(1)}}
    torch.save(payload, path, pickle_module=dill)
    return path


def assert_refused(path: Path, match: str, marker: Path):
    with pytest.raises(UnsafeCheckpointError, match=match) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message and TRUST_OPT_IN in message
    assert not marker.exists()
    return message


def test_interpolated_target_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    def edit(cfg):
        cfg.evil = open_node(marker)
        cfg.policy.model.extra = "${evil}"

    path = crafted_checkpoint(tmp_path, edit)
    message = assert_refused(path, r"instantiates 'builtins\.open'", marker)
    # the key path of the node that names it (resolved: both paths lead to it)
    assert "policy.model.extra._target_" in message or "evil._target_" in message


def test_nested_env_runner_target_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    def edit(cfg):
        cfg.task.env_runner.extra = {"inner": open_node(marker)}

    message = assert_refused(crafted_checkpoint(tmp_path, edit), r"builtins\.open", marker)
    assert "task.env_runner.extra.inner._target_" in message


@pytest.mark.parametrize("where", ["list", "kwarg", "args"])
def test_targets_in_lists_kwargs_and_args_are_refused(tmp_path, where):
    marker = tmp_path / "pwned"

    def edit(cfg):
        if where == "list":
            cfg.policy.model.extra_list = [1, [open_node(marker)]]
        elif where == "kwarg":
            cfg.policy.noise_scheduler.trained_betas = open_node(marker)
        else:
            cfg.policy.model._args_ = [open_node(marker)]

    assert_refused(crafted_checkpoint(tmp_path, edit), r"builtins\.open", marker)


def test_package_attribute_leading_to_foreign_code_is_refused(tmp_path):
    """`diffusion_policy.common.checkpoint.os.system` starts with the package name but is os.system."""
    marker = tmp_path / "pwned"

    def edit(cfg):
        cfg.policy.noise_scheduler._target_ = "diffusion_policy.common.checkpoint.os.system"

    assert_refused(crafted_checkpoint(tmp_path, edit), r"not a class of this package", marker)


@pytest.mark.parametrize("value", ["${oc.env:HOME}", "${now:%Y}", "${evil_resolver:x}", "a ${oc.create:{}} b"])
def test_resolvers_other_than_the_safe_list_are_refused(tmp_path, value):
    marker = tmp_path / "pwned"
    OmegaConf.register_new_resolver("evil_resolver", lambda _: marker.write_text("x"), replace=True)
    try:
        def edit(cfg):
            cfg.task.name = value

        message = assert_refused(crafted_checkpoint(tmp_path, edit), "calls the resolver", marker)
        assert "task.name" in message
    finally:
        OmegaConf.clear_resolver("evil_resolver")


def test_escaped_interpolation_cannot_come_back_to_life(tmp_path):
    marker = tmp_path / "pwned"

    def edit(cfg):
        cfg.evil = open_node(marker)
        cfg.policy.model.extra = "\\${evil}"  # resolves to the string '${evil}'

    assert_refused(crafted_checkpoint(tmp_path, edit), "holds an interpolation after resolution", marker)


def test_the_gate_applies_to_every_reader(tmp_path):
    """read_checkpoint (training resume, export) returns the checked plain cfg, or refuses."""

    def edit(cfg):
        cfg.task.env_runner._target_ = "builtins.open"

    path = crafted_checkpoint(tmp_path, edit)
    with pytest.raises(UnsafeCheckpointError, match=r"task\.env_runner\._target_"):
        read_checkpoint(path)
    # an opted-in user gets the cfg as written
    assert read_checkpoint(path, trust_checkpoint=True).cfg.task.env_runner._target_ == "builtins.open"


def test_plain_interpolations_and_safe_resolvers_still_load(tmp_path):
    def edit(cfg):
        cfg.policy.horizon = "${horizon}"
        cfg.policy.n_obs_steps = "${oc.select:n_obs_steps,2}"

    path = crafted_checkpoint(tmp_path, edit)
    policy, cfg = load_checkpoint(path)
    assert policy.horizon == cfg.horizon and cfg.policy.horizon == cfg.horizon
    assert "${" not in json.dumps(OmegaConf.to_container(cfg))  # what comes back is plain


def test_resolved_cfg_is_plain_and_equal_for_an_honest_cfg():
    cfg = tiny_config("pusht_lowdim")
    assert resolve_untrusted_cfg(copy.deepcopy(cfg)) == cfg


# ----------------------------------------------------------------------------- paths from a checkpoint
@pytest.mark.parametrize("name,expected", [
    ("/etc/passwd", "etc_passwd"), ("../../x", "x"), ("lift_lowdim", "lift_lowdim"), ("", "task"), ("..", "task"),
    ("a b/c", "a_b_c"),
])
def test_safe_slug(name, expected):
    assert safe_slug(name) == expected


def test_absolute_task_name_stays_under_results(tmp_path, monkeypatch):
    from diffusion_policy.env_runner.evaluate import EvalSettings, evaluate_checkpoint

    cfg = tiny_config("pusht_lowdim")
    outside = tmp_path / "outside"
    cfg.task.name = str(outside)
    ckpt = save_checkpoint(tmp_path / "abs.ckpt", cfg, {"ema_model": _tiny_state_dict(cfg)}, {"epoch": 0})
    monkeypatch.chdir(tmp_path / "..")
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    _, _, out = evaluate_checkpoint(str(ckpt), None, CacheConfig("original"),
                                    settings=EvalSettings(n_test=1, n_train=0, n_envs=1, max_steps=4, skip_video=True,
                                                          latency_samples=1))
    assert out.resolve().is_relative_to((workdir / "results").resolve())
    assert not outside.exists()


def _tiny_state_dict(cfg):
    import hydra

    from checkpoint_fixtures import TINY_CONFIGS, range_normalizer

    torch.manual_seed(0)
    policy = hydra.utils.instantiate(cfg.policy)
    policy.set_normalizer(range_normalizer(cfg, TINY_CONFIGS["pusht_lowdim"][2]))
    return policy.state_dict()


# ----------------------------------------------------------------------------- schedules of another model
@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two_models")
    first = write_tiny_checkpoint(tmp / "first.ckpt", "pusht_lowdim", seed=0)
    second = write_tiny_checkpoint(tmp / "second.ckpt", "pusht_lowdim", seed=1)
    assets = tmp / "assets"
    compute_optimal_schedules(str(first), str(assets), num_caches_list=(2,), metrics=("cosine",), make_plots=False)
    return first, second, assets


def optimal(assets, **kwargs) -> CacheConfig:
    return CacheConfig("optimal", optimal_steps_dir=str(assets / "optimal_steps" / "cosine"), num_caches=2, **kwargs)


def test_schedule_of_another_model_is_refused(two_models):
    first, second, assets = two_models
    policy, _ = load_checkpoint(first)
    apply_cache(policy, optimal(assets))  # its own schedule: fine
    other, _ = load_checkpoint(second)
    with pytest.raises(ForeignScheduleError) as error:
        apply_cache(other, optimal(assets))
    message = str(error.value)
    assert weights_fingerprint(other)[:12] in message and weights_fingerprint(policy)[:12] in message
    assert "--force_recompute" in message and "--allow_foreign_schedule" in message and "\n" not in message
    apply_cache(other, optimal(assets, allow_foreign_schedule=True))  # the explicit override


def test_resaved_checkpoint_keeps_its_fingerprint(two_models, tmp_path):
    first, _, assets = two_models
    payload = read_checkpoint(first)
    resaved = save_checkpoint(tmp_path / "resaved.ckpt", payload.cfg, payload.state_dicts, {"epoch": 7})
    policy, _ = load_checkpoint(resaved)
    apply_cache(policy, optimal(assets))


def test_schedule_cli_does_not_reuse_another_models_or_corrupt_schedules(two_models, tmp_path, capsys):
    import diffusion_policy.cli.schedules as cli

    first, second, assets = two_models
    base = ["-o", str(assets), "--num_caches", "2", "--no_plots"]
    schedule_file = assets / "optimal_steps" / "cosine" / "num_caches_2.json"
    before = schedule_file.stat().st_mtime_ns
    assert cli.main(["-c", str(first), *base]) == 0
    assert schedule_file.stat().st_mtime_ns == before  # the same model's schedules are reused, not rewritten
    assert cli.main(["-c", str(second), *base]) == 2
    err = capsys.readouterr().err
    assert "do not fit" in err and "--force_recompute" in err and len(err.strip().splitlines()) == 1

    corrupt = tmp_path / "corrupt"
    compute_optimal_schedules(str(first), str(corrupt), num_caches_list=(2,), metrics=("cosine",), make_plots=False)
    schedule_file = corrupt / "optimal_steps" / "cosine" / "num_caches_2.json"
    schedule_file.write_text(schedule_file.read_text()[:40])
    assert cli.main(["-c", str(first), "-o", str(corrupt), "--num_caches", "2", "--no_plots"]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert cli.main(["-c", str(first), "-o", str(corrupt), "--num_caches", "2", "--no_plots",
                     "--force_recompute"]) == 0
    assert json.loads(schedule_file.read_text())["model_fingerprint"] == weights_fingerprint(load_checkpoint(first)[0])
