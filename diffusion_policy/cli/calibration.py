"""Held-out action error of schedules calibrated on 1, 8, 32 ... observations (bac-calibration).

    python scripts/calibration_study.py -c checkpoint/lift_lowdim/latest.ckpt --counts 1,8,32 --heldout 16

Takes the first observations of the task's test episodes: schedules are calibrated on the first K of
them (for each K in --counts; costs averaged over the K), and judged on the last --heldout ones, which
no calibration saw: mean relative error of `action_pred` against the uncached policy under the same
noise, per strategy (--strategy reuse,forecast) and --num_caches. Writes <output_dir>/calibration.json.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from diffusion_policy.cli import flags


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bac-calibration", description=__doc__.split("\n")[0])
    flags.add_checkpoint_flags(p)
    flags.add_output_flag(p, "results/calibration", "calibration.json")
    flags.add_device_flags(p)
    flags.add_metric_flag(p)
    flags.add_num_caches_flag(p)
    flags.add_num_bu_blocks_flag(p)
    flags.add_strategy_flags(p, forecast_order=False)
    p.set_defaults(num_caches=[5, 10], strategy=["reuse", "forecast"])
    p.add_argument("--counts", type=flags.int_list, default=[1, 8, 32], help="calibration observations to compare")
    p.add_argument("--heldout", type=int, default=16, help="held-out observations the schedules are judged on")
    flags.add_seed_flag(p, "sampling seed of calibration and judgement")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np

    from diffusion_policy.acceleration import CacheConfig, apply_cache
    from diffusion_policy.activation_utils.calibrate import calibration_observations, record_calibration_activations
    from diffusion_policy.activation_utils.schedule_builder import build_schedule_assets
    from diffusion_policy.activation_utils.sensitivity import relative_error, sample_actions
    from diffusion_policy.common.checkpoint import CheckpointError, load_checkpoint, weights_fingerprint
    from diffusion_policy.common.files import write_json_atomic
    from diffusion_policy.common.threads import set_threads

    try:
        set_threads(args.threads)
        metric = flags.single(args.metric, "--metric")
        num_bu_blocks = flags.single(args.num_bu_blocks, "--num_bu_blocks")
        seed = flags.single(args.seed, "--seed")
        if args.heldout < 1 or min(args.counts) < 1:
            raise ValueError("--counts and --heldout must be >= 1")
        policy, cfg = load_checkpoint(args.checkpoint, device=args.device, trust_checkpoint=args.trust_checkpoint)
        observations = calibration_observations(cfg, policy, "env", max(args.counts) + args.heldout)
        calibration, heldout = observations[: max(args.counts)], observations[max(args.counts):]
        activations = record_calibration_activations(policy, calibration, seed)

        reference = [sample_actions(policy, obs, seed) for obs in heldout]
        scheduler = {"class": type(policy.noise_scheduler).__name__,
                     "num_train_timesteps": int(policy.noise_scheduler.config.num_train_timesteps),
                     "num_inference_steps": int(policy.num_inference_steps)}
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for count in args.counts:
                steps_dir = Path(tmp) / f"k{count}"
                build_schedule_assets(steps_dir, {n: a[:, :count] for n, a in activations.items()}, [metric],
                                      list(args.num_caches), num_layers=len(policy.model.decoder.layers),
                                      scheduler=scheduler, checkpoint_sha256="calibration-study",
                                      model_fingerprint=weights_fingerprint(policy), make_plots=False,
                                      strategies=tuple(args.strategy),
                                      calibration={"source": "env", "observations": count, "seed": seed})
                for strategy in args.strategy:
                    for num_caches in args.num_caches:
                        apply_cache(policy, CacheConfig("optimal", optimal_steps_dir=str(steps_dir), metric=metric,
                                                        num_caches=num_caches, num_bu_blocks=num_bu_blocks,
                                                        strategy=strategy))
                        errors = [relative_error(sample_actions(policy, obs, seed), ref)
                                  for obs, ref in zip(heldout, reference)]
                        apply_cache(policy, CacheConfig("original"))
                        rows.append({"calibration_observations": count, "strategy": strategy, "num_caches": num_caches,
                                     "num_bu_blocks": num_bu_blocks, "heldout": len(heldout),
                                     "action_rel_error_mean": float(np.mean(errors)),
                                     "action_rel_error_sem": float(np.std(errors, ddof=1) / np.sqrt(len(errors)))
                                     if len(errors) > 1 else 0.0})
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{'observations':>13}{'strategy':>10}{'num_caches':>12}{'held-out rel. action error':>30}")
    for r in rows:
        print(f"{r['calibration_observations']:>13}{r['strategy']:>10}{r['num_caches']:>12}"
              f"{r['action_rel_error_mean']:>22.4f} ± {r['action_rel_error_sem']:.4f}")
    out = Path(args.output_dir) / "calibration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {"checkpoint": args.checkpoint, "metric": metric, "seed": seed, "rows": rows})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
