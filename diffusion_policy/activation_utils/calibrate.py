"""Checkpoint -> calibration activations -> BAC schedule files (the library behind the CLI)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from diffusion_policy.activation_utils.collect import record_block_outputs
from diffusion_policy.activation_utils.schedule_builder import build_schedule_assets, existing_schedules_fit
from diffusion_policy.activation_utils.schedule_files import original_dir, sha256_of_file, write_atomic
from diffusion_policy.common.checkpoint import load_checkpoint, weights_fingerprint

logger = logging.getLogger(__name__)

CALIBRATION_SOURCES = ("env", "dataset")


def calibration_observations(cfg, policy, source: str = "env", count: int = 1) -> list[dict[str, torch.Tensor]]:
    """`count` observations (batch 1 each) to calibrate on.

    'env': the first observation of each of the first `count` test episodes of the task's env runner
    (each its own seed and initial state); 'dataset': `count` training samples spread evenly over the
    task's dataset (the first one first; needs the dataset file).
    """
    if count < 1:
        raise ValueError(f"the number of calibration observations must be >= 1, got {count}")
    if source == "env":
        from diffusion_policy.env_runner.factory import make_env_runner

        with tempfile.TemporaryDirectory() as tmp:
            runner = make_env_runner(cfg, tmp)
            tests = [spec for spec in runner.episodes if spec.prefix == "test/"] or list(runner.episodes)
            if count > len(tests):
                raise ValueError(f"--calibration_episodes {count} exceeds the task's {len(tests)} test episodes "
                                 f"(pass --calibration_episodes <= {len(tests)}, or --calibration dataset)")
            observations = [runner.first_observation(spec) for spec in tests[:count]]
    elif source == "dataset":
        import hydra

        dataset = hydra.utils.instantiate(cfg.task.dataset)
        if count > len(dataset):
            raise ValueError(f"--calibration_samples {count} exceeds the dataset's {len(dataset)} samples")
        To = policy.n_obs_steps
        observations = []
        for index in np.linspace(0, len(dataset) - 1, count).round().astype(int):
            sample_obs = dataset[int(index)]["obs"]
            if isinstance(sample_obs, dict):
                observations.append({k: np.asarray(v)[None, :To] for k, v in sample_obs.items()})
            else:
                observations.append({"obs": np.asarray(sample_obs)[None, :To]})
    else:
        raise ValueError(f"unknown calibration source {source!r}; use one of {CALIBRATION_SOURCES}")
    return [{k: torch.as_tensor(v).to(device=policy.device, dtype=policy.dtype) for k, v in obs.items()}
            for obs in observations]


def calibration_observation(cfg, policy, source: str = "env") -> dict[str, torch.Tensor]:
    """One observation (batch 1) to calibrate on: the first of `calibration_observations`."""
    return calibration_observations(cfg, policy, source, 1)[0]


def record_calibration_activations(policy, observations: list[dict], seed: int) -> dict[str, np.ndarray]:
    """{block: (N, K, ...)}: every block's outputs on K observations, each recorded in its own run with
    the same sampling seed (so K copies of one observation record K equal entries)."""
    recordings = [record_block_outputs(policy, obs, seed=seed) for obs in observations]
    return {name: np.concatenate([r[name] for r in recordings], axis=1) for name in recordings[0]}


def activations_path(output_dir) -> Path:
    return original_dir(output_dir) / "activations.npz"


def load_or_record_activations(policy, cfg, output_dir, source: str, seed: int, force_recompute: bool,
                               model_fingerprint: str, count: int = 1):
    """Saved activations recorded with the same settings, or a fresh recording (saved for next time)."""
    path = activations_path(output_dir)
    settings = {"num_inference_steps": policy.num_inference_steps, "source": source, "seed": seed,
                "model_fingerprint": model_fingerprint, "count": count}
    if path.is_file() and not force_recompute:
        with np.load(path, allow_pickle=False) as saved:
            if all(f"__{k}" in saved and str(saved[f"__{k}"]) == str(v) for k, v in settings.items()):
                logger.info("reusing activations from %s (pass --force_recompute to record again)", path)
                return {k: saved[k] for k in saved.files if not k.startswith("__")}
    activations = record_calibration_activations(policy, calibration_observations(cfg, policy, source, count), seed)
    arrays = {**activations, **{f"__{k}": np.asarray(str(v)) for k, v in settings.items()}}
    write_atomic(path, lambda f: np.savez_compressed(f, **arrays))
    return activations


def compute_optimal_schedules(
    checkpoint: str,
    output_dir: str,
    device: str = "cpu",
    num_caches_list: tuple[int, ...] = (5, 8, 10, 20),
    metrics: tuple[str, ...] = ("cosine",),
    force_recompute: bool = False,
    source: str = "env",
    seed: int = 0,
    num_inference_steps: int | None = None,
    make_plots: bool = True,
    trust_checkpoint: bool = False,
    strategies: tuple[str, ...] = ("reuse",),
    calibration_count: int = 1,
) -> list[Path]:
    """Write similarity matrices, ACS (and forecast) schedules and the BU ranking of `checkpoint` to
    `output_dir`, calibrated on `calibration_count` observations from `source`."""
    policy, cfg = load_checkpoint(checkpoint, device=device, trust_checkpoint=trust_checkpoint,
                                  num_inference_steps=num_inference_steps)
    num_steps = int(policy.num_inference_steps)
    if max(num_caches_list) > num_steps:
        raise ValueError(f"--num_caches must be in [1, {num_steps}] (this policy's denoising steps), got "
                         f"{max(num_caches_list)}")
    fingerprint = weights_fingerprint(policy)
    calibration = {"source": source, "observations": int(calibration_count), "seed": int(seed)}
    if not force_recompute:
        try:
            complete = existing_schedules_fit(output_dir, list(metrics), list(num_caches_list), fingerprint,
                                              int(policy.num_inference_steps), tuple(strategies), calibration)
        except ValueError as error:  # corrupt, or another model's: never overwritten unasked
            message = str(error).split("; recompute with")[0]
            raise ValueError(f"{output_dir} holds schedules that do not fit {checkpoint} ({message}); pass "
                             "--force_recompute to replace them, or choose another -o") from None
        if complete:
            logger.info("schedules for this model already in %s (pass --force_recompute to recompute)", output_dir)
            return []
    checkpoint_sha256 = sha256_of_file(checkpoint)
    activations = load_or_record_activations(policy, cfg, output_dir, source, seed, force_recompute, fingerprint,
                                             calibration_count)
    scheduler = {
        "class": type(policy.noise_scheduler).__name__,
        "num_train_timesteps": int(policy.noise_scheduler.config.num_train_timesteps),
        "num_inference_steps": int(policy.num_inference_steps),
    }
    return build_schedule_assets(
        output_dir, activations, list(metrics), list(num_caches_list),
        num_layers=len(policy.model.decoder.layers), scheduler=scheduler,
        checkpoint_sha256=checkpoint_sha256, model_fingerprint=fingerprint, make_plots=make_plots,
        strategies=tuple(strategies), calibration=calibration,
    )
