"""Compute BAC cache schedules (ACS + Bubbling Union ranking) for a Diffusion Policy checkpoint (bac-schedules).

    bac-schedules \
        -c checkpoint/lift/latest.ckpt -o assets/lift -d cpu --num_caches 5,8,10,20

writes assets/<task>/original/ (activations, similarity matrices, summary), optimal_steps/<metric>/
num_caches_<k>.json + bubbling_union.json, and plots/ (unless --no_plots). --strategy forecast adds
forecast_num_caches_<k>.json (update steps of least forecast error); --calibration_episodes K (or
--calibration dataset --calibration_samples K) calibrates on K observations (mean of their costs).
"""

import argparse
import sys

from diffusion_policy.cli import flags
from diffusion_policy.common.console import setup_console_logging

SCHEDULED_NUM_CACHES = [5, 8, 10, 20]  # schedules computed by default: every budget the tools compare


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bac-schedules", description=__doc__.split("\n")[0])
    flags.add_checkpoint_flags(parser)
    flags.add_output_flag(parser, None, "the schedules, e.g. assets/<task>", required=True)
    flags.add_device_flags(parser)
    flags.add_num_caches_flag(parser)
    flags.add_metric_flag(parser)
    flags.add_num_bu_blocks_flag(parser)
    parser.set_defaults(num_caches=SCHEDULED_NUM_CACHES)
    parser.add_argument("--force_recompute", action="store_true",
                        help="record activations and recompute all files, replacing what is there")
    flags.add_calibration_flags(parser)
    flags.add_strategy_flags(parser, forecast_order=False)
    flags.add_steps_and_seed_flags(parser, seed_help="sampling seed of the calibration run")
    parser.add_argument("--no_plots", action="store_true", help="skip the PNG figures")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_console_logging()
    from diffusion_policy.activation_utils.calibrate import compute_optimal_schedules
    from diffusion_policy.activation_utils.schedule_files import optimal_steps_dir
    from diffusion_policy.common.checkpoint import CheckpointError
    from diffusion_policy.common.threads import set_threads

    try:
        from diffusion_policy.activation_utils.similarity import METRICS

        unknown = [m for m in args.metric if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown --metric {','.join(unknown)}; choose from {', '.join(METRICS)}")
        if min(args.num_caches) < 1:
            raise ValueError(f"--num_caches must be >= 1, got {min(args.num_caches)}")
        count = flags.calibration_count(args)
        if "forecast" in args.strategy:
            from diffusion_policy.activation_utils.forecast_schedule import FORECAST_METRICS

            if any(m not in FORECAST_METRICS for m in args.metric):
                raise ValueError(f"--strategy forecast needs --metric in {', '.join(FORECAST_METRICS)}, got "
                                 f"{','.join(args.metric)}")
        set_threads(args.threads)  # calibration runs one env in this process: no workers beside it
        written = compute_optimal_schedules(
            args.checkpoint, args.output_dir, device=args.device, num_caches_list=tuple(args.num_caches),
            metrics=tuple(args.metric), force_recompute=args.force_recompute, source=args.calibration,
            seed=flags.single(args.seed, "--seed"), num_inference_steps=args.num_inference_steps, make_plots=not args.no_plots,
            trust_checkpoint=args.trust_checkpoint, strategies=tuple(args.strategy), calibration_count=count,
        )
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    for metric in args.metric:
        print(f"schedules: {optimal_steps_dir(args.output_dir, metric)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
