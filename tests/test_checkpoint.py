"""Checkpoints in the original payload format: round trips, EMA selection, the safe loader, errors."""

import collections
import copy
import os
import types
from pathlib import Path

import dill
import pytest
import torch
from omegaconf import OmegaConf
from test_policies import example_obs, make_policy, sample, single_thread, tiny_cfg  # noqa: F401 (autouse fixture)

from diffusion_policy.common.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    export_inference_checkpoint,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)


def trained_pair(cfg):
    """(model, ema_model) with different weights, as after training."""
    model = make_policy(cfg, seed=0)
    ema_model = copy.deepcopy(model)
    with torch.no_grad():
        for param in ema_model.model.parameters():
            param.mul_(0.9).add_(0.01)
    return model, ema_model


def write_original_payload(path: Path, cfg, state_dicts: dict, pickles: dict | None = None) -> Path:
    """Exactly what the original BaseWorkspace.save_checkpoint writes (no code of ours involved)."""
    if pickles is None:
        pickles = {"global_step": 1234, "epoch": 50, "_output_dir": "/tmp/run"}
    payload = {"cfg": cfg, "state_dicts": state_dicts, "pickles": {k: dill.dumps(v) for k, v in pickles.items()}}
    with open(path, "wb") as f:
        torch.save(payload, f, pickle_module=dill)
    return path


def original_checkpoint(tmp_path: Path, kind: str, **cfg_changes):
    cfg = tiny_cfg(kind)
    for key, value in cfg_changes.items():
        OmegaConf.update(cfg, key, value)
    model, ema_model = trained_pair(cfg)
    optimizer = model.get_optimizer(**cfg.optimizer)
    state_dicts = {"model": model.state_dict(), "ema_model": ema_model.state_dict(), "optimizer": optimizer.state_dict()}
    path = write_original_payload(tmp_path / f"{kind}.ckpt", cfg, state_dicts)
    return path, cfg, model, ema_model


@pytest.fixture(scope="module")
def lowdim_checkpoint(tmp_path_factory):
    return original_checkpoint(tmp_path_factory.mktemp("lowdim"), "lowdim")


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", ["lowdim", "hybrid"])
def test_original_payload_round_trip_gives_identical_actions(tmp_path, kind):
    path, cfg, model, ema_model = original_checkpoint(tmp_path, kind)
    policy, loaded_cfg = load_checkpoint(path)
    assert loaded_cfg == cfg
    assert not policy.training and policy.device == torch.device("cpu")
    obs = example_obs(cfg)
    expected = sample(ema_model, obs)  # use_ema: True in every shipped config
    actual = sample(policy, obs)
    for key in ("action", "action_pred"):
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)
    assert not torch.allclose(sample(model, obs)["action"], actual["action"])


def test_use_ema_false_loads_the_trained_weights(tmp_path):
    path, cfg, model, _ = original_checkpoint(tmp_path, "lowdim", **{"training.use_ema": False})
    policy, _ = load_checkpoint(path)
    obs = example_obs(cfg)
    torch.testing.assert_close(sample(policy, obs)["action"], sample(model, obs)["action"], rtol=0, atol=0)


def test_scheduler_and_step_overrides(lowdim_checkpoint):
    path, cfg, _, _ = lowdim_checkpoint
    policy, _ = load_checkpoint(path, scheduler="ddim", num_inference_steps=10)
    assert type(policy.noise_scheduler).__name__ == "DDIMScheduler"
    assert policy.num_inference_steps == 10
    assert policy.noise_scheduler.config.set_alpha_to_one and policy.noise_scheduler.config.steps_offset == 0
    result = sample(policy, example_obs(cfg))
    assert torch.isfinite(result["action_pred"]).all()


def test_saved_checkpoint_is_the_original_format(tmp_path, lowdim_checkpoint):
    src, cfg, _, _ = lowdim_checkpoint
    payload = read_checkpoint(src)
    assert payload.pickles == {"global_step": 1234, "epoch": 50, "_output_dir": "/tmp/run"}
    dst = save_checkpoint(tmp_path / "sub" / "copy.ckpt", payload.cfg, payload.state_dicts, payload.pickles)
    assert sorted(os.listdir(dst.parent)) == ["copy.ckpt"]  # the temp file was renamed, not left behind

    # what the original code does: torch.load with dill, dill.loads of each pickle
    raw = torch.load(dst, pickle_module=dill, weights_only=False)
    assert set(raw) == {"cfg", "state_dicts", "pickles"}
    assert isinstance(raw["cfg"], type(cfg)) and raw["cfg"] == cfg
    assert set(raw["state_dicts"]) == {"model", "ema_model", "optimizer"}
    assert {k: dill.loads(v) for k, v in raw["pickles"].items()} == payload.pickles
    for name, tensor in raw["state_dicts"]["ema_model"].items():
        torch.testing.assert_close(tensor, payload.state_dicts["ema_model"][name], rtol=0, atol=0)
        assert tensor.device.type == "cpu"


def test_inference_only_checkpoint_keeps_the_evaluated_weights(tmp_path, lowdim_checkpoint):
    src, cfg, _, ema_model = lowdim_checkpoint
    dst = export_inference_checkpoint(src, tmp_path / "small.ckpt")
    assert set(read_checkpoint(dst).state_dicts) == {"ema_model"}
    assert dst.stat().st_size < src.stat().st_size
    policy, _ = load_checkpoint(dst)
    obs = example_obs(cfg)
    torch.testing.assert_close(sample(policy, obs)["action"], sample(ema_model, obs)["action"], rtol=0, atol=0)


