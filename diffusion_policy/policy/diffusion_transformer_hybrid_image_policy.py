"""Diffusion Policy with a transformer denoiser on images + low-dim state (robomimic-style encoder)."""

from __future__ import annotations

from typing import Optional

import torch
from diffusers import SchedulerMixin

from diffusion_policy.model.diffusion.transformer_for_diffusion import TransformerForDiffusion
from diffusion_policy.model.vision.robomimic_obs_encoder import RobomimicObsEncoder
from diffusion_policy.policy.base_policy import DiffusionTransformerPolicy


class DiffusionTransformerHybridImagePolicy(DiffusionTransformerPolicy):
    """obs_dict = {rgb_key: (B, To, 3, H, W) in [0, 1], lowdim_key: (B, To, D)} as in shape_meta."""

    def __init__(
        self,
        shape_meta: dict,
        noise_scheduler: SchedulerMixin,
        horizon: int,
        n_action_steps: int,
        n_obs_steps: int,
        num_inference_steps: Optional[int] = None,
        crop_shape=(76, 76),
        obs_encoder_group_norm: bool = False,
        eval_fixed_crop: bool = False,
        n_layer: int = 8,
        n_cond_layers: int = 0,
        n_head: int = 4,
        n_emb: int = 256,
        p_drop_emb: float = 0.0,
        p_drop_attn: float = 0.3,
        causal_attn: bool = True,
        time_as_cond: bool = True,
        obs_as_cond: bool = True,
        pred_action_steps_only: bool = False,
        **kwargs,
    ):
        action_shape = shape_meta["action"]["shape"]
        assert len(action_shape) == 1, f"action must be a vector, got shape {action_shape}"
        action_dim = int(action_shape[0])
        obs_encoder = RobomimicObsEncoder(
            shape_meta, crop_shape=crop_shape, obs_encoder_group_norm=obs_encoder_group_norm,
            eval_fixed_crop=eval_fixed_crop,
        )
        obs_feature_dim = obs_encoder.feature_dim
        input_dim = action_dim if obs_as_cond else obs_feature_dim + action_dim
        model = TransformerForDiffusion(
            input_dim=input_dim,
            output_dim=input_dim,
            horizon=horizon,
            n_obs_steps=n_obs_steps,
            cond_dim=obs_feature_dim if obs_as_cond else 0,
            n_layer=n_layer,
            n_head=n_head,
            n_emb=n_emb,
            p_drop_emb=p_drop_emb,
            p_drop_attn=p_drop_attn,
            causal_attn=causal_attn,
            time_as_cond=time_as_cond,
            obs_as_cond=obs_as_cond,
            n_cond_layers=n_cond_layers,
        )
        super().__init__(
            model, noise_scheduler, horizon, obs_feature_dim, action_dim, n_action_steps, n_obs_steps,
            num_inference_steps=num_inference_steps, obs_as_cond=obs_as_cond,
            pred_action_steps_only=pred_action_steps_only, **kwargs,
        )
        self.obs_encoder = obs_encoder
        self.shape_meta = shape_meta

    def normalize_obs(self, obs: dict) -> dict:
        return self.normalizer.normalize({k: v for k, v in obs.items() if k in self.obs_encoder.obs_shapes})

    def encode_obs(self, nobs: dict) -> torch.Tensor:
        """(B, T', ...) per key -> (B, T', obs_feature_dim): the encoder sees B*T' single steps."""
        B, T = next(iter(nobs.values())).shape[:2]
        flat = {k: v.reshape(B * T, *v.shape[2:]) for k, v in nobs.items()}
        return self.obs_encoder(flat).reshape(B, T, -1)

    def get_optimizer(self, transformer_weight_decay: float, obs_encoder_weight_decay: float,
                      learning_rate: float, betas: tuple) -> torch.optim.Optimizer:
        groups = self.model.get_optim_groups(weight_decay=transformer_weight_decay)
        groups.append({"params": self.obs_encoder.parameters(), "weight_decay": obs_encoder_weight_decay})
        return torch.optim.AdamW(groups, lr=learning_rate, betas=tuple(betas))
