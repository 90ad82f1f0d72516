"""Collect policy rollouts as a LeRobot dataset, with or without BAC acceleration (bac-collect).

    bac-collect --checkpoint CKPT --output_dir datas/lerobot/kitchen \
        --num_episodes 100 --device cuda:0 --use_bac --cache_mode optimal \
        --optimal_steps_dir assets/kitchen/optimal_steps/cosine --num_caches 5 --num_bu_blocks 3

Episode i runs with env seed `--seed + i`. Every finished episode is committed at once, so an
interrupted run keeps its episodes and `--resume` continues after them with the same seeds.
Without --use_bac the policy runs uncached, whatever --cache_mode says.
`--format legacy` writes the original BAC layout (episodes/, episodes_data.parquet) instead of
LeRobotDataset v3.0 (load it with `LeRobotDataset(repo_id, root=OUTPUT_DIR)`).
"""

import argparse
import sys

from diffusion_policy.cli import flags
from diffusion_policy.common.console import setup_console_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bac-collect", description=__doc__.split("\n")[0])
    flags.add_checkpoint_flags(parser)
    flags.add_output_flag(parser, None, "the dataset, e.g. datas/lerobot/<task>", required=True)
    parser.add_argument("-n", "--num_episodes", type=int, required=True, help="episodes the dataset should hold")
    flags.add_device_flags(parser)
    parser.add_argument("--use_bac", action="store_true", help="accelerate the policy with --cache_mode")
    flags.add_cache_flags(parser)
    parser.add_argument("--n_envs", type=int, default=None, help="parallel environments (default: the checkpoint's)")
    parser.add_argument("--max_steps", type=int, default=None, help="env steps per episode (default: the checkpoint's)")
    flags.add_steps_and_seed_flags(parser, seed_help="episode i uses env seed SEED + i")
    flags.add_video_flag(parser, what="store no video stream (lowdim tasks: no rendered view; image tasks: no "
                                      "camera observations)")
    parser.add_argument("--no_video", dest="skip_video", action="store_true", help=argparse.SUPPRESS)  # old spelling
    parser.add_argument("--fps", type=int, default=None, help="dataset fps (default: the env's control rate)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted collection in --output_dir")
    parser.add_argument("--format", choices=("lerobot", "legacy"), default="lerobot",
                        help="lerobot: LeRobotDataset v3.0; legacy: the original BAC layout")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_console_logging()
    from diffusion_policy.acceleration import CacheConfig
    from diffusion_policy.common.checkpoint import CheckpointError
    from diffusion_policy.data_collection.collect import (
        CollectSettings,
        collect_rollouts,
    )
    from diffusion_policy.data_collection.storage import DirectoryBusyError

    try:
        if args.use_bac:
            cache_config = flags.cache_config_from_args(args)
            if cache_config.mode == "original":
                print("warning: --use_bac with --cache_mode original: the policy runs uncached", file=sys.stderr)
        else:
            cache_config = CacheConfig(mode="original", compile=args.compile, compile_mode=args.compile_mode)
        settings = CollectSettings(num_episodes=args.num_episodes, seed=flags.single(args.seed, "--seed"), fps=args.fps,
                                   no_video=args.skip_video, resume=args.resume, format=args.format,
                                   n_envs=args.n_envs, max_steps=args.max_steps,
                                   num_inference_steps=args.num_inference_steps, threads=args.threads)
        summary = collect_rollouts(args.checkpoint, args.output_dir, cache_config, settings, device=args.device,
                                   trust_checkpoint=args.trust_checkpoint)
    except (CheckpointError, FileNotFoundError, FileExistsError, ValueError, DirectoryBusyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: the committed episodes are kept; rerun with --resume to continue {args.output_dir}",
              file=sys.stderr)
        return 130
    total = summary.episodes_before + summary.episodes_written
    rate = f"{summary.successes}/{summary.episodes_written} successful" if summary.episodes_written else "none new"
    print(f"task {summary.task}  mode {cache_config.mode}  {summary.episodes_written} episodes written ({rate}), "
          f"{summary.frames_written} frames at {summary.fps} fps in {summary.seconds:.1f} s")
    print(f"{args.output_dir} holds {total} episodes ({args.format} format)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
