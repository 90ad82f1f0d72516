"""apply_cache / remove_cache: hooks that make a loaded policy reuse block outputs (see __init__)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from diffusion_policy.acceleration.config import CacheConfig
from diffusion_policy.acceleration.hooks import (
    BlockCacheHook,
    DecoderPlanHook,
    HookRegistry,
    ModelHook,
    ObsKeyValueHook,
    RunConstantHook,
    StepPlanHook,
    TimeTokenTableHook,
    decoder_blocks,
    remove_hooks,
)

CACHE_HOOK = "bac_cache"  # the name of the cache's hook on every module it touches
APPLIED_ATTR = "_bac_applied_cache"


@dataclass
class AppliedCache:
    """What `apply_cache` put on a policy (kept on it, so that `remove_cache` can take it off)."""

    config: CacheConfig
    num_steps: int
    block_hooks: dict[str, BlockCacheHook]
    stateful_hooks: list[ModelHook]  # reset at the start of every denoising run
    on_run_start: Callable


def update_steps_for(policy, config: CacheConfig, with_forecast_flags: bool = False):
    """Per-block update steps (block name -> sorted steps) that `config` gives this policy, every step for
    its `recompute_blocks`; with `with_forecast_flags`, also block name -> per update step whether its
    segment forecasts (None: every segment, as in threshold mode)."""
    blocks = decoder_blocks(policy.model)
    unknown = [name for name in config.recompute_blocks if name not in blocks]
    if unknown:
        raise ValueError(f"--recompute_blocks: no block {', '.join(unknown)} in this model; its blocks are "
                         f"{next(iter(blocks))} ... {next(reversed(blocks))} (decoder.layers.<i>.sa|ca|ffn)")
    steps, flags = _scheduled_steps(policy, config, blocks, with_forecast_flags)
    every = list(range(policy.num_inference_steps))
    for name in config.recompute_blocks:
        steps[name] = every
        if flags is not None:
            flags[name] = [False] * len(every)
    return (steps, flags) if with_forecast_flags else steps


def _scheduled_steps(policy, config: CacheConfig, blocks: dict, with_forecast_flags: bool):
    """(update steps, forecast flags or None) of the mode, before recompute_blocks."""
    num_steps = policy.num_inference_steps
    if config.mode == "original":
        return {name: list(range(num_steps)) for name in blocks}, None
    if config.mode == "threshold":
        if not 1 <= int(config.cache_threshold) < max(num_steps, 2):
            raise ValueError(f"--cache_threshold must be in [1, {max(num_steps - 1, 1)}] for this policy's {num_steps} "
                             f"denoising steps, got {config.cache_threshold} (>= {num_steps} computes only step 0)")
        return {name: list(range(0, num_steps, int(config.cache_threshold))) for name in blocks}, None
    if not 1 <= int(config.num_caches) <= num_steps:
        raise ValueError(f"--num_caches must be in [1, {num_steps}] (this policy's denoising steps), "
                         f"got {config.num_caches}")
    if not 0 <= int(config.num_bu_blocks) <= len(blocks):
        raise ValueError(f"--num_bu_blocks must be in [0, {len(blocks)}] (this policy's cached blocks), "
                         f"got {config.num_bu_blocks}")
    from diffusion_policy.activation_utils.schedule_files import load_schedule, resolve_update_steps
    from diffusion_policy.common.checkpoint import weights_fingerprint

    schedule = load_schedule(config.optimal_steps_dir, config.metric, int(config.num_caches), config.strategy)
    schedule.check_compatible(list(blocks), num_steps, len(policy.model.decoder.layers))
    if not config.allow_foreign_schedule:
        schedule.check_model(weights_fingerprint(policy))
    steps = resolve_update_steps(schedule, int(config.num_bu_blocks), num_steps)
    if with_forecast_flags:
        return steps, {name: schedule.forecast_flags(name, s) for name, s in steps.items()}
    return steps, None


def apply_cache(policy, config: CacheConfig) -> AppliedCache | None:
    """Make `policy` reuse block outputs as `config` says; replaces any cache applied before.

    'original' leaves the policy unmodified (unless `config.compile`). Other modes register a hook named
    'bac_cache' on every decoder block (and, fused, on the decoder) and, unless `config.reuse_condition`
    is False, the lossless hooks on the time token, the obs tokens and each layer's memory keys/values.
    With `config.compile`, compile hooks ('bac_compile', innermost) go on the per-step calls too.
    """
    remove_cache(policy)
    if config.mode == "original" and not config.compile:
        return None
    num_steps = policy.num_inference_steps
    state = policy.denoising
    stateful: list[ModelHook] = []
    block_hooks: dict[str, BlockCacheHook] = {}
    step_fns = {}  # StepPlanHook's compiled step functions (none: its eager ones)
    compile_mode, compiling = None, False
    if config.compile:
        from diffusion_policy.acceleration.compile import resolve_mode, step_functions

        compile_mode, compiling = resolve_mode(policy, config.compile_mode)
        if compiling and config.mode != "original":
            step_fns = dict(zip(("reuse_fn", "full_fn"), step_functions(compile_mode)))
    if config.mode != "original":
        block_hooks = _apply_block_caches(policy, config, stateful, step_fns)
    if compiling:
        from diffusion_policy.acceleration.compile import apply_compile

        stateful += apply_compile(policy, compile_mode, whole_forward=config.mode == "original")

    def on_run_start(run) -> None:
        if run.num_steps != num_steps:
            raise ValueError(f"the cache was applied for {num_steps} denoising steps but the policy now runs "
                             f"{run.num_steps}; call apply_cache again after changing num_inference_steps")
        for hook in stateful:
            hook.reset_state()

    state.add_run_listener(on_run_start)
    applied = AppliedCache(config, num_steps, block_hooks, stateful, on_run_start)
    policy.__dict__[APPLIED_ATTR] = applied
    return applied


def _apply_block_caches(policy, config: CacheConfig, stateful: list[ModelHook],
                        step_fns: dict) -> dict[str, BlockCacheHook]:
    """The cache hooks of a caching mode; appends the hooks with per-run state to `stateful`."""
    steps, flags = update_steps_for(policy, config, with_forecast_flags=True)
    num_steps = policy.num_inference_steps
    state = policy.denoising
    blocks = decoder_blocks(policy.model)
    block_hooks = {}
    for name, block in blocks.items():
        updates = set(steps[name])
        if 0 not in updates:
            raise ValueError(f"{name}: the first denoising step must be an update step, got {steps[name]}")
        forecast_after = None
        if flags is not None and config.block_order > 0:
            after = dict(zip(steps[name], flags[name]))
            forecast_after = [after.get(s, False) for s in range(num_steps)]
        hook = BlockCacheHook(state, [s in updates for s in range(num_steps)], order=config.block_order,
                              forecast_after=forecast_after)
        block_hooks[name] = HookRegistry.of(block).register(CACHE_HOOK, hook)
    stateful += block_hooks.values()
    model = policy.model
    if config.fuse_cached_blocks:
        plan = DecoderPlanHook(state, list(blocks.values()), list(block_hooks.values()))
        stateful.append(HookRegistry.of(model.decoder).register(CACHE_HOOK, plan))
        # whole steps: all-reuse ones skip the condition and the decoder; compiled, all-compute ones too
        HookRegistry.of(model).register(CACHE_HOOK, StepPlanHook(state, plan, **step_fns))
    if config.reuse_condition and model.obs_as_cond and model.n_cond_layers == 0:
        stateful.append(HookRegistry.of(model.time_token).register(CACHE_HOOK, TimeTokenTableHook(state)))
        stateful.append(HookRegistry.of(model.obs_tokens).register(CACHE_HOOK, RunConstantHook(state)))
        for layer in model.decoder.layers:
            stateful.append(HookRegistry.of(layer.memory_kv).register(CACHE_HOOK, ObsKeyValueHook(state)))
    return block_hooks


def applied_cache(policy) -> AppliedCache | None:
    return policy.__dict__.get(APPLIED_ATTR)


def remove_cache(policy) -> None:
    """Undo `apply_cache` (a no-op on a policy without a cache); other hooks stay."""
    applied = policy.__dict__.pop(APPLIED_ATTR, None)
    if applied is not None:
        policy.denoising.remove_run_listener(applied.on_run_start)
        remove_hooks(policy.model, CACHE_HOOK)
        if applied.config.compile:
            from diffusion_policy.acceleration.compile import remove_compile

            remove_compile(policy)


def cache_report(policy) -> dict:
    """What the applied cache did so far: mode parameters and block evaluations per block."""
    applied = applied_cache(policy)
    if applied is None:
        return {"mode": "original"}
    if not applied.block_hooks:
        return applied.config.describe()
    computed = {name: hook.num_computed for name, hook in applied.block_hooks.items()}
    return {**applied.config.describe(), "block_evaluations": computed}
