"""The training loop: the loss falls, checkpoints/top-k/logs are written and resume works, EMA
schedule, top-k manager, and every shipped config's dataset/runner kwargs fit their classes."""

import inspect
import re
import os

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_policies import TINY_OVERRIDES, fitted_normalizer, single_thread  # noqa: F401 (autouse fixture)

from diffusion_policy.common.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from diffusion_policy.common.checkpoint_util import TopKCheckpointManager
from diffusion_policy.common.json_logger import read_json_log
from diffusion_policy.model.common.normalizer import LinearNormalizer
from diffusion_policy.model.diffusion.ema_model import EMAModel
from diffusion_policy.workspace.launch import CONFIG_DIR, compose_config, fill_derived_values, train


# ----------------------------------------------------------------------------- toy task
class ToyLowdimDataset(torch.utils.data.Dataset):
    """Action sequences that are a fixed linear function of the first observation.

    items: {'obs': (T, Do), 'action': (T, Da)}; the validation split holds other samples.
    """

    def __init__(self, horizon: int, obs_dim: int, action_dim: int, n_samples: int = 256, seed: int = 0,
                 pad_before: int = 0, pad_after: int = 0):
        gen = torch.Generator().manual_seed(seed)
        weight = torch.randn(obs_dim, action_dim, generator=torch.Generator().manual_seed(1)) / obs_dim**0.5
        first_obs = torch.rand(n_samples, obs_dim, generator=gen) * 2 - 1
        drift = torch.linspace(0, 0.5, horizon)[None, :, None]
        self.obs = first_obs[:, None].expand(-1, horizon, -1) + drift
        self.action = torch.tanh(first_obs @ weight)[:, None].expand(-1, horizon, -1) + drift[..., :1]
        self.init_kwargs = {"horizon": horizon, "obs_dim": obs_dim, "action_dim": action_dim, "n_samples": n_samples}

    def get_validation_dataset(self):
        return ToyLowdimDataset(seed=99, **{**self.init_kwargs, "n_samples": 32})

    def get_normalizer(self, mode: str = "limits", **kwargs) -> LinearNormalizer:
        normalizer = LinearNormalizer()
        normalizer.fit({"obs": self.obs, "action": self.action}, mode=mode, **kwargs)
        return normalizer

    def __len__(self) -> int:
        return len(self.obs)

    def __getitem__(self, idx: int) -> dict:
        return {"obs": self.obs[idx], "action": self.action[idx]}


class ToyImageDataset(torch.utils.data.Dataset):
    """items: {'obs': {'agentview_image': (T, 3, 32, 32), <low-dim keys>: (T, D)}, 'action': (T, Da)}."""

    def __init__(self, shape_meta, horizon: int, n_samples: int = 12, pad_before: int = 0, pad_after: int = 0):
        gen = torch.Generator().manual_seed(0)
        self.shape_meta = shape_meta
        self.obs = {}
        for key, meta in shape_meta.obs.items():
            shape = (n_samples, horizon, *meta.shape)
            self.obs[key] = torch.rand(shape, generator=gen) if meta.get("type") == "rgb" else torch.randn(shape, generator=gen)
        self.action = torch.rand(n_samples, horizon, shape_meta.action.shape[0], generator=gen) * 2 - 1

    def get_validation_dataset(self):
        return self

    def get_normalizer(self, **kwargs) -> LinearNormalizer:
        return fitted_normalizer(OmegaConf.create({"shape_meta": self.shape_meta}))

    def __len__(self) -> int:
        return len(self.action)

    def __getitem__(self, idx: int) -> dict:
        return {"obs": {k: v[idx] for k, v in self.obs.items()}, "action": self.action[idx]}


