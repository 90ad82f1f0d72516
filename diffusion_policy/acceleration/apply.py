"""apply_cache / remove_cache: hooks that make a loaded policy reuse block outputs (see __init__)."""

from __future__ import annotations

from diffusion_policy.acceleration.config import CacheConfig
from diffusion_policy.acceleration.hooks import (
    BlockCacheHook,
    ConditionCacheHook,
    DecoderPlanHook,
    HookRegistry,
    decoder_blocks,
    get_registry,
    install_registry,
    remove_registry,
)


def update_steps_for(policy, config: CacheConfig) -> dict[str, list[int]]:
    """Per-block update steps (block name -> sorted steps) that `config` gives this policy."""
    blocks = decoder_blocks(policy.model)
    num_steps = policy.num_inference_steps
    if config.mode == "original":
        return {name: list(range(num_steps)) for name in blocks}
    if config.mode == "threshold":
        if not 1 <= int(config.cache_threshold) < max(num_steps, 2):
            raise ValueError(f"--cache_threshold must be in [1, {max(num_steps - 1, 1)}] for this policy's {num_steps} "
                             f"denoising steps, got {config.cache_threshold} (>= {num_steps} computes only step 0)")
        return {name: list(range(0, num_steps, int(config.cache_threshold))) for name in blocks}
    if not 1 <= int(config.num_caches) <= num_steps:
        raise ValueError(f"--num_caches must be in [1, {num_steps}] (this policy's denoising steps), "
                         f"got {config.num_caches}")
    if not 0 <= int(config.num_bu_blocks) <= len(blocks):
        raise ValueError(f"--num_bu_blocks must be in [0, {len(blocks)}] (this policy's cached blocks), "
                         f"got {config.num_bu_blocks}")
    from diffusion_policy.activation_utils.schedule_files import load_schedule, resolve_update_steps
    from diffusion_policy.common.checkpoint import weights_fingerprint

    schedule = load_schedule(config.optimal_steps_dir, config.metric, int(config.num_caches))
    schedule.check_compatible(list(blocks), num_steps, len(policy.model.decoder.layers))
    if not config.allow_foreign_schedule:
        schedule.check_model(weights_fingerprint(policy))
    return resolve_update_steps(schedule, int(config.num_bu_blocks), num_steps)


def apply_cache(policy, config: CacheConfig) -> HookRegistry | None:
    """Make `policy` reuse block outputs as `config` says; replaces any cache applied before.

    'original' leaves the policy unmodified. Other modes hook every decoder block and, unless
    `config.reuse_condition` is False, also the lossless condition cache.
    """
    remove_cache(policy)
    if config.mode == "original":
        return None
    steps = update_steps_for(policy, config)
    num_steps = policy.num_inference_steps
    for name, block_steps in steps.items():
        if 0 not in block_steps:
            raise ValueError(f"{name}: the first denoising step must be an update step, got {block_steps}")
    registry = install_registry(policy, config.describe())
    block_hooks = []
    for name, block in decoder_blocks(policy.model).items():
        updates = set(steps[name])
        hook = BlockCacheHook(block.forward, [s in updates for s in range(num_steps)], registry.state)
        registry.override(block, "forward", lambda _original, hook=hook: hook.forward)
        registry.state.run_resets.append(hook.reset)
        registry.hooks[name] = hook
        block_hooks.append(hook)
    model = policy.model
    if config.fuse_cached_blocks:
        plan = DecoderPlanHook(registry.state, block_hooks, num_steps)
        registry.override(model.decoder, "forward", lambda _original: plan.forward)
        registry.state.run_resets.append(plan.reset)
        registry.hooks["decoder"] = plan
    if config.reuse_condition and model.obs_as_cond and model.n_cond_layers == 0:
        registry.hooks["condition"] = ConditionCacheHook(registry, policy)
    return registry


def remove_cache(policy) -> None:
    """Undo `apply_cache` (a no-op on a policy without a cache)."""
    remove_registry(policy)


def cache_report(policy) -> dict:
    """What the applied cache did so far: mode parameters and block evaluations per block."""
    registry = get_registry(policy)
    if registry is None:
        return {"mode": "original"}
    computed = {name: hook.num_computed for name, hook in registry.hooks.items() if isinstance(hook, BlockCacheHook)}
    return {**registry.description, "block_evaluations": computed}
