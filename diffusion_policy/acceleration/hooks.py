"""Hooks that make a loaded policy reuse block outputs across denoising steps.

In the manner of diffusers' cache hooks: nothing in the model's code changes. `apply_cache` swaps a
few bound methods on named modules for hook methods (recorded in a registry on the policy so that
`remove_cache` puts everything back), all hooks share one `SamplingState`, and that state is reset
at the start of every sampling run (each `predict_action`).

    policy.conditional_sample   -> reset the step counter and per-run caches
    policy.model.forward        -> one denoising step: advance the step counter afterwards
    decoder.layers.{i}.{sa,ca,ffn}.forward
                                -> recompute on the block's update steps, else return the cached output
    policy.model.decoder.forward
                                -> the same schedule, executed without per-block dispatch: due blocks
                                   are computed, each run of cached blocks is added as one sum
    policy.model.embed_time_token / embed_obs_tokens, decoder.layers.{i}.memory_kv
                                -> lossless: within one run the obs tokens (and their cross-attention
                                   keys/values) never change, and the time tokens of every step are
                                   known up front, so each is computed once per run
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from diffusion_policy.model.diffusion.decoder import DecoderContext

REGISTRY_ATTR = "_bac_hooks"


class SamplingState:
    """Denoising-step counter shared by all hooks of one policy."""

    def __init__(self) -> None:
        self.step = 0
        self.run_resets: list[Callable[[], None]] = []  # per-run caches to clear

    def start_run(self) -> None:
        self.step = 0
        for reset in self.run_resets:
            reset()


class HookRegistry:
    """Instance-level method overrides on modules, undone in reverse order by `remove`."""

    def __init__(self, state: SamplingState, description: dict):
        self.state = state
        self.description = description  # what was applied (for logs / result files)
        self.hooks: dict[str, Any] = {}  # name -> hook object (block caches, recorders, ...)
        self._overrides: list[tuple[Any, str]] = []

    def override(self, obj: Any, method: str, wrap: Callable[[Callable], Callable]) -> Callable:
        """Replace `obj.method` (for this object only) by `wrap(original_bound_method)`."""
        if method in obj.__dict__:
            raise RuntimeError(f"{type(obj).__name__}.{method} is already overridden")
        replacement = wrap(getattr(obj, method))
        obj.__dict__[method] = replacement
        self._overrides.append((obj, method))
        return replacement

    def remove(self) -> None:
        for obj, method in reversed(self._overrides):
            del obj.__dict__[method]
        self._overrides.clear()


def get_registry(policy) -> HookRegistry | None:
    return policy.__dict__.get(REGISTRY_ATTR)


def install_registry(policy, description: dict) -> HookRegistry:
    """Attach a fresh registry with step counting and per-run reset (removing any previous one).

    The registry is valid for the policy's current `num_inference_steps`.
    """
    num_steps = policy.num_inference_steps
    remove_registry(policy)
    state = SamplingState()
    registry = HookRegistry(state, description)

    def start_run(sample):
        def conditional_sample(*args, **kwargs):
            if policy.num_inference_steps != num_steps:
                raise ValueError(
                    f"the cache was applied for {num_steps} denoising steps but the policy now runs "
                    f"{policy.num_inference_steps}; call apply_cache again after changing num_inference_steps"
                )
            state.start_run()
            return sample(*args, **kwargs)

        return conditional_sample

    def count_steps(forward):
        def counted_forward(*args, **kwargs):
            out = forward(*args, **kwargs)
            state.step += 1
            return out

        return counted_forward

    registry.override(policy, "conditional_sample", start_run)
    registry.override(policy.model, "forward", count_steps)
    policy.__dict__[REGISTRY_ATTR] = registry
    return registry


def remove_registry(policy) -> None:
    registry = policy.__dict__.pop(REGISTRY_ATTR, None)
    if registry is not None:
        registry.remove()


def decoder_blocks(model) -> dict[str, torch.nn.Module]:
    """Stable names -> cacheable blocks: 'decoder.layers.{i}.{sa,ca,ffn}'."""
    if model.decoder is None:
        raise ValueError("block caching needs the decoder model (time_as_cond=True); this one is encoder-only")
    return {
        f"decoder.layers.{i}.{kind}": getattr(layer, kind)
        for i, layer in enumerate(model.decoder.layers)
        for kind in ("sa", "ca", "ffn")
    }


class BlockCacheHook:
    """Recompute a block on its update steps; otherwise return its output from the last update."""

    def __init__(self, original_forward: Callable, update: list[bool], state: SamplingState):
        self.original_forward = original_forward
        self.update = update  # update[step] for every denoising step; update[0] is True
        self.state = state
        self.cached: torch.Tensor | None = None
        self.num_computed = 0  # block evaluations since the hook was applied (for reports)

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
        if self.update[self.state.step]:
            self.compute(x, ctx)
        return self.cached

    def compute(self, x: torch.Tensor, ctx) -> torch.Tensor:
        self.cached = self.original_forward(x, ctx)
        self.num_computed += 1
        return self.cached

    def reset(self) -> None:
        self.cached = None


class DecoderPlanHook:
    """Runs the decoder straight from the block schedules, so skipped blocks cost (almost) nothing.

    The residual stream after the decoder is `x + sum of block outputs`; a block that is not due
    contributes its cached output. At each step the blocks are walked in order (SA, CA, FFN of
    layer 0, then layer 1, ...): a due block is computed on the current stream, and each maximal run
    of cached blocks is added as ONE tensor, the sum of their cached outputs, which is itself kept
    until a block of the run recomputes. Same values as the block-by-block loop up to float
    rounding of the grouped sums; the per-block hooks stay in place and share the cached outputs.
    """

    def __init__(self, state: SamplingState, hooks: list[BlockCacheHook], num_steps: int):
        self.state = state
        self.hooks = hooks  # in execution order
        # plan[step]: ("compute", block index) and ("reuse", (first, last)) items, in order
        self.plan = [self._plan_step(step) for step in range(num_steps)]
        self.versions = [0] * len(hooks)  # bumped whenever a block recomputes
        self.run_sums: dict[tuple[int, int], tuple[tuple[int, ...], torch.Tensor]] = {}

    def _plan_step(self, step: int) -> list[tuple[str, object]]:
        plan, run_start = [], None
        for i, hook in enumerate(self.hooks):
            if hook.update[step]:
                if run_start is not None:
                    plan.append(("reuse", (run_start, i - 1)))
                    run_start = None
                plan.append(("compute", i))
            elif run_start is None:
                run_start = i
        if run_start is not None:
            plan.append(("reuse", (run_start, len(self.hooks) - 1)))
        return plan

    def reset(self) -> None:
        self.run_sums.clear()

    def _run_sum(self, first: int, last: int) -> torch.Tensor:
        versions = tuple(self.versions[first : last + 1])
        memo = self.run_sums.get((first, last))
        if memo is None or memo[0] != versions:
            total = self.hooks[first].cached
            for hook in self.hooks[first + 1 : last + 1]:
                total = total + hook.cached
            memo = (versions, total)
            self.run_sums[(first, last)] = memo
        return memo[1]

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, tgt_mask=None, memory_mask=None) -> torch.Tensor:
        ctx = DecoderContext(memory, tgt_mask, memory_mask)
        x = tgt
        for action, item in self.plan[self.state.step]:
            if action == "compute":
                x = x + self.hooks[item].compute(x, ctx)
                self.versions[item] += 1
            else:
                x = x + self._run_sum(*item)
        return x


class ConditionCacheHook:
    """Lossless reuse of what one sampling run keeps constant: obs tokens, their K/V, time tokens."""

    def __init__(self, registry: HookRegistry, policy):
        model = policy.model
        self.state = registry.state
        self.scheduler = policy.noise_scheduler
        self._embed_time = model.embed_time_token  # the model's own (bound) methods
        self._embed_obs = model.embed_obs_tokens
        registry.override(model, "embed_time_token", lambda _: self.embed_time)
        registry.override(model, "embed_obs_tokens", lambda _: self.embed_obs)
        for i, layer in enumerate(model.decoder.layers):
            registry.override(layer, "memory_kv", lambda original, i=i: self._make_memory_kv(i, original))
        self.reset()
        registry.state.run_resets.append(self.reset)

    def reset(self) -> None:
        self.time_tokens: torch.Tensor | None = None  # (N, 1, E), one per denoising step
        self.obs_tokens: torch.Tensor | None = None  # (B, To, E)
        self.obs_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def embed_time(self, timesteps: torch.Tensor) -> torch.Tensor:
        # Step i of a sampling run denoises at scheduler.timesteps[i] (the sampling loop iterates
        # them in order), so the token is looked up by step index: no device-to-host sync per step.
        step = self.state.step
        if self.time_tokens is None:
            # All steps' time tokens in one batched pass (token-wise encoder: same values).
            self.time_tokens = self._embed_time(self.scheduler.timesteps.to(timesteps.device))  # (N, 1, E)
        if step >= self.time_tokens.shape[0]:
            return self._embed_time(timesteps)  # beyond the scheduler's steps: compute
        return self.time_tokens[step : step + 1].expand(timesteps.shape[0], -1, -1)

    def embed_obs(self, cond: torch.Tensor) -> torch.Tensor:
        if self.obs_tokens is None:
            self.obs_tokens = self._embed_obs(cond)
        return self.obs_tokens

    def _make_memory_kv(self, layer_index: int, original: Callable) -> Callable:
        def memory_kv(memory: torch.Tensor):
            # memory = [time token | obs tokens]; the obs rows' keys/values are constant in a run.
            if layer_index not in self.obs_kv:
                self.obs_kv[layer_index] = original(memory[:, 1:])
            k_obs, v_obs = self.obs_kv[layer_index]
            k_time, v_time = original(memory[:, :1])
            return torch.cat([k_time, k_obs], dim=1), torch.cat([v_time, v_obs], dim=1)

        return memory_kv