class ConstantScoreRunner:
    """Stands in for an env runner: checks the policy acts, reports a score that rises each call."""

    def __init__(self, output_dir: str, obs_dim: int, n_obs_steps: int):
        self.obs_dim, self.n_obs_steps, self.calls = obs_dim, n_obs_steps, 0

    def run(self, policy) -> dict:
        assert not policy.training
        action = policy.predict_action({"obs": torch.zeros(2, self.n_obs_steps, self.obs_dim)})["action"]
        assert torch.isfinite(action).all()
        self.calls += 1
        return {"test/mean_score": 0.1 * self.calls, "train/mean_score": 0.5, "timing": {"predict_action_s": [0.1]},
                "test/sim_video_100000": "/nonexistent.mp4"}


def toy_cfg(kind: str = "lowdim", overrides: tuple = ()):
    """A tiny shipped workspace config whose dataset (and runner) are the toys above."""
    config_name, base = TINY_OVERRIDES[kind]
    common = ["training.device=cpu", "logging.mode=disabled", "training.lr_warmup_steps=10",
              "dataloader.num_workers=0", "val_dataloader.num_workers=0", "training.rollout_every=null",
              "training.checkpoint_every=null"]
    cfg = compose_config(config_name, base + common + list(overrides))
    OmegaConf.set_struct(cfg, False)
    if kind == "lowdim":
        cfg.task.dataset = {"_target_": f"{__name__}.ToyLowdimDataset", "horizon": "${horizon}",
                            "obs_dim": "${obs_dim}", "action_dim": "${action_dim}"}
        cfg.task.env_runner = {"_target_": f"{__name__}.ConstantScoreRunner", "obs_dim": "${obs_dim}",
                               "n_obs_steps": "${n_obs_steps}"}
    else:
        cfg.task.dataset = {"_target_": f"{__name__}.ToyImageDataset", "shape_meta": "${shape_meta}",
                            "horizon": "${horizon}"}
    return cfg


# ----------------------------------------------------------------------------- the loop
def test_loss_falls_on_a_toy_task(tmp_path):
    cfg = toy_cfg("lowdim", ["training.num_epochs=25", "dataloader.batch_size=32", "optimizer.learning_rate=1e-3",
                             "training.sample_every=24"])
    train(cfg, output_dir=str(tmp_path))
    logs = read_json_log(tmp_path / "logs.json.txt")
    epoch_logs = [log for log in logs if "val_loss" in log]
    assert len(epoch_logs) == 25 and logs[-1]["global_step"] == 25 * 8 - 1  # 8 batches per epoch
    def late(key):  # mean over the last 3 epochs (val_loss is one noisy batch)
        return np.mean([log[key] for log in epoch_logs[-3:]])

    assert late("train_loss") < 0.5 * epoch_logs[0]["train_loss"]
    assert late("val_loss") < 0.6 * epoch_logs[0]["val_loss"]
    # the EMA policy's sampled actions approach the data (sampled at epochs 0 and 24)
    assert epoch_logs[-1]["train_action_mse_error"] < 0.5 * epoch_logs[0]["train_action_mse_error"]
    assert not (tmp_path / "checkpoints").exists()  # checkpoint_every: null


