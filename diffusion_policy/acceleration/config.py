"""CacheConfig: how `apply_cache` accelerates a policy (the CLI flags map onto it one to one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

CACHE_MODES = ("original", "threshold", "optimal")
STRATEGIES = ("reuse", "forecast")
COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class CacheConfig:
    """Block-caching settings.

    mode:              'original' (no caching), 'threshold' (every block recomputes when
                       step % cache_threshold == 0) or 'optimal' (per-block BAC schedules from files).
    cache_threshold:   update period of 'threshold' mode.
    optimal_steps_dir: directory written by get_optimal_cache_update_steps.py (the task dir,
                       its optimal_steps/ or optimal_steps/<metric>/).
    metric:            similarity metric the schedule was computed with.
    num_caches:        update steps per block chosen by the Adaptive Caching Scheduler.
    num_bu_blocks:     blocks refreshed by Bubbling Union (0 = ACS alone).
    reuse_condition:   also compute once per sampling run what is exactly constant in it (obs
                       condition tokens and their cross-attention keys/values, every step's time
                       token). Lossless up to float rounding; off only for bit-exactness checks.
    fuse_cached_blocks: run the decoder straight from the schedules, adding each run of cached
                       blocks as one precomputed sum (float rounding only); off for bit-exact replay.
    allow_foreign_schedule: use an 'optimal' schedule computed for other weights than the policy's
                       (refused by default: its update steps were chosen for another model).
    strategy:          what a block answers between its update steps: 'reuse' (BAC: the output of
                       its last update) or 'forecast' (the polynomial through its last
                       forecast_order + 1 update outputs, evaluated at the step). 'optimal' mode reads
                       the schedules made for the strategy (forecast: get_optimal_cache_update_steps.py
                       --strategy forecast) and refuses the other's.
    forecast_order:    1 (linear) or 2 (quadratic) extrapolation; 'forecast' only.
    compile:           torch.compile the per-step work (acceleration/compile.py), in every mode,
                       'original' included; a bounded set of graphs whatever the schedule.
    compile_mode:      'auto' (reduce-overhead = CUDA graphs on CUDA, inductor's default on CPU) or a
                       torch.compile mode ('default', 'reduce-overhead', 'max-autotune').
    recompute_blocks:  blocks (names as in the schedules, e.g. 'decoder.layers.0.ffn') that recompute at
                       every step whatever the mode says: keep the blocks a task is sensitive to exact
                       (see bac-sensitivity) while the rest stay cached.
    """

    mode: str = "original"
    cache_threshold: int = 5
    optimal_steps_dir: Optional[str] = None
    metric: str = "cosine"
    num_caches: int = 5
    num_bu_blocks: int = 0
    reuse_condition: bool = True
    fuse_cached_blocks: bool = True
    allow_foreign_schedule: bool = False
    strategy: str = "reuse"
    forecast_order: int = 1
    compile: bool = False
    compile_mode: str = "auto"
    recompute_blocks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.recompute_blocks = tuple(dict.fromkeys(self.recompute_blocks))
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown cache strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.strategy == "forecast" and int(self.forecast_order) not in (1, 2):
            raise ValueError(f"forecast_order must be 1 or 2, got {self.forecast_order}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {self.compile_mode!r}; choose one of {', '.join(COMPILE_MODES)}")
        if self.mode not in CACHE_MODES:
            raise ValueError(f"unknown cache mode {self.mode!r}; choose one of {', '.join(CACHE_MODES)}")
        if self.mode == "threshold" and int(self.cache_threshold) < 1:
            raise ValueError(f"cache_threshold must be >= 1, got {self.cache_threshold}")
        if self.mode == "optimal":
            if not self.optimal_steps_dir:
                raise ValueError("cache mode 'optimal' needs --optimal_steps_dir (e.g. assets/<task>/optimal_steps/cosine)")
            if int(self.num_caches) < 1:
                raise ValueError(f"num_caches must be >= 1, got {self.num_caches}")
            if int(self.num_bu_blocks) < 0:
                raise ValueError(f"num_bu_blocks must be >= 0, got {self.num_bu_blocks}")

    @property
    def block_order(self) -> int:
        """Degree of a cached block's answer: 0 (reuse) or forecast_order."""
        return int(self.forecast_order) if self.strategy == "forecast" else 0

    def describe(self) -> dict:
        """The parameters that matter for this mode (for result files and dataset metadata)."""
        if self.mode == "threshold":
            described = {"mode": self.mode, "cache_threshold": self.cache_threshold}
        elif self.mode == "optimal":
            described = {"mode": self.mode, "metric": self.metric, "num_caches": self.num_caches,
                         "num_bu_blocks": self.num_bu_blocks, "optimal_steps_dir": str(self.optimal_steps_dir)}
        else:
            described = {"mode": self.mode}
        if self.strategy == "forecast" and self.mode != "original":
            described |= {"strategy": self.strategy, "forecast_order": int(self.forecast_order)}
        if self.recompute_blocks and self.mode != "original":
            described["recompute_blocks"] = list(self.recompute_blocks)
        if self.compile:  # the computation is the same up to float rounding: recorded, not a new mode
            described["compile"] = self.compile_mode
        return described


def short_block_name(name: str) -> str:
    """'decoder.layers.0.ffn' -> 'L0.ffn' (for labels)."""
    return name.replace("decoder.layers.", "L")


def describe_text(described: dict) -> str:
    """One line for a setting from CacheConfig.describe() (a result file's `cache`): 'original',
    'threshold every 5', 'optimal cosine k=5 bu=3 forecast 1 recompute L0.ffn'."""
    mode = described.get("mode", "?")
    if mode == "threshold":
        text = f"threshold every {described.get('cache_threshold')}"
    elif mode == "optimal":
        text = (f"optimal {described.get('metric')} k={described.get('num_caches')} "
                f"bu={described.get('num_bu_blocks')}")
    else:
        return str(mode)
    if described.get("strategy") == "forecast":
        text += f" forecast {described.get('forecast_order')}"
    if described.get("recompute_blocks"):
        text += " recompute " + ",".join(short_block_name(str(b)) for b in described["recompute_blocks"])
    return text