# ----------------------------------------------------------------------------- the safe loader
def test_foreign_class_in_pickles_is_refused_unless_trusted(tmp_path, lowdim_checkpoint):
    _, cfg, model, ema_model = lowdim_checkpoint
    path = write_original_payload(tmp_path / "counter.ckpt", cfg, {"model": model.state_dict(), "ema_model": ema_model.state_dict()},
                                  {"global_step": 1, "extra": collections.Counter(a=1)})
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert f"checkpoint {path} references 'collections.Counter'" in message
    assert "trust_checkpoint=True (--trust_checkpoint)" in message and "\n" not in message
    policy, _ = load_checkpoint(path, trust_checkpoint=True)
    assert policy.n_obs_steps == cfg.n_obs_steps
    assert read_checkpoint(path, trust_checkpoint=True).pickles["extra"] == collections.Counter(a=1)


def test_reference_to_os_system_is_refused(tmp_path, lowdim_checkpoint):
    _, cfg, model, ema_model = lowdim_checkpoint
    payload = {"cfg": cfg, "state_dicts": {"model": model.state_dict(), "ema_model": ema_model.state_dict()},
               "pickles": {}, "hook": os.system}
    path = tmp_path / "system.ckpt"
    torch.save(payload, path, pickle_module=dill)
    with pytest.raises(UnsafeCheckpointError, match=r"references '(posix|nt)\.system'"):
        read_checkpoint(path)
    assert read_checkpoint(path, trust_checkpoint=True).cfg == cfg  # a reference only: nothing is called


def test_dill_type_loader_only_returns_plain_types(tmp_path, lowdim_checkpoint):
    _, cfg, _, ema_model = lowdim_checkpoint
    path = write_original_payload(tmp_path / "code.ckpt", cfg, {"ema_model": ema_model.state_dict()},
                                  {"global_step": 1, "code_type": types.CodeType})
    with pytest.raises(UnsafeCheckpointError, match=r"_load_type\('CodeType'\)"):
        read_checkpoint(path)


def test_cfg_targets_outside_the_policy_classes_are_refused(tmp_path, lowdim_checkpoint):
    _, cfg, _, ema_model = lowdim_checkpoint
    cfg = copy.deepcopy(cfg)
    cfg.policy.noise_scheduler._target_ = "os.system"
    path = write_original_payload(tmp_path / "target.ckpt", cfg, {"ema_model": ema_model.state_dict()})
    with pytest.raises(UnsafeCheckpointError, match=r"policy\.noise_scheduler\._target_ instantiates 'os\.system'"):
        load_checkpoint(path)


# ----------------------------------------------------------------------------- errors
def assert_one_line_error(path, match: str, error_type=CheckpointError, **kwargs):
    with pytest.raises(error_type, match=match) as error:
        load_checkpoint(path, **kwargs)
    assert "\n" not in str(error.value)


def test_missing_empty_and_directory_paths(tmp_path):
    assert_one_line_error(tmp_path / "nope.ckpt", "does not exist")
    assert_one_line_error(tmp_path, "is a directory")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert_one_line_error(tmp_path / "empty.ckpt", "is empty")


def test_truncated_and_foreign_files(tmp_path, lowdim_checkpoint):
    src = lowdim_checkpoint[0]
    data = src.read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    assert_one_line_error(tmp_path / "truncated.ckpt", "is truncated or corrupt")
    (tmp_path / "random.ckpt").write_bytes(os.urandom(4096))
    assert_one_line_error(tmp_path / "random.ckpt", "is not a PyTorch checkpoint")


def test_plain_state_dict_is_not_a_checkpoint(tmp_path, lowdim_checkpoint):
    ema_model = lowdim_checkpoint[3]
    torch.save(ema_model.state_dict(), tmp_path / "weights.pt")
    assert_one_line_error(tmp_path / "weights.pt", r"holds a plain state_dict \(\d+ tensors\), not a Diffusion Policy")


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path, lowdim_checkpoint):
    _, cfg, _, ema_model = lowdim_checkpoint
    wider = copy.deepcopy(cfg)
    wider.policy.model.n_emb = 48
    path = write_original_payload(tmp_path / "mismatch.ckpt", wider, {"ema_model": ema_model.state_dict()})
    assert_one_line_error(path, r"state_dicts\['ema_model'\]\['model\.pos_emb'\] has shape \(1, 8, 32\) "
                                r"but the policy built from its cfg has \(1, 8, 48\)")


def test_missing_keys_and_cfg_entries(tmp_path, lowdim_checkpoint):
    _, cfg, model, ema_model = lowdim_checkpoint
    state = {k: v for k, v in ema_model.state_dict().items() if k != "model.head.bias"}
    path = write_original_payload(tmp_path / "partial.ckpt", cfg, {"ema_model": state})
    assert_one_line_error(path, r"missing \['model\.head\.bias'\]")

    path = write_original_payload(tmp_path / "no_ema.ckpt", cfg, {"model": model.state_dict()})
    assert_one_line_error(path, r"has no state_dicts\['ema_model'\]")

    no_training = copy.deepcopy(cfg)
    OmegaConf.set_struct(no_training, False)
    del no_training["training"]
    path = write_original_payload(tmp_path / "no_training.ckpt", no_training, {"ema_model": ema_model.state_dict()})
    assert_one_line_error(path, "cfg has no 'training.use_ema'")

    no_policy = copy.deepcopy(cfg)
    OmegaConf.set_struct(no_policy, False)
    del no_policy["policy"]
    path = write_original_payload(tmp_path / "no_policy.ckpt", no_policy, {"ema_model": ema_model.state_dict()})
    assert_one_line_error(path, "cfg has no 'policy'")
