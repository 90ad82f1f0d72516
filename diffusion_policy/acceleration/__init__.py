"""BAC acceleration: apply / remove block caching on a loaded Diffusion Policy.

    from diffusion_policy.acceleration import CacheConfig, apply_cache, remove_cache
    apply_cache(policy, CacheConfig(mode="optimal", optimal_steps_dir="assets/lift/optimal_steps/cosine",
                                    num_caches=5, num_bu_blocks=3))
    policy.predict_action(obs)   # blocks recompute only on their update steps
    remove_cache(policy)         # back to the unmodified policy
"""

from __future__ import annotations

import importlib

from diffusion_policy.acceleration.config import CACHE_MODES, CacheConfig

__all__ = ["CACHE_MODES", "CacheConfig", "apply_cache", "remove_cache", "update_steps_for", "cache_report"]

# CacheConfig and the CLI flags import without torch (a script's --help stays instant); the functions
# that touch a policy load on first use.
_LAZY = {"apply_cache", "remove_cache", "update_steps_for", "cache_report"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module("diffusion_policy.acceleration.apply"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
