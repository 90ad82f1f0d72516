"""`torch.compile` of a policy's denoising step: a few coarse graphs, whatever the schedule.

A compiled call costs a fixed ~20 us on CPU (guards, wrapper) however small its graph, so the step is
compiled in as few pieces as possible, each one function compiled once for the whole process (the
model is an argument: dynamo's inlined nn.Modules make its parameters graph inputs, so every policy
copy and every cache mode share the graphs of a given shape):

    uncached ('original')  TransformerForDiffusion.forward            one call per step
    a step that reuses     reuse_forward (action tokens + the sum of   one call (no condition encoder,
      every block            cached outputs -> output head)             no decoder)
    a step that refreshes  TransformerForDiffusion.forward_all_blocks  one call, refills every cache
      every block
    any other step         eager, block by block (the decoder plan)
    every step             policy.scheduler_update: the fused update,  one call
                             its per-step scalars a tensor row

So a static schedule gives at most five graphs per batch size (reuse, full, update with and without
noise, plus forward when uncached): threshold mode compiles all of its steps, optimal mode its reuse
and full steps (about half of them at num_caches 5) and runs the rest as before.

On CUDA the mode defaults to "reduce-overhead" (CUDA graphs); the outputs of a graph are then cloned
before they leave the hook, since the next replay reuses their memory and block caches keep them
across steps. Where the compiler is unavailable (dynamo unsupported, no C++ compiler for CPU
inductor) or a compilation fails, one warning line is printed and the step runs eagerly.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import Optional

import torch

from diffusion_policy.acceleration.hooks import HookRegistry, ModelHook, remove_hooks

COMPILE_HOOK = "bac_compile"

_COMPILED: dict[tuple[Callable, Optional[str]], Callable] = {}  # (function, mode) -> compiled (one per process)
_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"warning: {message}", file=sys.stderr)


def default_compile_mode(device: torch.device) -> Optional[str]:
    """'reduce-overhead' (CUDA graphs) on CUDA; inductor's default elsewhere."""
    return "reduce-overhead" if torch.device(device).type == "cuda" else None


