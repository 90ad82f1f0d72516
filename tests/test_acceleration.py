"""The BAC cache: exactness, semantics of reuse, lossless condition reuse, schedules, errors."""

import pytest
import torch
from diffusers import DDPMScheduler

from diffusion_policy.acceleration import CacheConfig, apply_cache, cache_report, remove_cache, update_steps_for
from diffusion_policy.activation_utils.collect import record_block_outputs
from diffusion_policy.activation_utils.schedule_builder import build_schedule_assets
from diffusion_policy.common.checkpoint import weights_fingerprint
from diffusion_policy.activation_utils.schedule_files import ScheduleMismatchError
from diffusion_policy.model.common.normalizer import LinearNormalizer
from diffusion_policy.model.diffusion.decoder import DecoderContext
from diffusion_policy.model.diffusion.transformer_for_diffusion import TransformerForDiffusion
from diffusion_policy.policy.diffusion_transformer_lowdim_policy import DiffusionTransformerLowdimPolicy

N_STEPS, HORIZON, TO, OBS_DIM, ACT_DIM = 12, 8, 2, 5, 3


def make_policy(n_layer=3, seed=0, num_train_timesteps=N_STEPS) -> DiffusionTransformerLowdimPolicy:
    torch.manual_seed(seed)
    model = TransformerForDiffusion(ACT_DIM, ACT_DIM, HORIZON, TO, OBS_DIM, n_layer=n_layer, n_head=2, n_emb=32,
                                    p_drop_emb=0.0, p_drop_attn=0.1, causal_attn=True)
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="squaredcos_cap_v2",
                              variance_type="fixed_small", clip_sample=True, prediction_type="epsilon")
    policy = DiffusionTransformerLowdimPolicy(model, scheduler, HORIZON, OBS_DIM, ACT_DIM, 4, TO, obs_as_cond=True)
    normalizer = LinearNormalizer()
    normalizer.fit({"obs": torch.randn(64, OBS_DIM), "action": torch.randn(64, ACT_DIM)})
    policy.set_normalizer(normalizer)
    return policy.eval()


def sample(policy, obs, seed=0):
    with torch.no_grad():
        return policy.predict_action(obs, generator=torch.Generator().manual_seed(seed))["action_pred"]


@pytest.fixture
def obs():
    return {"obs": torch.randn(2, TO, OBS_DIM, generator=torch.Generator().manual_seed(1))}


def test_every_step_an_update_is_bit_identical(obs):
    policy = make_policy()
    expected = sample(policy, obs)
    apply_cache(policy, CacheConfig(mode="threshold", cache_threshold=1, reuse_condition=False))
    assert torch.equal(sample(policy, obs), expected)


def test_condition_reuse_is_lossless(obs):
    policy = make_policy()
    expected = sample(policy, obs)
    apply_cache(policy, CacheConfig(mode="threshold", cache_threshold=1, reuse_condition=True))
    torch.testing.assert_close(sample(policy, obs), expected, atol=1e-6, rtol=0)


def manual_cached_sample(policy, obs, update_steps: dict[str, list[int]], seed=0):
    """Reference: the sampling loop written out, replaying block outputs by hand."""
    model = policy.model
    nobs = policy.normalizer["obs"].normalize(obs["obs"])[:, :TO]
    generator = torch.Generator().manual_seed(seed)
    traj = torch.randn((nobs.shape[0], HORIZON, ACT_DIM), generator=generator)
    policy.noise_scheduler.set_timesteps(policy.num_inference_steps)
    cache = {}
    with torch.no_grad():
        for step, t in enumerate(policy.noise_scheduler.timesteps):
            timesteps = t[None].expand(traj.shape[0])
            memory = model.embed_condition(timesteps, nobs)
            ctx = DecoderContext(memory, model.mask, model.memory_mask)
            x = model.drop(model.input_emb(traj) + model.pos_emb[:, :HORIZON])
            for i, layer in enumerate(model.decoder.layers):
                for kind in ("sa", "ca", "ffn"):
                    name = f"decoder.layers.{i}.{kind}"
                    if step in update_steps[name]:
                        cache[name] = getattr(layer, kind).forward(x, ctx)
                    x = x + cache[name]
            out = model.head(model.ln_f(x))
            traj = policy.noise_scheduler.step(out, t, traj, generator=generator).prev_sample
    return policy.normalizer["action"].unnormalize(traj)


