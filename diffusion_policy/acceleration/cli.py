"""The BAC flags of the original scripts, shared by every CLI; they map one to one onto CacheConfig."""

import argparse

from diffusion_policy.acceleration.config import CACHE_MODES, CacheConfig


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache_mode", choices=CACHE_MODES, default="original",
                        help="original: no caching; threshold: every block recomputes every N steps; "
                             "optimal: per-block BAC schedules from --optimal_steps_dir")
    parser.add_argument("--cache_threshold", type=int, default=5, help="threshold mode: update every N steps")
    parser.add_argument("--optimal_steps_dir", default=None,
                        help="optimal mode: e.g. assets/<task>/optimal_steps/cosine")
    parser.add_argument("--metric", default="cosine", help="optimal mode: metric of the schedule")
    parser.add_argument("--num_caches", type=int, default=5, help="optimal mode: update steps per block")
    parser.add_argument("--num_bu_blocks", type=int, default=0, help="optimal mode: Bubbling Union blocks")
    parser.add_argument("--allow_foreign_schedule", action="store_true",
                        help="optimal mode: use a schedule computed for other weights (refused by default)")
    parser.add_argument("--no_condition_reuse", action="store_true",
                        help="do not reuse the (constant) condition tokens across steps")


def cache_config_from_args(args: argparse.Namespace) -> CacheConfig:
    return CacheConfig(mode=args.cache_mode, cache_threshold=args.cache_threshold,
                       optimal_steps_dir=args.optimal_steps_dir, metric=args.metric, num_caches=args.num_caches,
                       num_bu_blocks=args.num_bu_blocks, reuse_condition=not args.no_condition_reuse,
                       allow_foreign_schedule=args.allow_foreign_schedule)
