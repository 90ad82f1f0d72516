"""The one training loop of the transformer Diffusion Policies (lowdim and hybrid image).

Per epoch: train on every batch (AdamW + warm-up/cosine lr + EMA), then with the EMA policy in eval
mode, every `rollout_every` epochs run the task's env runner, every `val_every` compute the
validation loss, every `sample_every` the action MSE on a cached training batch, and every
`checkpoint_every` write `checkpoints/latest.ckpt` plus the top-k `epoch=...-test_mean_score=...ckpt`.
Metrics go to `logs.json.txt` (JSON lines) and wandb (offline unless configured otherwise).
Training resumes from `latest.ckpt` when `training.resume` is set and the file exists; otherwise
`training.init_from=<checkpoint>` starts it from another run's weights (fine-tuning).
"""

from __future__ import annotations

import copy
import logging
import os
import random

import hydra
import numpy as np
import torch
import tqdm
import wandb
from diffusers.optimization import get_scheduler
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from diffusion_policy.common.checkpoint_util import TopKCheckpointManager
from diffusion_policy.common.json_logger import JsonLogger, numeric_items
from diffusion_policy.common.pytorch_util import dict_apply, optimizer_to
from diffusion_policy.workspace.base_workspace import BaseWorkspace

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda:0 if available else cpu; a CUDA device without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training.device={name} but CUDA is not available here; pass training.device=cpu")
    return device


MIXED_PRECISION = ("no", "bf16")


def check_mixed_precision(value: str) -> bool:
    """True for bf16 autocast, False for float32; anything else is a config error."""
    if value not in MIXED_PRECISION:
        raise ValueError(f"training.mixed_precision={value!r} is not one of {', '.join(MIXED_PRECISION)}; "
                         "use training.mixed_precision=bf16 or no")
    return value == "bf16"


def every(epoch: int, period: int | None) -> bool:
    """True on epochs 0, period, 2*period, ...; never when period is null/0."""
    return bool(period) and epoch % period == 0


