"""The benchmark's reference setting: the original DP transformer with the Push-T lowdim config."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMScheduler

from diffusion_policy.model.common.normalizer import LinearNormalizer
from diffusion_policy.model.diffusion.transformer_for_diffusion import TransformerForDiffusion
from diffusion_policy.policy.diffusion_transformer_lowdim_policy import DiffusionTransformerLowdimPolicy

PUSHT_OBS_DIM, PUSHT_ACTION_DIM = 20, 2


def reference_policy(device="cpu", seed: int = 0) -> DiffusionTransformerLowdimPolicy:
    """Randomly initialised policy of train_diffusion_transformer_lowdim_pusht_workspace (8 layers,
    256 wide, 4 heads, horizon 16, To 2, Ta 8, causal, DDPM 100 squaredcos_cap_v2)."""
    torch.manual_seed(seed)
    model = TransformerForDiffusion(
        input_dim=PUSHT_ACTION_DIM, output_dim=PUSHT_ACTION_DIM, horizon=16, n_obs_steps=2,
        cond_dim=PUSHT_OBS_DIM, n_layer=8, n_head=4, n_emb=256, p_drop_emb=0.0, p_drop_attn=0.01,
        causal_attn=True, time_as_cond=True, obs_as_cond=True, n_cond_layers=0,
    )
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_start=0.0001, beta_end=0.02,
                              beta_schedule="squaredcos_cap_v2", variance_type="fixed_small",
                              clip_sample=True, prediction_type="epsilon")
    policy = DiffusionTransformerLowdimPolicy(model, scheduler, horizon=16, obs_dim=PUSHT_OBS_DIM,
                                              action_dim=PUSHT_ACTION_DIM, n_action_steps=8, n_obs_steps=2,
                                              num_inference_steps=100, obs_as_cond=True)
    # Push-T's workspace is [0, 512]^2 for keypoints, agent position and actions.
    normalizer = LinearNormalizer()
    normalizer.fit({"obs": torch.rand(256, PUSHT_OBS_DIM) * 512, "action": torch.rand(256, PUSHT_ACTION_DIM) * 512})
    policy.set_normalizer(normalizer)
    return policy.to(device).eval()


def reference_obs(policy, cfg=None, batch_size: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of one real observation (checkpoint: first test-episode obs) or a fixed random one."""
    if cfg is not None:
        from diffusion_policy.activation_utils.calibrate import calibration_observation

        obs = calibration_observation(cfg, policy, "env")
        return {k: v.expand(batch_size, *v.shape[1:]).contiguous() for k, v in obs.items()}
    generator = torch.Generator().manual_seed(seed)
    obs = torch.rand(batch_size, policy.n_obs_steps, policy.obs_dim, generator=generator) * 512
    return {"obs": obs.to(device=policy.device, dtype=policy.dtype)}


def schedules_for(policy, cfg, output_dir, metric: str, num_caches_list: list[int], seed: int = 0,
                  strategies: tuple[str, ...] = ("reuse",)) -> Path:
    """Compute ACS (and forecast) schedules for `policy` from one calibration run; returns the metric's
    steps dir."""
    from diffusion_policy.activation_utils.collect import record_block_outputs
    from diffusion_policy.activation_utils.schedule_builder import build_schedule_assets
    from diffusion_policy.activation_utils.schedule_files import optimal_steps_dir
    from diffusion_policy.common.checkpoint import weights_fingerprint

    activations = record_block_outputs(policy, reference_obs(policy, cfg, 1, seed), seed=seed)
    scheduler = {"class": type(policy.noise_scheduler).__name__,
                 "num_train_timesteps": int(policy.noise_scheduler.config.num_train_timesteps),
                 "num_inference_steps": int(policy.num_inference_steps)}
    build_schedule_assets(output_dir, activations, [metric], list(num_caches_list),
                          num_layers=len(policy.model.decoder.layers), scheduler=scheduler,
                          checkpoint_sha256="random-init" if cfg is None else "calibrated",
                          model_fingerprint=weights_fingerprint(policy), make_plots=False,
                          strategies=tuple(strategies))
    return optimal_steps_dir(output_dir, metric)
