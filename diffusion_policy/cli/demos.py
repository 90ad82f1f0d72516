"""Generate demonstration datasets with scripted experts, in the formats of the original datasets (bac-demos).

    python scripts/generate_demos.py --task lift --num_episodes 200 -o data/robomimic/datasets/lift/ph/low_dim.hdf5
    python scripts/generate_demos.py --task lift --images -o data/robomimic/datasets/lift/ph/image.hdf5
    python scripts/generate_demos.py --task square --num_episodes 200
    python scripts/generate_demos.py --task pusht --num_episodes 200 -o data/pusht/pusht_cchi_v7_replay.zarr
    python scripts/generate_demos.py --task block_pushing -o data/block_pushing/multimodal_push_seed.zarr

Only successful episodes are kept. Prints the expert's success rate (successes / attempts), which
is also written into the dataset's metadata (hdf5 `data` attrs, zarr root attrs).
"""

import argparse
import os
import sys

from diffusion_policy.cli import flags
from diffusion_policy.demos.block_pushing_expert import BlockPushExpert
from diffusion_policy.demos.generate import DEFAULT_OUTPUTS, TASKS, generate_demos


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bac-demos", description=__doc__.split("\n")[0])
    p.add_argument("--task", required=True, choices=TASKS, help="which scripted expert to run")
    p.add_argument("--num_episodes", type=int, default=200, help="successful episodes to keep")
    flags.add_seed_flag(p, "env seed of the first attempt (then +1 per attempt)")
    p.add_argument(
        "--images",
        action="store_true",
        help="also record camera images (lift, can, square: 84x84 agentview + eye-in-hand; pusht: 96x96 img)",
    )
    p.add_argument(
        "--max_attempts",
        type=int,
        default=None,
        help="give up after this many episodes (default 2 * num_episodes + 10)",
    )
    p.add_argument(
        "--max_steps",
        type=int,
        default=None,
        help="episode step limit (default: lift 200, can 400, square 400, pusht 300, block_pushing 350)",
    )
    p.add_argument("--expert_style", choices=BlockPushExpert.STYLES, default="random",
                   help="block_pushing: draw the expert's speeds and distances per episode, use one fixed style, "
                        "the fixed style with every decision read from the current observation, or that with a "
                        "velocity field continuous in the observation instead of switches")
    p.add_argument("--execution_noise", type=float, default=0.0, metavar="STD",
                   help="block_pushing: std (m) of noise on the executed action only; the label stays clean (DART)")
    p.add_argument("--val_ratio", type=float, default=0.1, help="robomimic mask/valid share (lift, can and square only)")
    p.add_argument("--dataset", dest="output", default=None,
                   help="the dataset to write, an hdf5 file or a zarr folder (default: where the task config reads it)")
    p.add_argument("-o", "--output", dest="output", help=argparse.SUPPRESS)  # the old spelling of --dataset
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> float:
    args = parse_args(argv)
    output = args.output
    if output is None:
        output = DEFAULT_OUTPUTS[args.task]
        if args.task in ("lift", "can", "square") and args.images:
            output = os.path.join(os.path.dirname(output), "image.hdf5")
    if os.path.exists(output) and not args.overwrite:
        sys.exit(f"error: {output} already exists; pass --overwrite to replace it or choose another -o")
    try:
        stats = generate_demos(
            args.task, output, args.num_episodes, seed=flags.single(args.seed, "--seed"), images=args.images,
            max_attempts=args.max_attempts, max_steps=args.max_steps, val_ratio=args.val_ratio,
            expert_style=args.expert_style, execution_noise=args.execution_noise,
        )  # fmt: skip
    except (ValueError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    print(f"{args.task}: {stats.summary()}")
    if stats.successes < args.num_episodes:
        print(f"warning: only {stats.successes} of {args.num_episodes} episodes collected; raise --max_attempts")
    print(f"wrote {stats.successes} episodes to {output}")
    return stats.success_rate


if __name__ == "__main__":
    main()
