"""Which blocks' caching moves the actions: a per-block sensitivity study of one cache setting.

For a cache setting (threshold or optimal) and a few observations, the relative action error against the
uncached policy (same observation, same sampling noise) of:
  all cached   every block on the setting's schedule;
  alone        only this block on its schedule, every other block recomputing at every step;
  spared       every block on its schedule except this one, which recomputes at every step
               (`CacheConfig.recompute_blocks`: what recomputing it buys back).
The similarity-based caching error the schedules rank blocks by (block_errors) measures how much a block's
output drifts; this measures what that drift does to the actions, which is what a rollout sees.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import tqdm

from diffusion_policy.acceleration import CacheConfig, apply_cache
from diffusion_policy.acceleration.config import describe_text, short_block_name
from diffusion_policy.acceleration.hooks import decoder_blocks


@dataclass
class BlockSensitivity:
    block: str  # e.g. "decoder.layers.0.ffn"
    alone: float  # relative action error, only this block cached
    spared: float  # relative action error, every block cached but this one
    update_steps: int  # this block's update steps under the setting


@dataclass
class SensitivityReport:
    cache: dict  # CacheConfig.describe() of the setting studied
    all_cached: float  # relative action error, every block cached
    blocks: list[BlockSensitivity]
    observations: int
    seeds: list[int]
    block_errors: dict[str, float] = field(default_factory=dict)  # the schedule's caching errors, if any

    def ranked(self) -> list[BlockSensitivity]:
        """Blocks by what recomputing them buys back (all_cached - spared), largest first."""
        return sorted(self.blocks, key=lambda b: self.all_cached - b.spared, reverse=True)


def relative_error(actions: torch.Tensor, reference: torch.Tensor) -> float:
    """||a - a_ref|| / ||a_ref||."""
    return float((actions - reference).norm() / reference.norm().clamp_min(1e-12))


def relative_action_error(policy, observations: Sequence[dict], references: Sequence[torch.Tensor],
                          seeds: Sequence[int]) -> float:
    """Mean over observations and seeds of relative_error (action_pred, same sampling noise)."""
    return float(np.mean([relative_error(sample_actions(policy, obs, seed), ref)
                          for obs, seed_refs in zip(observations, references)
                          for seed, ref in zip(seeds, seed_refs)]))


def sample_actions(policy, obs: dict, seed: int) -> torch.Tensor:
    """The policy's action_pred for obs with the sampling noise of `seed`: (B, T, Da)."""
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    with torch.no_grad():
        return policy.predict_action(obs, generator=generator)["action_pred"]


def block_sensitivity(policy, observations: Sequence[dict], config: CacheConfig, seeds: Sequence[int] = (0,),
                      blocks: Optional[Sequence[str]] = None,
                      progress: Callable = tqdm.tqdm) -> SensitivityReport:
    """The sensitivity study of `config` on `observations` (see the module docstring); `blocks`: the blocks
    to study (default every decoder block). Leaves the policy uncached."""
    if config.mode == "original":
        raise ValueError("the sensitivity study needs a caching setting: --cache_mode threshold or optimal")
    if config.recompute_blocks:
        raise ValueError("the sensitivity study sets recompute_blocks itself; pass the setting without it")
    from diffusion_policy.acceleration.apply import update_steps_for

    names = list(decoder_blocks(policy.model))
    studied = list(blocks) if blocks else names
    unknown = [name for name in studied if name not in names]
    if unknown:
        raise ValueError(f"no block {', '.join(unknown)} in this model (decoder.layers.<i>.sa|ca|ffn)")
    steps = update_steps_for(policy, config)  # also checks the schedule against the model, up front
    apply_cache(policy, CacheConfig("original"))
    references = [[sample_actions(policy, obs, seed) for seed in seeds] for obs in observations]

    def error_with(recomputed: Sequence[str]) -> float:
        apply_cache(policy, dataclasses.replace(config, recompute_blocks=tuple(recomputed)))
        try:
            return relative_action_error(policy, observations, references, seeds)
        finally:
            apply_cache(policy, CacheConfig("original"))

    all_cached = error_with(())
    results = []
    for name in progress(studied, desc="blocks", unit="block"):
        alone = error_with([other for other in names if other != name])
        spared = error_with([name])
        results.append(BlockSensitivity(name, alone, spared, len(steps[name])))
    block_errors = {}
    if config.mode == "optimal":
        from diffusion_policy.activation_utils.schedule_files import load_schedule

        schedule = load_schedule(config.optimal_steps_dir, config.metric, int(config.num_caches), config.strategy)
        block_errors = {name: float(schedule.block_errors[name]) for name in studied}
    return SensitivityReport(config.describe(), all_cached, results, len(observations), list(seeds), block_errors)


def plot_sensitivity(report: SensitivityReport, path) -> None:
    """Bars per block: action error with only it cached, and what sparing it buys back; the error with
    everything cached as a line; the schedule's caching error (if known) on a second axis."""
    from matplotlib.figure import Figure

    from diffusion_policy.common.files import write_atomic

    names = [short_block_name(b.block) for b in report.blocks]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(8.0, 0.45 * len(names) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    ax.bar(x - 0.2, [b.alone for b in report.blocks], 0.4, label="only this block cached", color="C0")
    ax.bar(x + 0.2, [report.all_cached - b.spared for b in report.blocks], 0.4,
           label="error removed by recomputing it (all cached - spared)", color="C3")
    ax.axhline(report.all_cached, color="gray", linewidth=0.8, linestyle="--", label="every block cached")
    ax.set_ylabel("relative action error")
    ax.set_xticks(x, names, rotation=70, fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    if report.block_errors:
        twin = ax.twinx()
        twin.plot(x, [report.block_errors.get(b.block, np.nan) for b in report.blocks], "k.", label="caching error")
        twin.set_ylabel("schedule caching error (black dots)")
    ax.legend(fontsize="small", loc="upper right")
    ax.set_title(f"block sensitivity: {describe_text(report.cache)}, {report.observations} obs x {len(report.seeds)} seeds")
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))

