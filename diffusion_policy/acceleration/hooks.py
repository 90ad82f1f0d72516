"""Hooks on named modules, in the manner of diffusers' hooks (`ModelHook` + `HookRegistry`).

A `HookRegistry` lives on one module and wraps its `forward` once; hooks are registered on it by
name, several per module, and removed by name (the module's own forward comes back when the last
one goes). A hook's `forward(module, call_next, *args)` decides whether and how to call the next
hook in the chain (the innermost `call_next` is the module's own forward):

    registry = HookRegistry.of(policy.model.decoder.layers[0].ffn)
    registry.register("bac_cache", BlockCacheHook(state, update))     # later hooks wrap earlier ones
    registry.register("bac_record", RecordHook(state), innermost=True)  # sees only real computations
    registry.remove("bac_record")

Hooks that keep per-run state read the policy's `DenoisingState` (policy/denoising.py), which the
sampling loop sets: they act only inside a run (`state.active`), on the step index the loop gives,
and are reset by a run listener when a run starts. Outside a run (e.g. `policy.model(...)` called
by hand) every hook here passes the call through untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from diffusion_policy.model.diffusion.decoder import DecoderContext
from diffusion_policy.policy.denoising import DenoisingState

REGISTRY_ATTR = "_bac_hook_registry"


class ModelHook:
    """One behaviour on one module's forward. The default passes the call through."""

    def forward(self, module: torch.nn.Module, call_next: Callable, *args):
        return call_next(*args)

    def reset_state(self) -> None:
        """Forget per-run state (called when a denoising run starts)."""


class HookRegistry:
    """The hooks of one module, innermost first; `module.forward` runs the chain."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.hooks: dict[str, ModelHook] = {}
        self._own_forward = module.forward  # the class's bound forward

    @classmethod
    def of(cls, module: torch.nn.Module, create: bool = True) -> HookRegistry | None:
        registry = module.__dict__.get(REGISTRY_ATTR)
        if registry is None and create:
            registry = cls(module)
            module.__dict__[REGISTRY_ATTR] = registry
        return registry

    def register(self, name: str, hook: ModelHook, innermost: bool = False) -> ModelHook:
        if name in self.hooks:
            raise ValueError(f"{type(self.module).__name__} already has a hook named {name!r}; remove it first")
        items = list(self.hooks.items())
        self.hooks = dict([(name, hook), *items] if innermost else [*items, (name, hook)])
        self._rebuild()
        return hook

    def get(self, name: str) -> ModelHook | None:
        return self.hooks.get(name)

    def remove(self, name: str) -> None:
        if self.hooks.pop(name, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        if not self.hooks:  # back to the class's forward; the registry goes too
            self.module.__dict__.pop("forward", None)
            self.module.__dict__.pop(REGISTRY_ATTR, None)
            return
        call = self._own_forward
        for hook in self.hooks.values():  # built once here, so a call costs no closure creation
            call = functools.partial(hook.forward, self.module, call)
        self.module.__dict__["forward"] = call


def remove_hooks(root: torch.nn.Module, name: str) -> None:
    """Remove the hook `name` from every module under `root`."""
    for module in root.modules():
        registry = HookRegistry.of(module, create=False)
        if registry is not None:
            registry.remove(name)


def decoder_blocks(model) -> dict[str, torch.nn.Module]:
    """Stable names -> cacheable blocks: 'decoder.layers.{i}.{sa,ca,ffn}'."""
    if model.decoder is None:
        raise ValueError("block caching needs the decoder model (time_as_cond=True); this one is encoder-only")
    return {
        f"decoder.layers.{i}.{kind}": getattr(layer, kind)
        for i, layer in enumerate(model.decoder.layers)
        for kind in ("sa", "ca", "ffn")
    }


# ----------------------------------------------------------------------------- block caching
class BlockCacheHook(ModelHook):
    """Recompute a block on its update steps; between them answer from its last updates.

    order 0 ('reuse', BAC): the output of the last update step. order p >= 1 ('forecast'): the
    polynomial of degree p through the outputs of the last p + 1 update steps, evaluated at the
    current step (Lagrange extrapolation; until p + 1 updates exist, the last output is reused).
    The answer is kept as polynomial coefficients (c_0, ..., c_p) in u = step / num_steps -- reuse is
    (output,) -- so that the decoder plan can add several blocks' answers by adding coefficients.
    The timesteps of every shipped scheduler are affine in the step index, and an extrapolation is
    unchanged by an affine change of variable, so extrapolating in timestep gives the same values.
    """

    def __init__(self, state: DenoisingState, update: list[bool], order: int = 0,
                 forecast_after: list[bool] | None = None):
        self.state = state
        self.update = update  # update[step] for every denoising step; update[0] is True
        self.order = order
        # forecast_after[step]: whether the segment after update step `step` forecasts (default: all);
        # a schedule made for forecasting reuses where that was the smaller error
        self.forecast_after = forecast_after
        self.history: list[tuple[float, torch.Tensor]] = []  # (u, output) of the last order+1 updates
        self.coefficients: tuple[torch.Tensor, ...] = ()  # (c_0, ..., c_d), d <= order
        self.version = 0  # bumped at every recomputation (the decoder plan's memo key)
        self.num_computed = 0  # block evaluations since the hook was applied (for reports)

    def forward(self, module, call_next, x: torch.Tensor, ctx: DecoderContext) -> torch.Tensor:
        if not self.state.active:
            return call_next(x, ctx)
        if self.update[self.state.step]:
            output = call_next(x, ctx)
            self.store(output)
            return output
        return evaluate_polynomial(self.coefficients, self.position(self.state.step))

    def position(self, step: int) -> float:
        return step / len(self.update)

    def store(self, output: torch.Tensor) -> None:
        """Take `output` as the current step's recomputation (also from a step computed in one piece)."""
        self.version += 1
        self.num_computed += 1
        if self.order == 0:
            self.coefficients = (output,)
            return
        self.history = [*self.history[-self.order:], (self.position(self.state.step), output)]
        if len(self.history) <= self.order or (self.forecast_after is not None
                                                and not self.forecast_after[self.state.step]):
            self.coefficients = (output,)  # not enough history yet, or this segment reuses
        else:
            self.coefficients = fit_polynomial(self.history)

    def reset_state(self) -> None:
        self.history, self.coefficients = [], ()