class TrainDiffusionTransformerWorkspace(BaseWorkspace):
    """Builds the policy, its EMA copy and the optimizer from cfg; `run()` trains.

    Subclasses say how a dataset batch becomes the policy's obs_dict (`policy_obs`).
    """

    checkpoint_attrs = ("model", "ema_model", "optimizer")
    checkpoint_values = ("global_step", "epoch")

    def __init__(self, cfg: DictConfig, output_dir: str | None = None):
        super().__init__(cfg, output_dir)
        seed_everything(cfg.training.seed)
        self.model = hydra.utils.instantiate(cfg.policy)
        self.ema_model = copy.deepcopy(self.model) if cfg.training.use_ema else None
        self.optimizer = self.model.get_optimizer(**cfg.optimizer)
        self.global_step = 0
        self.epoch = 0

    def policy_obs(self, batch: dict) -> dict:
        """Dataset batch -> the obs_dict predict_action takes."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ setup
    def _training_cfg(self) -> DictConfig:
        cfg = copy.deepcopy(self.cfg)
        if cfg.training.debug:  # a few steps of everything
            cfg.training.update(num_epochs=2, max_train_steps=3, max_val_steps=3, rollout_every=1,
                                checkpoint_every=1, val_every=1, sample_every=1)
        return cfg

    def _dataloaders(self, cfg: DictConfig, device: torch.device):
        dataset = hydra.utils.instantiate(cfg.task.dataset)
        val_dataset = dataset.get_validation_dataset()

        def loader(data, loader_cfg):
            kwargs = dict(loader_cfg)
            kwargs["pin_memory"] = bool(kwargs.get("pin_memory", False)) and device.type == "cuda"
            return DataLoader(data, **kwargs)

        return loader(dataset, cfg.dataloader), loader(val_dataset, cfg.val_dataloader), dataset.get_normalizer()

    def _init_wandb(self, cfg: DictConfig):
        logging_cfg = OmegaConf.to_container(cfg.logging, resolve=True)
        # The environment wins over the config; offline is the default: never reach the network unasked.
        logging_cfg["mode"] = os.environ.get("WANDB_MODE") or logging_cfg.get("mode") or "offline"
        run = wandb.init(dir=self.output_dir, config=OmegaConf.to_container(cfg, resolve=True), **logging_cfg)
        run.config.update({"output_dir": self.output_dir})
        return run

    # ------------------------------------------------------------------------------------ run
    def run(self) -> None:
        cfg = self._training_cfg()
        training = cfg.training
        bf16 = check_mixed_precision(training.mixed_precision)
        os.makedirs(self.output_dir, exist_ok=True)
        if training.resume and self.get_checkpoint_path().is_file():
            logger.info("Resuming from checkpoint %s", self.get_checkpoint_path())
            self.load_checkpoint()
        elif training.init_from:
            logger.info("Initialising the weights from %s", training.init_from)
            self.load_weights(training.init_from)

        device = resolve_device(training.device)
        train_loader, val_loader, normalizer = self._dataloaders(cfg, device)
        self.model.set_normalizer(normalizer)
        if self.ema_model is not None:
            self.ema_model.set_normalizer(normalizer)

        lr_scheduler = get_scheduler(
            training.lr_scheduler,
            optimizer=self.optimizer,
            num_warmup_steps=training.lr_warmup_steps,
            num_training_steps=(len(train_loader) * training.num_epochs) // training.gradient_accumulate_every,
            last_epoch=self.global_step - 1,  # resumes the schedule where it stopped
        )
        ema = None
        if self.ema_model is not None:
            ema = hydra.utils.instantiate(cfg.ema, model=self.ema_model)
            ema.optimization_step = self.global_step  # resume the decay warm-up where it stopped
        env_runner = None
        if training.rollout_every:
            env_runner = hydra.utils.instantiate(cfg.task.env_runner, output_dir=self.output_dir)
        topk_manager = TopKCheckpointManager(save_dir=os.path.join(self.output_dir, "checkpoints"),
                                             **cfg.checkpoint.topk)

        self.model.to(device)
        if self.ema_model is not None:
            self.ema_model.to(device)
        optimizer_to(self.optimizer, device)

        wandb_run = self._init_wandb(cfg)
        sampling_batch = None  # a fixed training batch for train_action_mse_error
        try:
            log_path = os.path.join(self.output_dir, "logs.json.txt")
            with JsonLogger(log_path, resume_step=self.global_step) as json_logger:
                while self.epoch < training.num_epochs:
                    step_log, sampling_batch = self._train_epoch(
                        cfg, train_loader, lr_scheduler, ema, device, wandb_run, json_logger, sampling_batch, bf16)
                    step_log.update(self._evaluate(cfg, env_runner, val_loader, sampling_batch, device, wandb_run))
                    wandb_run.log(step_log, step=self.global_step)
                    json_logger.log(step_log)
                    finished_epoch = self.epoch
                    self.global_step += 1
                    self.epoch += 1
                    last_epoch = self.epoch == training.num_epochs
                    if every(finished_epoch, training.checkpoint_every) or (training.checkpoint_every and last_epoch):
                        # saved after the increments: a resumed run starts with the next epoch;
                        # with checkpointing on, the last epoch is always saved
                        self._save_checkpoints(cfg, step_log, topk_manager)
        finally:
            wandb_run.finish()

    def _train_epoch(self, cfg, train_loader, lr_scheduler, ema, device, wandb_run, json_logger, sampling_batch,
                     bf16: bool):
        training = cfg.training
        self.model.train()
        train_losses = []
        step_log = {}
        with tqdm.tqdm(train_loader, desc=f"Training epoch {self.epoch}", leave=False,
                       mininterval=training.tqdm_interval_sec) as batches:
            for batch_idx, batch in enumerate(batches):
                batch = dict_apply(batch, lambda x: x.to(device, non_blocking=True))
                if sampling_batch is None:
                    sampling_batch = batch

                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    raw_loss = self.model.compute_loss(batch)
                (raw_loss / training.gradient_accumulate_every).backward()
                if self.global_step % training.gradient_accumulate_every == 0:
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                    lr_scheduler.step()
                if ema is not None:
                    ema.step(self.model)

                loss = raw_loss.item()
                batches.set_postfix(loss=loss, refresh=False)
                train_losses.append(loss)
                step_log = {"train_loss": loss, "global_step": self.global_step, "epoch": self.epoch,
                            "lr": lr_scheduler.get_last_lr()[0]}
                is_last_batch = batch_idx == len(train_loader) - 1
                stop = training.max_train_steps is not None and batch_idx >= training.max_train_steps - 1
                if not (is_last_batch or stop):  # the epoch's last step is logged with the epoch metrics
                    wandb_run.log(step_log, step=self.global_step)
                    json_logger.log(step_log)
                    self.global_step += 1
                if stop:
                    break
        step_log["train_loss"] = float(np.mean(train_losses))
        return step_log, sampling_batch

    @torch.no_grad()
    def _evaluate(self, cfg, env_runner, val_loader, sampling_batch, device, wandb_run) -> dict:
        training = cfg.training
        policy = self.ema_model if self.ema_model is not None else self.model
        policy.eval()
        log = {}
        if env_runner is not None and every(self.epoch, training.rollout_every):
            log.update(self._rollout_log(env_runner.run(policy), wandb_run))

        if every(self.epoch, training.val_every):
            self.model.eval()  # the trained model's loss, without dropout
            val_losses = []
            for batch_idx, batch in enumerate(tqdm.tqdm(val_loader, desc=f"Validation epoch {self.epoch}",
                                                        leave=False, mininterval=training.tqdm_interval_sec)):
                batch = dict_apply(batch, lambda x: x.to(device, non_blocking=True))
                val_losses.append(self.model.compute_loss(batch).item())
                if training.max_val_steps is not None and batch_idx >= training.max_val_steps - 1:
                    break
            if val_losses:
                log["val_loss"] = float(np.mean(val_losses))

        if sampling_batch is not None and every(self.epoch, training.sample_every):
            result = policy.predict_action(self.policy_obs(sampling_batch))
            gt_action = sampling_batch["action"]  # (B, T, Da)
            if policy.pred_action_steps_only:
                start = policy.n_obs_steps - 1
                gt_action = gt_action[:, start : start + policy.n_action_steps]
                pred_action = result["action"]
            else:
                pred_action = result["action_pred"]
            log["train_action_mse_error"] = torch.nn.functional.mse_loss(pred_action, gt_action).item()

        self.model.train()
        return log

    @staticmethod
    def _rollout_log(runner_log: dict, wandb_run) -> dict:
        """Scalar rollout metrics, plus the episode videos as wandb.Video (JSON logs drop them)."""
        log = numeric_items(runner_log)
        if not wandb_run.disabled:
            for key, value in runner_log.items():
                if "sim_video" in key and isinstance(value, str) and os.path.isfile(value):
                    log[key] = wandb.Video(value, format="mp4")
        return log

    def _save_checkpoints(self, cfg, step_log: dict, topk_manager: TopKCheckpointManager) -> None:
        if cfg.checkpoint.save_last_ckpt:
            self.save_checkpoint()
        metrics = {key.replace("/", "_"): value for key, value in step_log.items()}
        topk_path = topk_manager.get_ckpt_path(metrics)
        if topk_path is not None:
            self.save_checkpoint(path=topk_path)
