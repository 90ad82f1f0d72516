"""Evaluate a Diffusion Policy checkpoint in simulation, with or without BAC caching.

    python scripts/eval_fast_diffusion_policy.py --checkpoint CKPT -o results/lift/bac \
        --cache_mode optimal --optimal_steps_dir assets/lift/optimal_steps/cosine --num_caches 5 \
        --num_bu_blocks 3 --skip_video

Writes <output_dir>/eval_results.json (mean_score, every task metric, per-episode rewards) and
<output_dir>/benchmark_results.json (latency of this mode and of `original` on the same
observations in the same run, speedup, FLOPs, action frequency, hardware and versions).
"""

import argparse
import sys

from diffusion_policy.acceleration.cli import add_cache_arguments, cache_config_from_args
from diffusion_policy.common.console import setup_console_logging
from diffusion_policy.common.threads import add_threads_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--checkpoint", required=True, help="Diffusion Policy checkpoint (.ckpt)")
    parser.add_argument("-o", "--output_dir", default=None, help="default: results/<task>/<cache_mode>")
    parser.add_argument("-d", "--device", default="cpu", help="cpu or cuda:N")
    add_cache_arguments(parser)
    parser.add_argument("--skip_video", action="store_true", help="record no episode videos")
    parser.add_argument("--n_test", type=int, default=None, help="test episodes (default: the checkpoint's)")
    parser.add_argument("--n_train", type=int, default=None, help="train-init episodes (default: the checkpoint's)")
    parser.add_argument("--n_envs", type=int, default=None, help="parallel environments")
    parser.add_argument("--max_steps", type=int, default=None, help="env steps per episode")
    parser.add_argument("--num_inference_steps", type=int, default=None, help="denoising steps")
    parser.add_argument("--seed", type=int, default=0, help="torch/numpy seed of the sampling noise")
    parser.add_argument("--latency_samples", type=int, default=20, help="observations re-timed against original")
    add_threads_argument(parser)
    parser.add_argument("--trust_checkpoint", action="store_true", help="allow arbitrary pickled code (unsafe)")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_console_logging()
    from diffusion_policy.common.checkpoint import CheckpointError
    from diffusion_policy.env_runner.evaluate import EvalSettings, evaluate_checkpoint

    try:
        settings = EvalSettings(n_test=args.n_test, n_train=args.n_train, n_envs=args.n_envs,
                                max_steps=args.max_steps, skip_video=args.skip_video, seed=args.seed,
                                latency_samples=args.latency_samples, threads=args.threads)
        results, bench, out = evaluate_checkpoint(
            args.checkpoint, args.output_dir, cache_config_from_args(args), device=args.device, settings=settings,
            num_inference_steps=args.num_inference_steps, trust_checkpoint=args.trust_checkpoint)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"task {results['task']}  mode {args.cache_mode}  mean_score {results['mean_score']:.3f}  "
          f"({results['n_episodes']} episodes)")
    print(f"latency {bench['latency']['median_ms']:.1f} ms (original {bench['latency_original']['median_ms']:.1f} ms)"
          f"  speedup {bench['speedup']:.2f}x  FLOPs {bench['flops_per_predict_action'] / 1e9:.3f} G"
          f"  {bench['action_frequency_hz']:.1f} Hz")
    print(f"wrote {out / 'eval_results.json'} and {out / 'benchmark_results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
