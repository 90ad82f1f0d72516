"""What the two transformer Diffusion Policies share: one sampling loop, one loss, normalizer plumbing.

A subclass only says how observations become the transformer's condition (`encode_obs`) and which
keys it reads; everything else -- DDPM/DDIM sampling through a diffusers scheduler, action slicing,
the epsilon/sample loss -- lives here once.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from diffusers import SchedulerMixin

from diffusion_policy.common.pytorch_util import host_to_device
from diffusion_policy.model.common.module_attr_mixin import ModuleAttrMixin
from diffusion_policy.model.common.normalizer import LinearNormalizer
from diffusion_policy.model.diffusion.mask_generator import LowdimMaskGenerator
from diffusion_policy.model.diffusion.transformer_for_diffusion import TransformerForDiffusion
from diffusion_policy.policy.denoising import DenoisingState
from diffusion_policy.model.diffusion.decoder import NamedCall
from diffusion_policy.policy.fused_step import FusedStep, fused_update


class DiffusionTransformerPolicy(ModuleAttrMixin):
    """Base of DiffusionTransformer{Lowdim,HybridImage}Policy.

    Trajectories are (B, T, Da) action sequences when observations condition the transformer
    (every shipped config), or (B, T, Da + Do) with observed entries in-painted otherwise.
    """

    def __init__(
        self,
        model: TransformerForDiffusion,
        noise_scheduler: SchedulerMixin,
        horizon: int,
        obs_feature_dim: int,
        action_dim: int,
        n_action_steps: int,
        n_obs_steps: int,
        num_inference_steps: Optional[int] = None,
        obs_as_cond: bool = False,
        pred_action_steps_only: bool = False,
        **kwargs,
    ):
        super().__init__()
        if pred_action_steps_only:
            assert obs_as_cond, "pred_action_steps_only requires obs_as_cond"
        self.model = model
        self.noise_scheduler = noise_scheduler
        self.mask_generator = LowdimMaskGenerator(
            action_dim=action_dim,
            obs_dim=0 if obs_as_cond else obs_feature_dim,
            max_n_obs_steps=n_obs_steps,
            fix_obs_steps=True,
            action_visible=False,
        )
        self.normalizer = LinearNormalizer()
        self.horizon = horizon
        self.obs_feature_dim = obs_feature_dim
        self.action_dim = action_dim
        self.n_action_steps = n_action_steps
        self.n_obs_steps = n_obs_steps
        self.obs_as_cond = obs_as_cond
        self.pred_action_steps_only = pred_action_steps_only
        self.kwargs = kwargs  # forwarded to scheduler.step (empty in every original config)
        if num_inference_steps is None:
            num_inference_steps = noise_scheduler.config.num_train_timesteps
        self.num_inference_steps = num_inference_steps
        self.denoising = DenoisingState()  # where the sampling loop is (read by hooks)
        self.scheduler_update = NamedCall("scheduler_update", self._scheduler_update)

    # ------------------------------------------------------------------ subclass interface
    def normalize_obs(self, obs: dict | torch.Tensor) -> dict:
        """Raw observations -> dict of normalized (B, T', ...) tensors."""
        raise NotImplementedError

    def encode_obs(self, nobs: dict) -> torch.Tensor:
        """Normalized obs (B, T', ...) -> per-step features (B, T', obs_feature_dim)."""
        raise NotImplementedError

    def _first_steps(self, nobs: dict) -> dict:
        return {k: v[:, : self.n_obs_steps] for k, v in nobs.items()}

    # ------------------------------------------------------------------ inference
    def reset(self) -> None:
        """Policies here are stateless between calls; kept for the runner interface."""

    def conditional_sample(
        self,
        condition_data: torch.Tensor,  # (B, T, D)
        condition_mask: Optional[torch.Tensor],  # (B, T, D) bool, True where condition_data is given; None: nothing
        cond: Optional[torch.Tensor] = None,  # (B, To, Dc)
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """The sampling loop: num_inference_steps denoising steps through the diffusers scheduler.

        No host sync inside the loop on an accelerator: the timesteps are moved to the sample's device
        once, the fused update reads per-step scalars kept on the host, in-painting is a `torch.where`."""
        scheduler = self.noise_scheduler
        trajectory = torch.randn(
            condition_data.shape, dtype=condition_data.dtype, device=condition_data.device, generator=generator
        )
        scheduler.set_timesteps(self.num_inference_steps)
        timesteps = host_to_device(scheduler.timesteps, trajectory.device)  # (N,), no host sync
        # The scheduler's update as a few tensor ops (fused_step.py), for every cache mode alike;
        # None for a configuration it does not reproduce: then scheduler.step.
        fused_step = FusedStep.for_scheduler(scheduler, self.kwargs)
        with self.denoising.run(timesteps):
            for i in range(len(timesteps)):
                t = timesteps[i]
                self.denoising.begin_step(i, t)
                if condition_mask is not None:
                    trajectory = torch.where(condition_mask, condition_data, trajectory)
                model_output = self.model(trajectory, t, cond)
                if fused_step is not None:
                    noise = fused_step.noise(i, model_output, generator)
                    trajectory = self.scheduler_update(fused_step, i, model_output, trajectory, noise)
                else:
                    trajectory = scheduler.step(model_output, scheduler.timesteps[i], trajectory,
                                                generator=generator, **self.kwargs).prev_sample
        if condition_mask is not None:
            trajectory = torch.where(condition_mask, condition_data, trajectory)
        return trajectory

    @staticmethod
    def _scheduler_update(fused_step: FusedStep, index: int, model_output: torch.Tensor, sample: torch.Tensor,
                          noise: Optional[torch.Tensor]) -> torch.Tensor:
        """Step `index`'s fused update (B, T, D) -> (B, T, D); a named call, so a compile hook can take it."""
        return fused_update(fused_step.coefficients(index), model_output, sample, noise,
                            fused_step.kind, fused_step.prediction_type, fused_step.clip)

    def predict_action(self, obs_dict: dict, generator: Optional[torch.Generator] = None) -> dict:
        """obs_dict -> {'action': (B, Ta, Da), 'action_pred': (B, T, Da)} (unnormalized)."""
        assert "past_action" not in obs_dict, "past_action conditioning is not supported"
        nobs = self.normalize_obs(obs_dict)
        To, T, Da = self.n_obs_steps, self.horizon, self.action_dim
        features = self.encode_obs(self._first_steps(nobs))  # (B, To, Do)
        B = features.shape[0]

        if self.obs_as_cond:
            cond = features
            shape = (B, self.n_action_steps if self.pred_action_steps_only else T, Da)
            cond_data = torch.zeros(shape, device=self.device, dtype=self.dtype)
            cond_mask = None  # nothing in-painted: the observations condition the transformer
        else:
            cond = None
            cond_data = torch.zeros((B, T, Da + self.obs_feature_dim), device=self.device, dtype=self.dtype)
            cond_mask = torch.zeros_like(cond_data, dtype=torch.bool)
            cond_data[:, :To, Da:] = features
            cond_mask[:, :To, Da:] = True

        nsample = self.conditional_sample(cond_data, cond_mask, cond=cond, generator=generator)
        action_pred = self.normalizer["action"].unnormalize(nsample[..., :Da])
        if self.pred_action_steps_only:
            action = action_pred
        else:
            start = To - 1
            action = action_pred[:, start : start + self.n_action_steps]
        result = {"action": action, "action_pred": action_pred}
        if not self.obs_as_cond and "obs" in self.normalizer.params_dict:
            obs_pred = self.normalizer["obs"].unnormalize(nsample[..., Da:])
            result["obs_pred"] = obs_pred
            result["action_obs_pred"] = obs_pred[:, To - 1 : To - 1 + self.n_action_steps]
        return result

    # ------------------------------------------------------------------ training
    def set_normalizer(self, normalizer: LinearNormalizer) -> None:
        self.normalizer.load_state_dict(normalizer.state_dict())

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """Denoising loss on a batch {'obs': ..., 'action': (B, T, Da)}."""
        nobs = self.normalize_obs(batch["obs"])
        action = self.normalizer["action"].normalize(batch["action"])
        To = self.n_obs_steps

        cond = None
        trajectory = action
        if self.obs_as_cond:
            cond = self.encode_obs(self._first_steps(nobs))  # (B, To, Do)
            if self.pred_action_steps_only:
                trajectory = action[:, To - 1 : To - 1 + self.n_action_steps]
        else:
            # In-painting: observed features of every step join the trajectory; the first To are given.
            trajectory = torch.cat([action, self.encode_obs(nobs)], dim=-1)  # (B, T, Da + Do)

        if self.pred_action_steps_only:
            condition_mask = torch.zeros_like(trajectory, dtype=torch.bool)
        else:
            condition_mask = self.mask_generator(trajectory.shape)

        noise = torch.randn_like(trajectory)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (trajectory.shape[0],), device=trajectory.device
        ).long()
        noisy = self.noise_scheduler.add_noise(trajectory, noise, timesteps)
        noisy[condition_mask] = trajectory[condition_mask]
        pred = self.model(noisy, timesteps, cond)

        prediction_type = self.noise_scheduler.config.prediction_type
        if prediction_type == "epsilon":
            target = noise
        elif prediction_type == "sample":
            target = trajectory
        else:
            raise ValueError(f"Unsupported prediction type {prediction_type}")
        loss = F.mse_loss(pred, target, reduction="none") * (~condition_mask).to(pred.dtype)
        return loss.reshape(loss.shape[0], -1).mean(dim=1).mean()