def compiler_unavailable(device: torch.device) -> Optional[str]:
    """Why torch.compile cannot run on `device` here, or None when it can."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile does not support Python {sys.version.split()[0]} with torch {torch.__version__}"
    if torch.device(device).type == "cpu":
        import torch._inductor.config as inductor_config

        candidates = inductor_config.cpp.cxx
        names = [c for c in (candidates if isinstance(candidates, (tuple, list)) else (candidates,)) if c]
        if not any(shutil.which(name) for name in names):
            return f"no C++ compiler for inductor's CPU code ({', '.join(names)}; e.g. apt-get install g++)"
    return None


class _CompiledFunction:
    """`fn` compiled with `mode`; on a compilation error, one warning and eager calls from then on."""

    def __init__(self, fn: Callable, mode: Optional[str]):
        self.fn = fn
        self.mode = mode
        self.compiled = torch.compile(fn, mode=mode, dynamic=False)
        self.failed = False

    def __call__(self, *args):
        if self.failed:
            return self.fn(*args)
        try:
            return self.compiled(*args)
        except Exception as err:  # noqa: BLE001 -- any compiler failure: fall back, say so once
            if not _is_compiler_error(err):
                raise
            self.failed = True
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            _warn_once(f"torch.compile failed for {self.fn.__qualname__} ({first_line[:160]}); running it eagerly")
            return self.fn(*args)


def _is_compiler_error(err: Exception) -> bool:
    module = type(err).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or type(err).__name__ in (
        "BackendCompilerFailed", "InductorError", "CppCompileError")


def compiled(fn: Callable, mode: Optional[str]) -> _CompiledFunction:
    """The process-wide compiled version of `fn` (so every user shares its graphs)."""
    key = (fn, mode)
    if key not in _COMPILED:
        _COMPILED[key] = _CompiledFunction(fn, mode)
    return _COMPILED[key]


def _cloned_if(out, clone: bool):
    """`out` (a tensor or a tuple of them), cloned when `clone` (a CUDA graph output outlives its replay)."""
    if not clone:
        return out
    if isinstance(out, tuple):
        return tuple(t.clone() for t in out)
    return out.clone()


class CompiledForwardHook(ModelHook):
    """On the model of an uncached policy: the whole forward as one compiled call per step."""

    def __init__(self, mode: Optional[str]):
        from diffusion_policy.model.diffusion.transformer_for_diffusion import TransformerForDiffusion

        self.compiled = compiled(TransformerForDiffusion.forward, mode)
        self.clone = mode == "reduce-overhead"

    def forward(self, module, call_next, sample, timestep, cond=None, **kwargs):
        if kwargs:
            return call_next(sample, timestep, cond, **kwargs)
        return _cloned_if(self.compiled(module, sample, timestep, cond), self.clone)


def step_functions(mode: Optional[str]) -> tuple[Callable, Callable]:
    """(reuse_fn, full_fn) for StepPlanHook: the compiled reuse step and all-blocks step."""
    from diffusion_policy.acceleration.hooks import reuse_forward
    from diffusion_policy.model.diffusion.transformer_for_diffusion import TransformerForDiffusion

    reuse, full = compiled(reuse_forward, mode), compiled(TransformerForDiffusion.forward_all_blocks, mode)
    if mode != "reduce-overhead":
        return reuse, full

    def reuse_cloned(*args):
        return reuse(*args).clone()

    def full_cloned(*args):
        out, outputs = full(*args)
        return out.clone(), _cloned_if(outputs, True)

    return reuse_cloned, full_cloned


class CompiledSchedulerUpdateHook(ModelHook):
    """The fused scheduler update compiled once for every step: its per-step scalars are a row of a
    (N, 6) device table, made when the coefficients change (Python floats would be graph constants: a graph per step)."""

    def __init__(self, mode: Optional[str]):
        from diffusion_policy.policy.fused_step import fused_update

        self.compiled = compiled(fused_update, mode)
        self.clone = mode == "reduce-overhead"
        self._table: tuple | None = None  # (FusedStep, device, dtype, its (N, 6) table on that device)

    def forward(self, module, call_next, fused_step, index: int, model_output, sample, noise):
        table = self._table
        if table is None or table[1:3] != (model_output.device, model_output.dtype) or (
                table[0] is not fused_step and table[0] != fused_step):
            # a new run with other coefficients (with the same ones the device table is kept: no copy)
            table = (fused_step, model_output.device, model_output.dtype,
                     fused_step.table(model_output.device, model_output.dtype))
            self._table = table
        out = self.compiled(table[3][index], model_output, sample, noise,
                            fused_step.kind, fused_step.prediction_type, fused_step.clip)
        return _cloned_if(out, self.clone)


class StepMarkHook(ModelHook):
    """CUDA graphs: tell the compiler a new denoising step begins (outputs of the last are done with)."""

    def forward(self, module, call_next, *args, **kwargs):
        torch.compiler.cudagraph_mark_step_begin()
        return call_next(*args, **kwargs)


def resolve_mode(policy, mode: Optional[str]) -> tuple[Optional[str], bool]:
    """(torch.compile mode, whether compiling is possible here); warns once when it is not."""
    if mode == "auto":
        mode = default_compile_mode(policy.device)
    elif mode == "default":
        mode = None
    reason = compiler_unavailable(policy.device)
    if reason is not None:
        _warn_once(f"--compile ignored: {reason}; running eagerly")
    return mode, reason is None


def apply_compile(policy, mode: Optional[str], whole_forward: bool) -> list[ModelHook]:
    """Register compile hooks (named 'bac_compile') on the scheduler update and, with `whole_forward`
    (an uncached policy), on the model. Returns the hooks that keep per-run state. A cached policy's
    compiled steps are StepPlanHook's functions (`step_functions`)."""
    remove_compile(policy)
    HookRegistry.of(policy.scheduler_update).register(COMPILE_HOOK, CompiledSchedulerUpdateHook(mode), innermost=True)
    if whole_forward and policy.model.decoder is not None:
        HookRegistry.of(policy.model).register(COMPILE_HOOK, CompiledForwardHook(mode), innermost=True)
    if mode == "reduce-overhead":
        HookRegistry.of(policy.model).register(COMPILE_HOOK + "_step_mark", StepMarkHook())
    return []


def remove_compile(policy) -> None:
    remove_hooks(policy, COMPILE_HOOK)
    remove_hooks(policy, COMPILE_HOOK + "_step_mark")