def test_threshold_cache_replays_block_outputs_exactly(obs):
    policy = make_policy()
    config = CacheConfig(mode="threshold", cache_threshold=3, reuse_condition=False, fuse_cached_blocks=False)
    steps = update_steps_for(policy, config)
    assert steps["decoder.layers.0.sa"] == [0, 3, 6, 9]
    expected = manual_cached_sample(policy, obs, steps)
    apply_cache(policy, config)
    assert torch.equal(sample(policy, obs), expected)
    # and it really skipped: 4 of 12 steps per block, per predict_action
    report = cache_report(policy)
    assert set(report["block_evaluations"].values()) == {4}


@pytest.mark.parametrize("threshold", [1, 3, 5])
def test_fused_decoder_matches_block_by_block_replay(obs, threshold):
    policy = make_policy()
    apply_cache(policy, CacheConfig(mode="threshold", cache_threshold=threshold, fuse_cached_blocks=False))
    expected = sample(policy, obs)
    apply_cache(policy, CacheConfig(mode="threshold", cache_threshold=threshold, fuse_cached_blocks=True))
    torch.testing.assert_close(sample(policy, obs), expected, atol=1e-5, rtol=0)
    assert set(cache_report(policy)["block_evaluations"].values()) == {len(range(0, N_STEPS, threshold))}


def test_cache_changes_nothing_outside_the_blocks_and_is_removable(obs):
    policy = make_policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    expected = sample(policy, obs)
    apply_cache(policy, CacheConfig(mode="threshold", cache_threshold=4))
    cached = sample(policy, obs)
    assert not torch.equal(cached, expected)  # caching does change the result...
    remove_cache(policy)
    assert torch.equal(sample(policy, obs), expected)  # ...and removing it restores the policy exactly
    after = policy.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # no module keeps a hooked forward or a hook registry
    assert not any("forward" in vars(m) or "_bac_hook_registry" in vars(m) for m in policy.modules())


def test_recording_stacks_with_a_cache_and_records_what_it_computes(obs):
    from diffusion_policy.activation_utils.collect import record_computed_outputs

    policy = make_policy()
    uncached = record_block_outputs(policy, obs, seed=0)
    apply_cache(policy, CacheConfig(mode="threshold", cache_threshold=3, reuse_condition=False,
                                    fuse_cached_blocks=False))
    expected = policy.predict_action(obs, generator=torch.Generator().manual_seed(0))["action_pred"]
    recordings = record_computed_outputs(policy, obs, seed=0)
    assert {tuple(r.steps) for r in recordings.values()} == {(0, 3, 6, 9)}  # only the update steps
    for name, recording in recordings.items():
        # step 0 sees the same input with or without the cache
        assert torch.equal(torch.from_numpy(recording.outputs[0]), torch.from_numpy(uncached[name][0]))
    # recording changed nothing, and the cache is still applied afterwards
    assert torch.equal(sample(policy, obs), expected) and cache_report(policy)["mode"] == "threshold"
    with pytest.raises(ValueError, match="a cache is applied"):
        record_block_outputs(policy, obs)


