"""Evaluate a Diffusion Policy checkpoint in simulation, with or without BAC caching (bac-eval).

    bac-eval --checkpoint CKPT -o results/lift/bac \
        --cache_mode optimal --optimal_steps_dir assets/lift/optimal_steps/cosine --num_caches 5 \
        --num_bu_blocks 3 --skip_video

Writes <output_dir>/eval_results.json (mean_score, every task metric, per-episode rewards) and
<output_dir>/benchmark_results.json (latency of this mode and of `original` on the same
observations in the same run, speedup, FLOPs, action frequency, hardware and versions).
"""

import argparse
import sys

from diffusion_policy.cli import flags
from diffusion_policy.common.console import setup_console_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bac-eval", description=__doc__.split("\n")[0])
    flags.add_checkpoint_flags(parser)
    flags.add_output_flag(parser, None, "eval_results.json and benchmark_results.json (default: results/<task>/<mode>)")
    flags.add_device_flags(parser)
    flags.add_cache_flags(parser)
    flags.add_video_flag(parser)
    flags.add_rollout_flags(parser)
    flags.add_latency_samples_flag(parser)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_console_logging()
    from diffusion_policy.common.checkpoint import CheckpointError
    from diffusion_policy.env_runner.evaluate import EvalSettings, evaluate_checkpoint

    try:
        cache_config = flags.cache_config_from_args(args)
        settings = EvalSettings(n_test=args.n_test, n_train=args.n_train, n_envs=args.n_envs,
                                max_steps=args.max_steps, skip_video=args.skip_video,
                                seed=flags.single(args.seed, "--seed"), latency_samples=args.latency_samples,
                                threads=args.threads)
        results, bench, out = evaluate_checkpoint(
            args.checkpoint, args.output_dir, cache_config, device=args.device, settings=settings,
            num_inference_steps=args.num_inference_steps, trust_checkpoint=args.trust_checkpoint)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"task {results.task}  mode {cache_config.mode}  mean_score {results.mean_score:.3f}  "
          f"({results.n_episodes} episodes)")
    print(f"latency {bench.latency.median_ms:.1f} ms (original {bench.latency_original.median_ms:.1f} ms)"
          f"  speedup {bench.speedup:.2f}x  FLOPs {bench.flops_per_predict_action / 1e9:.3f} G"
          f"  {bench.action_frequency_hz:.1f} Hz")
    print(f"wrote {out / 'eval_results.json'} and {out / 'benchmark_results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