def test_short_run_writes_checkpoints_that_load_and_resume(tmp_path):
    overrides = ["training.num_epochs=2", "dataloader.batch_size=32", "training.max_train_steps=3",
                 "training.max_val_steps=2", "training.rollout_every=1", "training.checkpoint_every=1",
                 "checkpoint.topk.k=1"]
    workspace = train(toy_cfg("lowdim", overrides), output_dir=str(tmp_path))
    checkpoints = sorted(os.listdir(tmp_path / "checkpoints"))
    # k=1: the better epoch 1 replaced epoch 0
    assert checkpoints == ["epoch=0001-test_mean_score=0.200.ckpt", "latest.ckpt"]
    # the run's cfg names this test's runner class: opening it needs the opt-in, as any foreign class does
    payload = read_checkpoint(tmp_path / "checkpoints" / "latest.ckpt", trust_checkpoint=True)
    assert set(payload.state_dicts) == {"model", "ema_model", "optimizer"}
    # 3 steps per epoch; the counters say where a resumed run continues
    assert payload.pickles == {"global_step": 6, "epoch": 2, "_output_dir": str(tmp_path)}

    policy, cfg = load_checkpoint(tmp_path / "checkpoints" / checkpoints[0], trust_checkpoint=True)
    obs = {"obs": torch.rand(2, cfg.n_obs_steps, cfg.obs_dim)}
    with torch.no_grad():
        loaded = policy.predict_action(obs, generator=torch.Generator().manual_seed(0))["action"]
        trained = workspace.ema_model.predict_action(obs, generator=torch.Generator().manual_seed(0))["action"]
    torch.testing.assert_close(loaded, trained)
    torch.testing.assert_close(policy.normalizer["obs"].params_dict["scale"],
                               workspace.model.normalizer["obs"].params_dict["scale"])

    # resume: one more epoch continues the step count and the log; what the interrupted run logged
    # after its last checkpoint (here a fake step 7 and a half-written line) is dropped
    with open(tmp_path / "logs.json.txt", "a") as f:
        f.write('{"train_loss": 1.0, "global_step": 7, "epoch": 2}\n{"train_lo')
    resumed = train(toy_cfg("lowdim", overrides[1:] + ["training.num_epochs=3"]), output_dir=str(tmp_path))
    assert (resumed.epoch, resumed.global_step) == (3, 9)
    logs = read_json_log(tmp_path / "logs.json.txt")
    assert [log["global_step"] for log in logs] == list(range(9))
    assert logs[-1]["test/mean_score"] == pytest.approx(0.1)  # a fresh runner after the resume
    assert len(os.listdir(tmp_path / "checkpoints")) == 2  # the top-1 file of the first run was kept


def test_hybrid_workspace_trains_on_image_batches(tmp_path):
    overrides = ["training.num_epochs=1", "training.max_train_steps=3", "dataloader.batch_size=4",
                 "val_dataloader.batch_size=4", "training.max_val_steps=1"]
    workspace = train(toy_cfg("hybrid", overrides), output_dir=str(tmp_path))
    log = read_json_log(tmp_path / "logs.json.txt")[-1]
    assert {"train_loss", "val_loss", "train_action_mse_error", "lr"} <= set(log)
    assert workspace.global_step == 3
    # the first two EMA updates copy the weights (decay 0), the third averages
    ema_weight = workspace.ema_model.obs_encoder.obs_nets["agentview_image"].nets[3].weight
    assert not torch.equal(ema_weight, workspace.model.obs_encoder.obs_nets["agentview_image"].nets[3].weight)


# ----------------------------------------------------------------------------- pieces
def test_ema_decay_schedule_and_copied_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    model.append(frozen)
    averaged = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2), torch.nn.Linear(2, 2))
    ema = EMAModel(averaged, inv_gamma=1.0, power=0.75, max_value=0.9999)
    assert [ema.get_decay(s) for s in (0, 1)] == [0.0, 0.0]
    assert ema.get_decay(2) == pytest.approx(1 - 2**-0.75)
    assert ema.get_decay(10_001) == pytest.approx(1 - 10_001**-0.75)
    assert ema.get_decay(10**9) == 0.9999

    ema.step(model)  # decay 0: a copy
    torch.testing.assert_close(averaged[0].weight, model[0].weight)
    for _ in range(2):
        ema.step(model)
    with torch.no_grad():
        for module in model:
            for p in module.parameters():
                p.add_(1.0)
    before = averaged[0].weight.clone()
    ema.step(model)  # optimization_step 3 -> decay(3) = 1 - 3**-0.75
    decay = 1 - 3**-0.75
    torch.testing.assert_close(averaged[0].weight, decay * before + (1 - decay) * model[0].weight)
    torch.testing.assert_close(averaged[1].weight, model[1].weight)  # BatchNorm: copied
    torch.testing.assert_close(averaged[2].weight, model[2].weight)  # no grad: copied
    assert not any(p.requires_grad for p in averaged.parameters())


