"""Which blocks' caching moves a checkpoint's actions, for one cache setting (bac-sensitivity).

    bac-sensitivity -c checkpoint/pusht_lowdim/latest.ckpt --cache_mode optimal \
        --optimal_steps_dir assets/pusht_lowdim/optimal_steps/cosine --num_caches 10 --num_bu_blocks 3 \
        --observations 8 --seeds 0,1 -o results/sensitivity/pusht_lowdim_k10_bu3

Writes sensitivity.json (diffusion_policy.activation_utils.sensitivity.SensitivityReport) and
sensitivity.png, and prints the blocks ranked by what recomputing them buys back. The observations are
the first observations of the task's first test episodes (as the schedules' calibration).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from diffusion_policy.cli import flags


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bac-sensitivity", description=__doc__.split("\n")[0])
    flags.add_checkpoint_flags(p)
    flags.add_output_flag(p, None, "sensitivity.json and sensitivity.png", required=True)
    flags.add_device_flags(p)
    flags.add_cache_flags(p)  # the setting studied (without --recompute_blocks: the study sets it)
    p.add_argument("--observations", type=int, default=8, help="first observations of this many test episodes")
    p.add_argument("--seeds", type=flags.int_list, default=[0], help="sampling seeds per observation (default 0)")
    p.add_argument("--blocks", type=flags.name_list, default=None,
                   help="blocks to study, e.g. decoder.layers.0.ffn (default every decoder block)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from diffusion_policy.activation_utils.calibrate import calibration_observations
    from diffusion_policy.activation_utils.sensitivity import block_sensitivity, plot_sensitivity
    from diffusion_policy.common.checkpoint import CheckpointError, load_checkpoint
    from diffusion_policy.common.files import write_json_atomic
    from diffusion_policy.common.threads import set_threads

    try:
        if args.observations < 1:
            raise ValueError(f"--observations must be >= 1, got {args.observations}")
        config = flags.cache_config_from_args(args)
        set_threads(args.threads)
        policy, cfg = load_checkpoint(args.checkpoint, device=args.device, trust_checkpoint=args.trust_checkpoint)
        observations = calibration_observations(cfg, policy, "env", args.observations)
        report = block_sensitivity(policy, observations, config, seeds=args.seeds, blocks=args.blocks)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.output_dir)
    write_json_atomic(out / "sensitivity.json", dataclasses.asdict(report))
    plot_sensitivity(report, out / "sensitivity.png")
    print(f"every block cached: relative action error {report.all_cached:.4f}")
    print("block                      alone    spared   bought back   update steps")
    for block in report.ranked():
        print(f"{block.block:26s} {block.alone:.4f}   {block.spared:.4f}   {report.all_cached - block.spared:+.4f}"
              f"       {block.update_steps}")
    print(f"wrote {out / 'sensitivity.json'} and {out / 'sensitivity.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