@pytest.mark.parametrize("fuse", [True, False])
def test_model_called_outside_sampling_passes_through_and_leaves_the_cache_intact(obs, fuse):
    policy = make_policy()
    config = CacheConfig(mode="threshold", cache_threshold=4, fuse_cached_blocks=fuse)
    trajectory = torch.randn(2, HORIZON, ACT_DIM, generator=torch.Generator().manual_seed(3))
    cond = torch.randn(2, TO, OBS_DIM, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        plain = policy.model(trajectory, torch.tensor(5), cond)
    apply_cache(policy, config)
    expected = sample(policy, obs)
    with torch.no_grad():  # a forward by hand, between two predict_actions
        assert torch.equal(policy.model(trajectory, torch.tensor(5), cond), plain)
    assert torch.equal(sample(policy, obs), expected)


def test_hook_registry_chains_named_hooks_and_removes_them_by_name():
    from diffusion_policy.acceleration.hooks import HookRegistry, ModelHook

    class Tag(ModelHook):
        def __init__(self, tag):
            self.tag = tag

        def forward(self, module, call_next, x):
            return call_next(x) + [self.tag]

    registry = HookRegistry.of(torch.nn.Identity())  # forward(list) returns the list: the hooks' order shows
    registry.register("a", Tag("a"))
    registry.register("b", Tag("b"))
    registry.register("inner", Tag("inner"), innermost=True)
    identity = registry.module
    assert identity.forward([]) == ["inner", "a", "b"]  # later hooks wrap earlier ones
    with pytest.raises(ValueError, match="already has a hook named 'a'"):
        registry.register("a", Tag("again"))
    registry.remove("a")
    assert identity.forward([]) == ["inner", "b"]
    registry.remove("inner")
    registry.remove("b")
    assert "forward" not in vars(identity) and HookRegistry.of(identity, create=False) is None


def test_step_counter_resets_every_predict_action(obs):
    policy = make_policy()
    apply_cache(policy, CacheConfig(mode="threshold", cache_threshold=5))
    first = sample(policy, obs)
    second = sample(policy, obs)
    assert torch.equal(first, second)
    # a different batch size in the next call works too (caches are per run)
    assert sample(policy, {"obs": obs["obs"][:1]}).shape == (1, HORIZON, ACT_DIM)


def test_changing_num_inference_steps_after_apply_is_refused(obs):
    policy = make_policy()
    apply_cache(policy, CacheConfig(mode="threshold", cache_threshold=2))
    policy.num_inference_steps = 6
    with pytest.raises(ValueError, match="call apply_cache again"):
        sample(policy, obs)


def build_schedules(policy, obs, tmp_path, num_caches=(3, 5)):
    activations = record_block_outputs(policy, obs, seed=0)
    build_schedule_assets(tmp_path, activations, ["cosine", "l1"], list(num_caches),
                          num_layers=len(policy.model.decoder.layers),
                          scheduler={"class": "DDPMScheduler", "num_train_timesteps": N_STEPS,
                                     "num_inference_steps": N_STEPS},
                          checkpoint_sha256="0" * 64, model_fingerprint=weights_fingerprint(policy),
                          make_plots=False)
    return activations


def test_recording_leaves_the_policy_unchanged(obs):
    policy = make_policy()
    expected = sample(policy, obs)
    activations = record_block_outputs(policy, obs, seed=0)
    assert len(activations) == 9 and activations["decoder.layers.2.ffn"].shape == (N_STEPS, 2, HORIZON, 32)
    assert torch.equal(sample(policy, obs), expected)


@pytest.mark.parametrize("metric", ["cosine", "l1"])
@pytest.mark.parametrize("num_bu_blocks", [0, 2])
def test_optimal_mode_follows_the_schedule_files(obs, tmp_path, metric, num_bu_blocks):
    policy = make_policy()
    build_schedules(policy, obs, tmp_path)
    config = CacheConfig(mode="optimal", optimal_steps_dir=str(tmp_path / "optimal_steps" / metric), metric=metric,
                         num_caches=3, num_bu_blocks=num_bu_blocks, reuse_condition=False,
                         fuse_cached_blocks=False)
    steps = update_steps_for(policy, config)
    assert all(s[0] == 0 and s[-1] == N_STEPS - 1 for s in steps.values())  # last step always updates
    expected = manual_cached_sample(policy, obs, steps)
    apply_cache(policy, config)
    assert torch.equal(sample(policy, obs), expected)
    evaluations = cache_report(policy)["block_evaluations"]
    assert evaluations == {name: len(s) for name, s in steps.items()}


def test_schedule_for_another_model_is_refused(obs, tmp_path):
    build_schedules(make_policy(n_layer=3), obs, tmp_path)
    other = make_policy(n_layer=2)
    config = CacheConfig(mode="optimal", optimal_steps_dir=str(tmp_path), num_caches=3)
    with pytest.raises(ScheduleMismatchError, match="decoder layers 3 \\(schedule\\) vs 2 \\(model\\)"):
        apply_cache(other, config)
    assert "_bac_hooks" not in vars(other)  # nothing half-applied


def test_schedule_for_other_step_count_is_refused(obs, tmp_path):
    policy = make_policy()
    build_schedules(policy, obs, tmp_path)
    policy.num_inference_steps = 6
    with pytest.raises(ScheduleMismatchError, match="denoising steps"):
        apply_cache(policy, CacheConfig(mode="optimal", optimal_steps_dir=str(tmp_path), num_caches=3))


def test_missing_schedule_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="get_optimal_cache_update_steps.py"):
        apply_cache(make_policy(), CacheConfig(mode="optimal", optimal_steps_dir=str(tmp_path / "nope")))


@pytest.mark.parametrize("kwargs,message", [
    ({"mode": "fast"}, "unknown cache mode"),
    ({"mode": "threshold", "cache_threshold": 0}, "cache_threshold"),
    ({"mode": "optimal"}, "--optimal_steps_dir"),
])
def test_bad_config_is_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CacheConfig(**kwargs)


def test_original_mode_is_a_no_op(obs):
    policy = make_policy()
    expected = sample(policy, obs)
    assert apply_cache(policy, CacheConfig(mode="original")) is None
    assert torch.equal(sample(policy, obs), expected)
    assert cache_report(policy) == {"mode": "original"}
