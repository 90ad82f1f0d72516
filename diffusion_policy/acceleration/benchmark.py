"""Measure what a cache buys: latency, FLOPs and action error against the uncached policy.

Every mode runs on its own copy of the policy and the copies are called round-robin, so the
ratios compare calls made under the same machine load. Latency is the median over repeats,
after warm-up, with CUDA synchronised before the clock stops.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffusion_policy.acceleration import CacheConfig, apply_cache, update_steps_for
from diffusion_policy.common.timing import p90


@dataclass
class ModeResult:
    label: str
    config: dict
    latencies_s: list[float] = field(default_factory=list)
    flops: int = 0
    block_evaluations: int = 0  # decoder block evaluations per predict_action (all blocks)
    action_rel_error: float = 0.0  # ||a - a_original|| / ||a_original|| on action_pred, same noise
    first_call_s: float = 0.0  # the first predict_action (a compiled mode compiles in it)

    @property
    def compile_s(self) -> float:
        """Compilation time: the first call minus a steady-state call (0 for an eager mode)."""
        return max(self.first_call_s - self.median_s, 0.0) if "compile" in self.config else 0.0

    @property
    def median_s(self) -> float:
        return statistics.median(self.latencies_s)

    @property
    def p90_s(self) -> float:
        return p90(self.latencies_s)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def timed_predict_action(policy, obs: dict, generator: torch.Generator | None = None) -> tuple[dict, float]:
    """One predict_action and its wall time in seconds (synchronised on GPU)."""
    _synchronize(policy.device)
    start = time.perf_counter()
    out = policy.predict_action(obs, generator=generator)
    _synchronize(policy.device)
    return out, time.perf_counter() - start


@torch.no_grad()
def count_flops(policy, obs: dict) -> int:
    """FLOPs of one predict_action, counting only the work actually executed."""
    with FlopCounterMode(display=False) as counter:
        policy.predict_action(obs)
    return int(counter.get_total_flops())


def with_torch_decoder(policy):
    """A copy of `policy` whose decoder is torch.nn.TransformerDecoder with the same weights, as in
    the original implementation (the state_dict keys are the same)."""
    reference = copy.deepcopy(policy)
    layer = reference.model.decoder.layers[0]
    d_model, n_head = layer.self_attn.embed_dim, layer.self_attn.num_heads
    torch_layer = torch.nn.TransformerDecoderLayer(
        d_model, n_head, layer.linear1.out_features, dropout=layer.dropout.p, activation="gelu",
        batch_first=True, norm_first=True)
    decoder = torch.nn.TransformerDecoder(torch_layer, num_layers=len(reference.model.decoder.layers))
    decoder.load_state_dict(reference.model.decoder.state_dict())
    reference.model.decoder = decoder.to(policy.device).eval()
    return reference


def _eager_twin(policy, config: CacheConfig):
    """A copy of `policy` with `config` applied eagerly (FLOPs are counted by dispatch, not in graphs)."""
    twin = copy.deepcopy(policy)
    apply_cache(twin, dataclasses.replace(config, compile=False))
    return twin


def _generator(policy, seed: int) -> torch.Generator:
    return torch.Generator(device=policy.device).manual_seed(seed)


def compare_modes(
    policy,
    obs: dict,
    configs: dict[str, CacheConfig],
    repeats: int = 20,
    warmup: int = 3,
    seed: int = 0,
    torch_reference: bool = False,
) -> dict[str, ModeResult]:
    """Benchmark `configs` (label -> CacheConfig; must include an 'original' mode) on one observation.

    `torch_reference` adds the uncached policy with its decoder run by `torch.nn.TransformerDecoder`
    (same weights): the original Diffusion Policy's computation, as the speed reference.
    """
    if not any(c.mode == "original" for c in configs.values()):
        raise ValueError("compare_modes needs an 'original' config as the baseline")
    if not any(c.mode == "original" and not c.compile for c in configs.values()):
        raise ValueError("compare_modes needs an eager 'original' config: the baseline of every speedup")
    policies, results = {}, {}
    for label, config in configs.items():
        mode_policy = copy.deepcopy(policy)
        apply_cache(mode_policy, config)
        policies[label] = mode_policy
        results[label] = ModeResult(label, config.describe())
    if torch_reference:
        label = "original (torch decoder)"
        policies[label] = with_torch_decoder(policy)
        results[label] = ModeResult(label, {"mode": "original", "decoder": "torch.nn.TransformerDecoder"})
        configs = {**configs, label: CacheConfig("original")}

    # Action error under the same noise, FLOPs and block evaluations of one call.
    reference_label = next(label for label, c in configs.items() if c.mode == "original" and not c.compile)
    actions = {}
    for label, mode_policy in policies.items():
        out, results[label].first_call_s = timed_predict_action(mode_policy, obs, _generator(mode_policy, seed))
        actions[label] = out["action_pred"]
        results[label].flops = count_flops(_eager_twin(policy, configs[label]) if configs[label].compile else mode_policy,
                                           obs)  # a compiled mode executes the same operations
        steps = update_steps_for(policy, configs[label])  # the reference row counts as original
        results[label].block_evaluations = sum(len(s) for s in steps.values())
    reference = actions[reference_label]
    for label, action in actions.items():
        results[label].action_rel_error = float((action - reference).norm() / reference.norm().clamp_min(1e-12))

    for i in range(warmup + repeats):
        for label, mode_policy in policies.items():
            _, seconds = timed_predict_action(mode_policy, obs)
            if i >= warmup:
                results[label].latencies_s.append(seconds)
    return results


def summarize(results: dict[str, ModeResult], n_action_steps: int) -> list[dict]:
    """Rows with latency, speedup vs the original in the same run, FLOPs ratio, Hz, action error."""
    baseline = next(r for r in results.values() if r.config["mode"] == "original" and "compile" not in r.config)
    rows = []
    for r in results.values():
        rows.append({
            "label": r.label,
            **r.config,
            "latency_median_ms": r.median_s * 1e3,
            "latency_p90_ms": r.p90_s * 1e3,
            "speedup": baseline.median_s / r.median_s,
            "flops": r.flops,
            "flops_ratio": baseline.flops / r.flops if r.flops else float("nan"),
            "block_evaluations": r.block_evaluations,
            "action_hz": n_action_steps / r.median_s,
            "action_rel_error": r.action_rel_error,
            "n_repeats": len(r.latencies_s),
            "compile_s": r.compile_s,
        })
    return rows