def test_topk_manager_keeps_the_best(tmp_path):
    fmt = "epoch={epoch:04d}-test_mean_score={test_mean_score:.3f}.ckpt"
    manager = TopKCheckpointManager(str(tmp_path), "test_mean_score", mode="max", k=2, format_str=fmt)
    saved = []
    for epoch, score in enumerate([0.5, 0.7, 0.6, 0.4, 0.9]):
        path = manager.get_ckpt_path({"epoch": epoch, "test_mean_score": score})
        if path is not None:
            open(path, "w").close()
            saved.append(epoch)
    assert saved == [0, 1, 2, 4]
    assert sorted(os.listdir(tmp_path)) == ["epoch=0001-test_mean_score=0.700.ckpt",
                                            "epoch=0004-test_mean_score=0.900.ckpt"]
    assert manager.get_ckpt_path({"epoch": 5, "train_loss": 0.1}) is None  # no rollout this epoch
    # a new manager over the same directory (a resumed run) ranks the files already there
    resumed = TopKCheckpointManager(str(tmp_path), "test_mean_score", mode="max", k=2, format_str=fmt)
    assert resumed.get_ckpt_path({"epoch": 6, "test_mean_score": 0.65}) is None
    assert resumed.get_ckpt_path({"epoch": 7, "test_mean_score": 0.8}).endswith("epoch=0007-test_mean_score=0.800.ckpt")
    assert not (tmp_path / "epoch=0001-test_mean_score=0.700.ckpt").exists()


# ----------------------------------------------------------------------------- shipped configs
WORKSPACES = {
    "train_diffusion_transformer_lowdim_workspace": ["blockpush_lowdim_seed", "kitchen_lowdim", "pusht_lowdim",
                                                     "lift_lowdim", "can_lowdim", "square_lowdim",
                                                     "transport_lowdim", "tool_hang_lowdim"],
    "train_diffusion_transformer_lowdim_pusht_workspace": ["pusht_lowdim"],
    "train_diffusion_transformer_lowdim_kitchen_workspace": ["kitchen_lowdim"],
    "train_diffusion_transformer_hybrid_workspace": ["pusht_image", "lift_image", "can_image", "square_image",
                                                     "transport_image", "tool_hang_image"],
}


def test_every_task_config_is_listed():
    tasks = {path.stem for path in (CONFIG_DIR / "task").glob("*.yaml")}
    assert tasks == {task for listed in WORKSPACES.values() for task in listed}


def accepted_kwargs(target: str) -> set[str]:
    return set(inspect.signature(hydra.utils.get_class(target).__init__).parameters) - {"self"}


@pytest.mark.parametrize("config_name,task", [(w, t) for w, tasks in WORKSPACES.items() for t in tasks])
def test_shipped_configs_resolve_and_fit_their_classes(config_name, task):
    cfg = compose_config(config_name, [f"task={task}"])
    fill_derived_values(cfg)
    OmegaConf.resolve(cfg)
    assert not OmegaConf.missing_keys(cfg)
    dataset, runner = cfg.task.dataset, cfg.task.env_runner
    assert (dataset.pad_before, dataset.pad_after) == (cfg.n_obs_steps - 1, cfg.n_action_steps - 1)
    for node in (dataset, runner, cfg.policy):
        unknown = set(node) - {"_target_"} - accepted_kwargs(node._target_)
        assert not unknown, f"{node._target_} does not take {sorted(unknown)}"
    assert "output_dir" in accepted_kwargs(runner._target_)
    assert runner.n_obs_steps == cfg.n_obs_steps and runner.n_action_steps == cfg.n_action_steps
    assert cfg.task_name == task
    assert np.isclose(cfg.optimizer.learning_rate, 1e-4) and cfg.ema.power == 0.75


