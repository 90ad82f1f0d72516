"""The main job: BAC on the bundled default checkpoint, compared with the original, in one command (bac-default).

    bac-default           # short CPU run: 6 test episodes per mode (or python scripts/run_default.py)
    bac-default --full    # 50 test episodes per mode (the reported figures)
    bac-default --task T  # any shipped checkpoint (checkpoint/<task>/latest.ckpt); default the quickest

Modes: original, threshold (--cache_threshold) and optimal (--num_caches, --num_bu_blocks, --metric;
the job runs the bundled Lift policy at num_caches 10 + Bubbling Union 3, where num_caches 5 costs
success; every other tool defaults to CacheConfig's num_caches 5, BU 0).
"""

import argparse
import os
import sys
from pathlib import Path

from diffusion_policy.cli import flags
from diffusion_policy.common.console import setup_console_logging
from diffusion_policy.default_job import JobSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bac-default", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="50 test episodes per mode")
    parser.add_argument("--n_test", type=int, default=None, help="test episodes per mode (default 6, --full 50)")
    parser.add_argument("--n_envs", type=int, default=None, help="parallel environments (default: one per episode)")
    flags.add_device_flags(parser)
    parser.add_argument("--task", default=None,
                        help="shipped checkpoint to run (a folder of checkpoint/ with latest.ckpt; default lift_lowdim)")
    flags.add_output_flag(parser, None, "the per-mode results, summary and plot (default results/default, "
                                        "results/default_<task> for another task)")
    flags.add_cache_threshold_flag(parser)
    flags.add_metric_flag(parser)
    flags.add_num_caches_flag(parser)
    flags.add_num_bu_blocks_flag(parser)
    parser.set_defaults(num_caches=[JobSettings.num_caches], num_bu_blocks=[JobSettings.num_bu_blocks])
    flags.add_video_flag(parser, default=True)
    parser.add_argument("--video", dest="skip_video", action="store_false", help=argparse.SUPPRESS)  # old spelling
    parser.add_argument("--force_recompute", action="store_true",
                        help="recompute the schedules even when they are there for this checkpoint")
    flags.add_steps_and_seed_flags(parser)
    flags.add_strategy_flags(parser)
    flags.add_compile_flags(parser)
    return parser


def settings_from_args(args: argparse.Namespace):
    """The JobSettings the parsed flags give (ValueError for a list flag with several values, an unknown task)."""
    from diffusion_policy.default_job import DEFAULT_TASK, task_paths

    checkpoint, assets_dir, output_dir = task_paths(args.task or DEFAULT_TASK)
    settings = JobSettings(
        checkpoint=checkpoint, assets_dir=assets_dir,
        device=args.device, skip_video=args.skip_video, threads=args.threads, force_recompute=args.force_recompute,
        cache_threshold=flags.single(args.cache_threshold, "--cache_threshold"),
        metric=flags.single(args.metric, "--metric"), num_caches=flags.single(args.num_caches, "--num_caches"),
        num_bu_blocks=flags.single(args.num_bu_blocks, "--num_bu_blocks"), seed=flags.single(args.seed, "--seed"),
        num_inference_steps=args.num_inference_steps,
        output_dir=Path(args.output_dir or output_dir), strategy=flags.single(args.strategy, "--strategy"),
        forecast_order=args.forecast_order, compile=args.compile, compile_mode=args.compile_mode,
    )
    settings.n_test = args.n_test or (50 if args.full else settings.n_test)
    settings.n_envs = args.n_envs or (25 if args.full else None)
    return settings


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    setup_console_logging()
    from diffusion_policy.common.checkpoint import CheckpointError
    from diffusion_policy.default_job import format_table, run_default_job

    try:
        settings = settings_from_args(args)
        rows = run_default_job(settings)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print()
    print(format_table(rows))
    print(f"\nresults: {settings.output_dir}/<mode>/{{eval_results,benchmark_results}}.json, "
          f"{settings.output_dir}/summary.md, {settings.output_dir}/success_vs_speedup.png; "
          f"schedules and plots: {settings.assets_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
