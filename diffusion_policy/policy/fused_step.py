"""The denoising update of a diffusers scheduler as a few tensor ops per step.

`scheduler.step` recomputes its coefficients in Python at every step (index lookups, small tensor
ops, a `nonzero` to find the previous timestep). For the schedulers Diffusion Policy uses, every
update has the form

    x0   = (sample - sqrt(1 - ᾱ_t) * model_output) / sqrt(ᾱ_t)     (epsilon; 'sample', 'v_prediction' alike)
    x0   = clamp(x0, -r, r)                                        (when clip_sample)
    DDPM: prev = c_x0 * x0 + c_s * sample + sigma * noise
    DDIM: prev = sqrt(ᾱ_prev) * x0 + c_eps * epsilon + sigma * noise

with per-step scalars that depend only on the scheduler's config and its timesteps. `FusedStep`
computes them once per sampling run, with the scheduler's own formulas in its own dtype, keeps them
as Python floats (no device tensor is indexed in the loop: no host sync) and applies the update in
the scheduler's order of operations; the noise is drawn exactly as the scheduler draws it (same
generator calls, same shapes). Under the same generator one step equals `scheduler.step` to 1e-6
(tested; mostly bit for bit).

Supported: DDPMScheduler (variance_type fixed_small, fixed_small_log, fixed_large; prediction_type
epsilon, sample, v_prediction; clip_sample) and DDIMScheduler (any eta; the same prediction types;
clip_sample), thresholding off. `FusedStep.for_scheduler` returns None for anything else, and the
sampling loop then calls `scheduler.step`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor

DDPM_VARIANCES = ("fixed_small", "fixed_small_log", "fixed_large")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


@dataclass
class FusedStep:
    kind: str  # "ddpm" | "ddim"
    prediction_type: str  # "epsilon" | "sample" | "v_prediction"
    sqrt_alpha: list[float]  # sqrt(ᾱ_t) per step
    sqrt_beta: list[float]  # sqrt(1 - ᾱ_t)
    c_x0: list[float]  # DDPM: pred_original_sample coefficient; DDIM: sqrt(ᾱ_prev)
    c_s: list[float]  # DDPM: current sample coefficient; DDIM: 0
    c_eps: list[float]  # DDIM: sqrt(1 - ᾱ_prev - std²); DDPM: 0
    sigma: list[float]  # scale of the noise added at each step
    draw: list[bool]  # whether the scheduler draws noise at each step (its generator advances even if sigma is 0)
    clip: float | None  # clip_sample_range, or None

    @classmethod
    def for_scheduler(cls, scheduler, step_kwargs: dict | None = None) -> FusedStep | None:
        """The fused update of `scheduler` at its current timesteps (after set_timesteps), or None
        when its configuration (or a step kwarg) is not one this module reproduces."""
        config = scheduler.config
        kwargs = dict(step_kwargs or {})
        eta = float(kwargs.pop("eta", 0.0))
        if kwargs or getattr(config, "thresholding", False) or config.prediction_type not in PREDICTION_TYPES:
            return None
        if scheduler.timesteps is None or scheduler.num_inference_steps is None:
            return None
        if type(scheduler) is DDPMScheduler and config.variance_type in DDPM_VARIANCES and eta == 0.0:
            kind, coefficients = "ddpm", _ddpm(scheduler)
        elif type(scheduler) is DDIMScheduler:
            kind, coefficients = "ddim", _ddim(scheduler, eta)
        else:
            return None
        clip = float(config.clip_sample_range) if config.clip_sample else None
        return cls(kind, config.prediction_type, *coefficients, clip=clip)

    def table(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(N, 6) per-step coefficients [sqrt_alpha, sqrt_beta, c_x0, c_s, c_eps, sigma] on `device`, made
        once per run: the loop passes row `index` (a view, no host sync) to `fused_update`."""
        from diffusion_policy.common.pytorch_util import host_to_device

        columns = (self.sqrt_alpha, self.sqrt_beta, self.c_x0, self.c_s, self.c_eps, self.sigma)
        return host_to_device(torch.tensor(list(zip(*columns)), dtype=torch.float64), device, dtype)

    def noise(self, index: int, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The noise the scheduler would draw at step `index` (same generator call), or None."""
        if not self.draw[index]:
            return None
        return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)

    def coefficients(self, index: int) -> tuple[float, ...]:
        """(sqrt_alpha, sqrt_beta, c_x0, c_s, c_eps, sigma) of step `index`, as Python floats."""
        return (self.sqrt_alpha[index], self.sqrt_beta[index], self.c_x0[index], self.c_s[index],
                self.c_eps[index], self.sigma[index])

    def __call__(self, index: int, model_output: torch.Tensor, sample: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The previous sample from step `index` of the run (0 = the first, noisiest step)."""
        return fused_update(self.coefficients(index), model_output, sample,
                            self.noise(index, model_output, generator), self.kind, self.prediction_type, self.clip)


def fused_update(coefficients, model_output: torch.Tensor, sample: torch.Tensor, noise: torch.Tensor | None,
                 kind: str, prediction_type: str, clip: float | None) -> torch.Tensor:
    """One scheduler update: coefficients = (sqrt_alpha, sqrt_beta, c_x0, c_s, c_eps, sigma) of the step, as
    Python floats (eager) or a (6,) tensor row (compiled: one graph for every step); sample, model_output
    (B, T, D); noise (B, T, D) or None."""
    a, b, c_x0, c_s, c_eps, sigma = (coefficients[k] for k in range(6))
    if prediction_type == "epsilon":
        x0 = (sample - b * model_output) / a
    elif prediction_type == "sample":
        x0 = model_output
    else:  # v_prediction
        x0 = a * sample - b * model_output
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    if kind == "ddpm":
        prev = c_x0 * x0 + c_s * sample
    else:
        if prediction_type == "epsilon":
            epsilon = model_output
        elif prediction_type == "sample":  # from the unclipped prediction, as the scheduler does
            epsilon = (sample - a * model_output) / b
        else:
            epsilon = a * model_output + b * sample
        prev = c_x0 * x0 + c_eps * epsilon
    if noise is not None:
        prev = prev + sigma * noise
    return prev


def _lookup(alphas_cumprod: torch.Tensor, steps: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """alphas_cumprod[step] per step, `fill` where step < 0 (the scheduler's value past the end)."""
    return torch.where(steps >= 0, alphas_cumprod[steps.clamp(min=0)], fill.to(alphas_cumprod.dtype))


def _ddpm(scheduler):
    """DDPMScheduler.step's scalars, computed as it computes them (same dtype, same formulas)."""
    timesteps = scheduler.timesteps.to("cpu").long()
    alphas_cumprod = scheduler.alphas_cumprod.to("cpu")
    prev = torch.cat([timesteps[1:], timesteps.new_tensor([-1])])  # what previous_timestep gives
    alpha_t = alphas_cumprod[timesteps]
    alpha_prev = _lookup(alphas_cumprod, prev, scheduler.one)
    beta_t, beta_prev = 1 - alpha_t, 1 - alpha_prev
    current_alpha = alpha_t / alpha_prev
    current_beta = 1 - current_alpha
    c_x0 = (alpha_prev ** (0.5) * current_beta) / beta_t
    c_s = current_alpha ** (0.5) * beta_prev / beta_t
    variance = torch.clamp((1 - alpha_prev) / (1 - alpha_t) * current_beta, min=1e-20)
    variance_type = scheduler.config.variance_type
    if variance_type == "fixed_small":
        sigma = variance**0.5
    elif variance_type == "fixed_small_log":
        sigma = torch.exp(0.5 * torch.log(variance))
    else:  # fixed_large
        sigma = current_beta**0.5
    draw = timesteps > 0  # no noise into the last sample
    zeros = torch.zeros_like(alpha_t)
    return [c.tolist() for c in (alpha_t ** (0.5), beta_t ** (0.5), c_x0, c_s, zeros, sigma, draw)]


def _ddim(scheduler, eta: float):
    """DDIMScheduler.step's scalars, computed as it computes them (same dtype, same formulas)."""
    config = scheduler.config
    timesteps = scheduler.timesteps.to("cpu").long()
    alphas_cumprod = scheduler.alphas_cumprod.to("cpu")
    prev = timesteps - config.num_train_timesteps // scheduler.num_inference_steps
    alpha_t = alphas_cumprod[timesteps]
    alpha_prev = _lookup(alphas_cumprod, prev, torch.as_tensor(scheduler.final_alpha_cumprod))
    beta_t, beta_prev = 1 - alpha_t, 1 - alpha_prev
    variance = (beta_prev / beta_t) * (1 - alpha_t / alpha_prev)
    std = eta * variance ** (0.5)
    c_eps = (1 - alpha_prev - std**2) ** (0.5)
    draw = torch.full_like(timesteps, eta > 0, dtype=torch.bool)  # DDIM draws at every step when eta > 0
    zeros = torch.zeros_like(alpha_t)
    return [c.tolist() for c in (alpha_t ** (0.5), beta_t ** (0.5), alpha_prev ** (0.5), zeros, c_eps, std, draw)]