def test_last_epoch_is_checkpointed_between_periods(tmp_path):
    overrides = ["training.num_epochs=3", "dataloader.batch_size=32", "training.max_train_steps=2",
                 "training.max_val_steps=1", "training.checkpoint_every=5"]
    train(toy_cfg("lowdim", overrides), output_dir=str(tmp_path))
    # epoch 0 by the period, then epoch 2 because it is the last one
    assert read_checkpoint(tmp_path / "checkpoints" / "latest.ckpt", cfg_is_used=False).pickles["epoch"] == 3


def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path):
    overrides = ["training.num_epochs=1", "dataloader.batch_size=32", "training.max_train_steps=3",
                 "training.max_val_steps=2", "training.checkpoint_every=1"]
    source = train(toy_cfg("lowdim", overrides), output_dir=str(tmp_path / "source"))
    source_ckpt = tmp_path / "source" / "checkpoints" / "latest.ckpt"
    # zero steps of the fine-tuning run: its weights are the source's, its counters its own
    tuned = train(toy_cfg("lowdim", overrides[1:] + ["training.num_epochs=0", f"training.init_from={source_ckpt}"]),
                  output_dir=str(tmp_path / "tuned"))
    assert (tuned.epoch, tuned.global_step) == (0, 0)
    for name in ("model", "ema_model"):
        theirs, ours = getattr(source, name).state_dict(), getattr(tuned, name).state_dict()
        assert all(torch.equal(theirs[key], ours[key]) for key in theirs)
    assert not torch.equal(source.model.state_dict()["model.head.weight"],
                           source.ema_model.state_dict()["model.head.weight"])  # two different copies came over

    # weights of another model size: one line naming the option
    wider = toy_cfg("lowdim", overrides[1:] + ["training.num_epochs=0", f"training.init_from={source_ckpt}",
                                                "policy.model.n_emb=48"])
    with pytest.raises(CheckpointError, match="training.init_from=.*do not fit"):
        train(wider, output_dir=str(tmp_path / "wider"))


def test_bf16_mixed_precision_trains_float32_weights(tmp_path):
    cfg = toy_cfg("lowdim", ["training.num_epochs=6", "dataloader.batch_size=32", "optimizer.learning_rate=1e-3",
                             "training.mixed_precision=bf16"])
    workspace = train(cfg, output_dir=str(tmp_path))
    epoch_logs = [log for log in read_json_log(tmp_path / "logs.json.txt") if "val_loss" in log]
    assert epoch_logs[-1]["train_loss"] < 0.7 * epoch_logs[0]["train_loss"]
    assert all(p.dtype == torch.float32 for p in workspace.model.parameters())
    assert all(p.dtype == torch.float32 for p in workspace.ema_model.parameters())

    with pytest.raises(ValueError, match="training.mixed_precision='fp8' is not one of no, bf16"):
        train(toy_cfg("lowdim", ["training.mixed_precision=fp8"]), output_dir=str(tmp_path / "bad"))
    assert toy_cfg("lowdim", ["training.mixed_precision=no"]).training.mixed_precision == "no"


def test_training_step_benchmark_runs_both_precisions(tmp_path):
    import subprocess
    import sys

    from checkpoint_fixtures import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(tmp_path / "tiny.ckpt", "pusht_lowdim")
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "benchmark_training_step.py")
    result = subprocess.run([sys.executable, script, "-c", str(ckpt), "--batch_size", "4", "--steps", "2",
                             "--rounds", "1", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("float32") for line in lines) and any(line.startswith("bf16 ") for line in lines)
    assert re.search(r"bf16 speedup \d+\.\d\dx", result.stdout)
    missing = subprocess.run([sys.executable, script, "-c", str(tmp_path / "absent.ckpt")], capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode != 0 and missing.stderr.strip().startswith("error:")
