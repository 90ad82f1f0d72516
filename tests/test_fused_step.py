"""The fused scheduler step equals diffusers' `scheduler.step` under the same noise, for every
scheduler configuration it supports, and the sampling loop uses it."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffusion_policy.policy.fused_step import FusedStep

BASE = dict(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
CONFIGS = {
    "ddpm_dp_default": (DDPMScheduler, dict(variance_type="fixed_small", clip_sample=True, prediction_type="epsilon")),
    "ddpm_sample": (DDPMScheduler, dict(variance_type="fixed_small", clip_sample=True, prediction_type="sample")),
    "ddpm_v_noclip": (DDPMScheduler, dict(variance_type="fixed_small", clip_sample=False, prediction_type="v_prediction")),
    "ddpm_fixed_large": (DDPMScheduler, dict(variance_type="fixed_large", clip_sample=True, prediction_type="epsilon")),
    "ddpm_fixed_small_log": (DDPMScheduler, dict(variance_type="fixed_small_log", clip_sample=False,
                                                 prediction_type="epsilon")),
    "ddpm_linear": (DDPMScheduler, dict(beta_schedule="linear", variance_type="fixed_small", clip_sample=True,
                                        prediction_type="epsilon")),
    "ddim_dp_real_robot": (DDIMScheduler, dict(clip_sample=True, prediction_type="epsilon", set_alpha_to_one=True,
                                               steps_offset=0)),
    "ddim_sample": (DDIMScheduler, dict(clip_sample=True, prediction_type="sample", set_alpha_to_one=True)),
    "ddim_v": (DDIMScheduler, dict(clip_sample=False, prediction_type="v_prediction", set_alpha_to_one=False)),
}


def run_both(scheduler, num_steps: int, step_kwargs: dict, shape=(3, 16, 2)):
    scheduler.set_timesteps(num_steps)
    fused = FusedStep.for_scheduler(scheduler, step_kwargs)
    assert fused is not None
    outputs = torch.randn(num_steps, *shape, generator=torch.Generator().manual_seed(1)) * 1.5
    start = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    reference, chained = start.clone(), start.clone()
    ref_gen, our_gen, chain_gen = (torch.Generator().manual_seed(3) for _ in range(3))
    for i, t in enumerate(scheduler.timesteps):
        step_input = reference
        reference = scheduler.step(outputs[i], t, step_input, generator=ref_gen, **step_kwargs).prev_sample
        # one step from the same sample, model output and noise: equal to 1e-6
        torch.testing.assert_close(fused(i, outputs[i], step_input, generator=our_gen), reference, atol=1e-6, rtol=0)
        chained = fused(i, outputs[i], chained, generator=chain_gen)
    # the whole run on the fused steps alone stays within float rounding of diffusers' run
    torch.testing.assert_close(chained, reference, atol=1e-5, rtol=0)
    # both drew the same random numbers: the generators end in the same state
    assert torch.equal(ref_gen.get_state(), our_gen.get_state())


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("num_steps", [100, 16])
def test_fused_step_equals_diffusers_step(name, num_steps):
    cls, config = CONFIGS[name]
    run_both(cls(**{**BASE, **config}), num_steps, {})


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_with_eta(eta):
    cls, config = CONFIGS["ddim_dp_real_robot"]
    run_both(cls(**{**BASE, **config}), 10, {"eta": eta})


def test_unsupported_configurations_fall_back_to_the_scheduler():
    scheduler = DDPMScheduler(**BASE, variance_type="learned_range")
    scheduler.set_timesteps(10)
    assert FusedStep.for_scheduler(scheduler) is None
    thresholded = DDPMScheduler(**BASE, thresholding=True)
    thresholded.set_timesteps(10)
    assert FusedStep.for_scheduler(thresholded) is None
    plain = DDPMScheduler(**BASE)
    plain.set_timesteps(10)
    assert FusedStep.for_scheduler(plain, {"unknown_kwarg": 1}) is None


def test_the_sampling_loop_uses_it_and_matches_the_scheduler_loop(monkeypatch):
    """predict_action (fused step) against the same loop on scheduler.step."""
    from test_acceleration import HORIZON, TO, make_policy

    policy = make_policy()
    obs = {"obs": torch.randn(2, TO, 5, generator=torch.Generator().manual_seed(1))}
    with torch.no_grad():
        fused = policy.predict_action(obs, generator=torch.Generator().manual_seed(0))["action_pred"]
        monkeypatch.setattr(FusedStep, "for_scheduler", classmethod(lambda cls, *args, **kwargs: None))
        reference = policy.predict_action(obs, generator=torch.Generator().manual_seed(0))["action_pred"]
    assert fused.shape == (2, HORIZON, 3)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=0)
