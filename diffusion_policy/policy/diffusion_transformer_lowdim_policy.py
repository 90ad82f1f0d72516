"""Diffusion Policy with a transformer denoiser on low-dimensional state observations."""

from __future__ import annotations

from typing import Optional

import torch
from diffusers import SchedulerMixin

from diffusion_policy.model.diffusion.transformer_for_diffusion import TransformerForDiffusion
from diffusion_policy.policy.base_policy import DiffusionTransformerPolicy


class DiffusionTransformerLowdimPolicy(DiffusionTransformerPolicy):
    """obs_dict = {'obs': (B, To, Do)}; the condition is the normalized obs itself."""

    def __init__(
        self,
        model: TransformerForDiffusion,
        noise_scheduler: SchedulerMixin,
        horizon: int,
        obs_dim: int,
        action_dim: int,
        n_action_steps: int,
        n_obs_steps: int,
        num_inference_steps: Optional[int] = None,
        obs_as_cond: bool = False,
        pred_action_steps_only: bool = False,
        **kwargs,
    ):
        if obs_as_cond:
            assert model.obs_as_cond, "obs_as_cond policy needs a model built with cond_dim = obs_dim"
        super().__init__(
            model, noise_scheduler, horizon, obs_dim, action_dim, n_action_steps, n_obs_steps,
            num_inference_steps=num_inference_steps, obs_as_cond=obs_as_cond,
            pred_action_steps_only=pred_action_steps_only, **kwargs,
        )
        self.obs_dim = obs_dim

    def normalize_obs(self, obs: dict | torch.Tensor) -> dict:
        if isinstance(obs, dict):  # predict_action receives the runner's obs_dict
            obs = obs["obs"]
        return {"obs": self.normalizer["obs"].normalize(obs)}

    def encode_obs(self, nobs: dict) -> torch.Tensor:
        return nobs["obs"]

    def get_optimizer(self, weight_decay: float, learning_rate: float, betas: tuple) -> torch.optim.Optimizer:
        return self.model.configure_optimizers(weight_decay=weight_decay, learning_rate=learning_rate,
                                               betas=tuple(betas))