def fit_polynomial(points: list[tuple[float, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Coefficients (c_0, ..., c_p) of the polynomial through p + 1 points (u_j, y_j), in powers of u."""
    weights = _inverse_vandermonde(tuple(p[0] for p in points))
    coefficients = []
    for row in weights:
        c = points[0][1] * row[0]
        for w, (_, y) in zip(row[1:], points[1:]):
            c = c + w * y
        coefficients.append(c)
    return tuple(coefficients)


@functools.lru_cache(maxsize=4096)
def _inverse_vandermonde(u: tuple[float, ...]) -> tuple[tuple[float, ...], ...]:
    """W with c = W y for the points u (float64 on the host; memoised: a static schedule has few)."""
    import numpy as np

    return tuple(tuple(float(w) for w in row) for row in np.linalg.inv(np.vander(np.array(u), increasing=True)))


def evaluate_polynomial(coefficients: tuple[torch.Tensor, ...], u: float) -> torch.Tensor:
    """c_0 + u c_1 + u^2 c_2 + ... by Horner (the value itself for one coefficient)."""
    value = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        value = torch.add(c, value, alpha=u)
    return value


class DecoderPlanHook(ModelHook):
    """Runs the decoder straight from the block schedules, so skipped blocks cost (almost) nothing.

    The residual stream after the decoder is `x + sum of block outputs`; a block that is not due
    contributes its cached output. At each step the blocks are walked in order (SA, CA, FFN of
    layer 0, then layer 1, ...): a due block is computed on the current stream (through its hook
    chain, so its BlockCacheHook stores the result), and each maximal run of cached blocks is added
    as ONE tensor, the sum of their cached outputs, kept until a block of the run recomputes. Same
    values as the block-by-block loop up to float rounding of the grouped sums.
    """

    def __init__(self, state: DenoisingState, blocks: list[torch.nn.Module], hooks: list[BlockCacheHook]):
        self.state = state
        self.blocks = blocks  # in execution order
        self.hooks = hooks
        num_steps = len(hooks[0].update)
        # plan[step]: ("compute", block index) and ("reuse", (first, last)) items, in order
        self.plan = [self._plan_step(step) for step in range(num_steps)]
        # "reuse" (no block computes), "full" (every block does) or "partial", per step
        computed = [sum(hook.update[step] for hook in hooks) for step in range(num_steps)]
        self.step_kind = ["reuse" if c == 0 else "full" if c == len(hooks) else "partial" for c in computed]
        self.run_sums: dict[tuple[int, int], tuple[tuple[int, ...], tuple[torch.Tensor, ...]]] = {}

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

    def reset_state(self) -> None:
        self.run_sums.clear()

    def _run_sum(self, first: int, last: int) -> torch.Tensor:
        """The sum of the answers of blocks first..last at the current step: their polynomial
        coefficients are summed degree by degree (memoised until one of them updates), then evaluated."""
        versions = tuple(hook.version for hook in self.hooks[first : last + 1])
        memo = self.run_sums.get((first, last))
        if memo is None or memo[0] != versions:
            totals: list[torch.Tensor] = []
            for hook in self.hooks[first : last + 1]:
                for degree, c in enumerate(hook.coefficients):
                    if degree < len(totals):
                        totals[degree] = totals[degree] + c
                    else:
                        totals.append(c)
            memo = (versions, tuple(totals))
            self.run_sums[(first, last)] = memo
        return evaluate_polynomial(memo[1], self.hooks[first].position(self.state.step))

    def reused_sum(self) -> torch.Tensor:
        """The sum of every block's cached output: the decoder's whole contribution on a reuse step."""
        return self._run_sum(0, len(self.hooks) - 1)

    def store_all(self, outputs) -> None:
        """Every block's output of a step computed in one piece (execution order)."""
        for hook, output in zip(self.hooks, outputs):
            hook.store(output)

    def forward(self, module, call_next, tgt, memory, tgt_mask=None, memory_mask=None) -> torch.Tensor:
        if not self.state.active:
            return call_next(tgt, memory, tgt_mask, memory_mask)
        ctx = DecoderContext(memory, tgt_mask, memory_mask)
        x = tgt
        for action, item in self.plan[self.state.step]:
            if action == "compute":
                x = x + self.blocks[item].forward(x, ctx)  # the block's hook chain, without Module.__call__
            else:
                x = x + self._run_sum(*item)
        return x


def reuse_forward(model, sample: torch.Tensor, reused: torch.Tensor) -> torch.Tensor:
    """The model's output on a step where every block is reused: (B, T, Da), (B, T, E) -> (B, T, Da).
    The condition tokens only feed blocks, so they are not computed at all."""
    return model._output_head(model._action_tokens(sample) + reused)


class StepPlanHook(ModelHook):
    """On the model: runs a step whose plan is all reuse without the condition encoder or the decoder
    (`reuse_fn(model, sample, reused_sum)`), and, given `full_fn(model, sample, t, cond) -> (out, block
    outputs)` (a compiled straight-line step), a step where every block recomputes in one call that
    refills every cache. Other steps go the usual way (the decoder plan). Values as the decoder plan's."""

    def __init__(self, state: DenoisingState, plan: DecoderPlanHook, reuse_fn: Callable = reuse_forward,
                 full_fn: Callable | None = None):
        self.state = state
        self.plan = plan
        self.reuse_fn = reuse_fn
        self.full_fn = full_fn

    def forward(self, module, call_next, sample, timestep, cond=None, **kwargs):
        if not self.state.active or kwargs:
            return call_next(sample, timestep, cond, **kwargs)
        kind = self.plan.step_kind[self.state.step]
        if kind == "reuse":
            return self.reuse_fn(module, sample, self.plan.reused_sum())
        if kind == "full" and self.full_fn is not None:
            out, outputs = self.full_fn(module, sample, timestep, cond)
            self.plan.store_all(outputs)
            return out
        return call_next(sample, timestep, cond)


# ----------------------------------------------------------------------------- lossless reuse
class RunConstantHook(ModelHook):
    """A call whose inputs do not change within a denoising run (the obs tokens): computed once."""

    def __init__(self, state: DenoisingState):
        self.state = state
        self.value = None

    def forward(self, module, call_next, *args):
        if not self.state.active:
            return call_next(*args)
        if self.value is None:
            self.value = call_next(*args)
        return self.value

    def reset_state(self) -> None:
        self.value = None


class TimeTokenTableHook(ModelHook):
    """The time token of every step of a run, computed in one batched call when the run starts.

    Looked up by the step index the sampling loop gives, so no device-to-host sync per step. The
    encoder is token-wise: the batched call gives each token the values a per-step call would, up
    to float rounding."""

    def __init__(self, state: DenoisingState):
        self.state = state
        self.table: torch.Tensor | None = None  # (N, 1, E)

    def forward(self, module, call_next, timesteps: torch.Tensor) -> torch.Tensor:
        state = self.state
        if not state.active or state.timesteps is None or state.step >= state.num_steps:
            return call_next(timesteps)
        if self.table is None:
            self.table = call_next(state.timesteps.to(timesteps.device))
        return self.table[state.step : state.step + 1].expand(timesteps.shape[0], -1, -1)

    def reset_state(self) -> None:
        self.table = None


class ObsKeyValueHook(ModelHook):
    """Cross-attention keys/values of memory = [time token | obs tokens]: the obs rows' are constant
    within a run, so they are computed once; the time row's every step (the projection is row-wise)."""

    def __init__(self, state: DenoisingState):
        self.state = state
        self.obs_kv: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, module, call_next, memory: torch.Tensor):
        if not self.state.active:
            return call_next(memory)
        if self.obs_kv is None:
            self.obs_kv = call_next(memory[:, 1:])
        k_obs, v_obs = self.obs_kv
        k_time, v_time = call_next(memory[:, :1])
        return torch.cat([k_time, k_obs], dim=1), torch.cat([v_time, v_obs], dim=1)

    def reset_state(self) -> None:
        self.obs_kv = None


# ----------------------------------------------------------------------------- recording
class RecordHook(ModelHook):
    """Keeps (step, output) of every call inside a run; registered innermost, it sees exactly what
    the block really computes (a cache outside it answers reused steps without calling it)."""

    def __init__(self, state: DenoisingState):
        self.state = state
        self.records: list[tuple[int, torch.Tensor]] = []

    def forward(self, module, call_next, *args):
        out = call_next(*args)
        if self.state.active:
            self.records.append((self.state.step, out.detach().to("cpu", torch.float32)))
        return out
