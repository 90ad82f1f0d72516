"""The main job: BAC on the bundled default checkpoint, compared with the original, in one command.

    python scripts/run_default.py           # short CPU run: 6 test episodes per mode
    python scripts/run_default.py --full    # 50 test episodes per mode (the reported figures)
"""

import argparse
import os
import sys
from pathlib import Path

from diffusion_policy.common.console import setup_console_logging
from diffusion_policy.common.threads import add_threads_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="50 test episodes per mode")
    parser.add_argument("--n_test", type=int, default=None, help="test episodes per mode (default 6, --full 50)")
    parser.add_argument("--n_envs", type=int, default=None, help="parallel environments (default: one per episode)")
    parser.add_argument("-d", "--device", default="cpu", help="cpu or cuda:N")
    parser.add_argument("-o", "--output_dir", default=None, help="default results/default")
    parser.add_argument("--video", action="store_true", help="record episode videos")
    parser.add_argument("--force_recompute", action="store_true",
                        help="recompute the schedules even when they are there for this checkpoint")
    add_threads_argument(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    setup_console_logging()
    from diffusion_policy.common.checkpoint import CheckpointError
    from diffusion_policy.default_job import JobSettings, format_table, run_default_job

    settings = JobSettings(device=args.device, skip_video=not args.video, threads=args.threads,
                           force_recompute=args.force_recompute)
    settings.n_test = args.n_test or (50 if args.full else settings.n_test)
    settings.n_envs = args.n_envs or (25 if args.full else None)
    if args.output_dir:
        settings.output_dir = Path(args.output_dir)
    try:
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
