"""Compute BAC cache schedules (ACS + Bubbling Union ranking) for a Diffusion Policy checkpoint.

    python diffusion_policy/activation_utils/get_optimal_cache_update_steps.py \
        -c checkpoint/lift/latest.ckpt -o assets/lift -d cpu --num_caches 5,8,10,20

writes assets/<task>/original/ (activations, similarity matrices, summary), optimal_steps/<metric>/
num_caches_<k>.json + bubbling_union.json, and plots/ (unless --no_plots).
"""

import argparse
import sys

from diffusion_policy.common.console import setup_console_logging
from diffusion_policy.common.threads import add_threads_argument


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _metric_list(text: str) -> list[str]:
    from diffusion_policy.activation_utils.similarity import METRICS

    metrics = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {unknown or text!r}; choose from {', '.join(METRICS)}")
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--checkpoint", required=True, help="Diffusion Policy checkpoint (.ckpt)")
    parser.add_argument("-o", "--output_dir", required=True, help="e.g. assets/<task>")
    parser.add_argument("-d", "--device", default="cpu", help="cpu or cuda:0")
    parser.add_argument("--num_caches", type=_int_list, default=[5, 8, 10, 20], help="e.g. 5,8,10,20")
    parser.add_argument("--metrics", type=_metric_list, default=["cosine"], help="e.g. cosine,l1,mse (default cosine)")
    parser.add_argument("--num_bu_blocks", type=int, default=3, help="BU blocks highlighted in the plots")
    parser.add_argument("--force_recompute", action="store_true", help="record activations and recompute all files")
    parser.add_argument("--calibration", choices=("env", "dataset"), default="env",
                        help="observation to calibrate on: first test-episode observation, or first dataset sample")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of the calibration run")
    parser.add_argument("--num_inference_steps", type=int, default=None, help="override the checkpoint's steps")
    parser.add_argument("--no_plots", action="store_true", help="skip the PNG figures")
    add_threads_argument(parser)
    parser.add_argument("--trust_checkpoint", action="store_true", help="allow arbitrary pickled code (unsafe)")
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
        set_threads(args.threads)  # calibration runs one env in this process: no workers beside it
        written = compute_optimal_schedules(
            args.checkpoint, args.output_dir, device=args.device, num_caches_list=tuple(args.num_caches),
            metrics=tuple(args.metrics), force_recompute=args.force_recompute, source=args.calibration,
            seed=args.seed, num_inference_steps=args.num_inference_steps, make_plots=not args.no_plots,
            trust_checkpoint=args.trust_checkpoint,
        )
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    for metric in args.metrics:
        print(f"schedules: {optimal_steps_dir(args.output_dir, metric)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
