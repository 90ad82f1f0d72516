"""How well an MLP learns a demonstration set's actions from its observations (bac-learnability).

    bac-learnability --dataset data/blockpush_smooth/multimodal_push_seed.zarr --episodes 250

Reads a Diffusion Policy zarr replay buffer (`data/<obs_key>` (N, Do), `data/action` (N, Da),
`meta/episode_ends`), fits on the first episodes and prints the held-out share of actions more than 60
degrees off and the mean absolute error: a proxy for comparing scripted experts of one task
(diffusion_policy.demos.learnability). With `-c CHECKPOINT`, scores that lowdim policy's first executed
action on the same steps instead (the policy trained on its own split, which may include them):

    bac-learnability --dataset data/blockpush_smooth/multimodal_push_seed.zarr -c /tmp/bp_smooth.ckpt

With `--n_test N` (block pushing data), the MLP fitted on every episode drives N test episodes of the env
(seeds from 100000, a new action every step) and prints p2 / p1; `--dagger_rounds R --expert_style smooth`
then lets that expert label the states the MLP visits in `--dagger_episodes` episodes per round and refits:

    bac-learnability --dataset data/blockpush_smooth/multimodal_push_seed.zarr --n_test 30 --dagger_rounds 3 --expert_style smooth
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from diffusion_policy.cli import flags
from diffusion_policy.demos.block_pushing_expert import BlockPushExpert


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bac-learnability", description=__doc__.split("\n")[0])
    flags.add_checkpoint_flags(p, required=False)
    p.add_argument("--dataset", required=True, help="a zarr replay buffer (e.g. written by bac-demos)")
    p.add_argument("--obs_key", default="obs", help="the observation array under data/ (default obs)")
    p.add_argument("--episodes", type=int, default=None, help="use the first N episodes (default all)")
    p.add_argument("--heldout", type=int, default=25, help="score on the last N of those episodes (default 25)")
    p.add_argument("--epochs", type=int, default=15, help="passes over the training steps (default 15)")
    p.add_argument("--scored_steps", type=int, default=512, help="with -c: score this many steps, drawn (default 512)")
    p.add_argument("--n_test", type=int, default=None,
                   help="block pushing: drive this many test episodes with the MLP (seeds from 100000) and print p2 / p1")
    p.add_argument("--max_steps", type=int, default=350, help="with --n_test: env steps per episode (default 350)")
    p.add_argument("--dagger_rounds", type=int, default=0,
                   help="with --n_test: DAgger rounds, each labelling the MLP's visited states with --expert_style")
    p.add_argument("--dagger_episodes", type=int, default=60, help="episodes the MLP drives per DAgger round (default 60)")
    p.add_argument("--expert_style", choices=BlockPushExpert.OBSERVATION_ONLY_STYLES, default=None,
                   help="the block pushing expert that labels DAgger states (its action is a function of the observation)")
    flags.add_seed_flag(p, "initialisation and batch order seed (with -c: the drawn steps and the sampling noise)")
    flags.add_device_flags(p)
    return p


TEST_START_SEED = 100_000  # the test seeds of the blockpush_lowdim_seed task (bac-eval's 50 test episodes)
DAGGER_START_SEED = 200_000  # apart from the demonstrations' seeds (from 0) and the test seeds


def _closed_loop(args, obs, action, seed: int, report):
    from diffusion_policy.demos.learnability import RegressorConfig, closed_loop_learnability
    from diffusion_policy.env.block_pushing.block_pushing_multimodal import BlockPushMultimodal

    if args.checkpoint is not None:
        raise ValueError("--n_test drives the env with the MLP; score a checkpoint in closed loop with bac-eval instead")
    if obs.shape[1] != 16 or action.shape[1] != 2:
        raise ValueError(f"--n_test drives Block Pushing (obs 16, action 2); the dataset has obs {obs.shape[1]}, "
                         f"action {action.shape[1]}")
    if args.n_test < 1 or args.max_steps < 1 or args.dagger_rounds < 0 or args.dagger_episodes < 1:
        raise ValueError("--n_test, --max_steps and --dagger_episodes must be >= 1, --dagger_rounds >= 0")
    if args.dagger_rounds and args.expert_style is None:
        raise ValueError("--dagger_rounds needs --expert_style memoryless or smooth to label the visited states")
    expert = None
    if args.expert_style is not None:
        expert = BlockPushExpert(style=args.expert_style)
        expert.reset(np.random.default_rng(seed))
    start = TEST_START_SEED
    return closed_loop_learnability(
        obs, action, BlockPushMultimodal(), test_seeds=range(start, start + args.n_test), max_steps=args.max_steps,
        expert=None if expert is None else expert.act, dagger_rounds=args.dagger_rounds,
        dagger_seeds=range(DAGGER_START_SEED, DAGGER_START_SEED + args.dagger_episodes), config=RegressorConfig(epochs=args.epochs, seed=seed), report=report)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import zarr

    from diffusion_policy.common.checkpoint import CheckpointError, load_checkpoint
    from diffusion_policy.common.threads import set_threads
    from diffusion_policy.demos.learnability import RegressorConfig, action_learnability, policy_agreement

    try:
        set_threads(args.threads)
        seed = flags.single(args.seed, "--seed")
        try:
            root = zarr.open(args.dataset, mode="r")
            ends = root["meta/episode_ends"][:]
            obs_array, action_array = root[f"data/{args.obs_key}"], root["data/action"]
        except (KeyError, FileNotFoundError, ValueError) as err:
            raise ValueError(f"{args.dataset} is not a replay buffer with data/{args.obs_key}, data/action and "
                             f"meta/episode_ends ({err!r}); pass a zarr written by bac-demos or --obs_key") from None
        if args.episodes is not None:
            if not 0 < args.episodes <= len(ends):
                raise ValueError(f"--episodes must be in 1..{len(ends)}, got {args.episodes}")
            ends = ends[:args.episodes]
        obs, action = obs_array[:ends[-1]], action_array[:ends[-1]]
        if args.n_test is not None:
            _closed_loop(args, obs, action, seed, report=lambda result: print(result.summary(), flush=True))
            return 0
        if args.checkpoint is None:
            result = action_learnability(obs, action, ends, heldout_episodes=args.heldout,
                                         config=RegressorConfig(epochs=args.epochs, seed=seed))
        else:
            policy, cfg = load_checkpoint(args.checkpoint, device=args.device, trust_checkpoint=args.trust_checkpoint)
            if cfg.get("obs_dim") != obs.shape[1] or cfg.get("action_dim") != action.shape[1]:
                raise ValueError(f"{args.checkpoint} takes obs_dim {cfg.get('obs_dim')} and action_dim "
                                 f"{cfg.get('action_dim')}, the dataset has {obs.shape[1]} and {action.shape[1]}; "
                                 "pass the dataset the policy was trained on (or --obs_key)")
            result = policy_agreement(policy, obs, action, ends, n_obs_steps=cfg.n_obs_steps,
                                      heldout_episodes=args.heldout, max_steps=args.scored_steps, seed=seed)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
