"""Latency, speedup, FLOPs and action error of BAC cache modes on one policy, measured in one run (bac-benchmark).

    bac-benchmark             # original DP transformer, Push-T lowdim config, random weights, DDPM-100
    bac-benchmark -c checkpoint/lift_lowdim/latest.ckpt --optimal_steps_dir assets/lift_lowdim/optimal_steps/cosine

Times original, threshold (each --cache_threshold) and optimal (each --num_caches, with --num_bu_blocks)
round-robin in one run. Prints a table, writes <output_dir>/benchmark_inference.json and one
speed-vs-error plot per batch size. Schedules for 'optimal' come from --optimal_steps_dir, or are
computed for this model first (calibrated on one observation).
"""

import argparse
import dataclasses
import itertools
import platform
import sys
import tempfile
from pathlib import Path

from diffusion_policy.cli import flags


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bac-benchmark", description=__doc__.split("\n")[0])
    flags.add_checkpoint_flags(p, required=False)
    p.set_defaults(checkpoint=None)
    flags.add_output_flag(p, "results/benchmark", "benchmark_inference.json and the plots")
    flags.add_device_flags(p)
    flags.add_cache_threshold_flag(p)
    p.add_argument("--optimal_steps_dir", default=None, help="optimal mode: schedules (computed when omitted)")
    flags.add_metric_flag(p)
    flags.add_num_caches_flag(p)
    flags.add_num_bu_blocks_flag(p)
    p.set_defaults(cache_threshold=[5, 10], num_caches=[5, 10], num_bu_blocks=[3])  # the modes the paper compares
    flags.add_strategy_flags(p, forecast_order=False)
    p.add_argument("--strategies", dest="strategy", type=flags.strategy_list, help=argparse.SUPPRESS)  # issue spelling
    p.add_argument("--forecast_orders", type=flags.int_list, default=[1, 2],
                   help="forecast rows: the extrapolation orders to time (default 1,2)")
    p.add_argument("--batch_sizes", type=flags.int_list, default=[1, 28], help="observation batch sizes, e.g. 1,28")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per mode (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per mode first")
    p.add_argument("--num_inference_steps", type=int, default=None, help="denoising steps (default: the model's)")
    flags.add_compile_flags(p, help="also time every mode compiled (torch.compile; rows '<mode>+compile', "
                                    "compile time in its own column); speedups stay over the eager uncached policy")
    p.add_argument("--no_torch_reference", action="store_true",
                   help="skip the row of the original computation (torch.nn.TransformerDecoder)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _curve(row: dict) -> str:
    """The plot curve of a row: its mode, strategy (forecast order) and compilation."""
    curve = row["mode"]
    if row.get("strategy") == "forecast":
        curve += f" forecast {row['forecast_order']}"
    return curve + (" compiled" if "compile" in row else "")


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from diffusion_policy.common.threads import set_threads

    try:
        set_threads(args.threads)
        metric = flags.single(args.metric, "--metric")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from diffusion_policy.acceleration import CacheConfig
    from diffusion_policy.acceleration.benchmark import compare_modes, summarize
    from diffusion_policy.acceleration.reference import reference_obs, reference_policy, schedules_for
    from diffusion_policy.common.checkpoint import CheckpointError, load_checkpoint

    try:
        if args.checkpoint:
            policy, cfg = load_checkpoint(args.checkpoint, device=args.device, trust_checkpoint=args.trust_checkpoint,
                                          num_inference_steps=args.num_inference_steps)
        else:
            policy, cfg = reference_policy(device=args.device), None
            if args.num_inference_steps:
                policy.num_inference_steps = args.num_inference_steps
        with tempfile.TemporaryDirectory() as tmp:
            steps_dir = args.optimal_steps_dir
            if steps_dir is None and args.num_caches:
                steps_dir = schedules_for(policy, cfg, tmp, metric, args.num_caches, strategies=tuple(args.strategy))
            configs = {"original": CacheConfig("original")}
            configs |= {f"threshold_{t}": CacheConfig("threshold", cache_threshold=t) for t in args.cache_threshold}
            for k, bu in itertools.product(args.num_caches, args.num_bu_blocks):
                optimal = dict(optimal_steps_dir=str(steps_dir), metric=metric, num_caches=k, num_bu_blocks=bu)
                if "reuse" in args.strategy:
                    configs[f"optimal_{k}_bu{bu}"] = CacheConfig("optimal", **optimal)
                if "forecast" in args.strategy:
                    configs |= {f"optimal_{k}_bu{bu}_forecast{order}": CacheConfig(
                        "optimal", **optimal, strategy="forecast", forecast_order=order) for order in args.forecast_orders}
            if args.compile:
                configs |= {f"{label}+compile": dataclasses.replace(c, compile=True, compile_mode=args.compile_mode)
                            for label, c in configs.items()}
            report = {"checkpoint": args.checkpoint or "random-init Push-T lowdim transformer (8x256, H16, DDPM)",
                      "device": str(policy.device), "threads": torch.get_num_threads(),
                      "num_inference_steps": policy.num_inference_steps, "torch": torch.__version__,
                      "cpu": platform.processor() or platform.machine(), "batches": {}}
            for batch_size in args.batch_sizes:
                obs = reference_obs(policy, cfg, batch_size)
                results = compare_modes(policy, obs, configs, args.repeats, args.warmup,
                                        torch_reference=not args.no_torch_reference)
                rows = summarize(results, policy.n_action_steps)
                report["batches"][str(batch_size)] = rows
                print(f"\nbatch {batch_size} ({policy.num_inference_steps} denoising steps, "
                      f"{torch.get_num_threads()} threads, {args.device})")
                print(f"{'mode':<34}{'median ms':>11}{'p90 ms':>9}{'speedup':>9}{'GFLOPs':>9}"
                      f"{'blocks':>8}{'Hz':>8}{'rel err':>9}{'compile s':>11}")
                for r in rows:
                    print(f"{r['label']:<34}{r['latency_median_ms']:>11.1f}{r['latency_p90_ms']:>9.1f}"
                          f"{r['speedup']:>8.2f}x{r['flops'] / 1e9:>9.3f}{r['block_evaluations']:>8}"
                          f"{r['action_hz']:>8.1f}{r['action_rel_error']:>9.4f}{r['compile_s']:>11.1f}")
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.output_dir) / "benchmark_inference.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from diffusion_policy.activation_visualization.plots import plot_speed_vs_error
    from diffusion_policy.common.files import write_json_atomic

    for batch_size, rows in report["batches"].items():
        records = [  # cached modes; 'num_caches' labels a point (threshold: its update period)
            {"mode": _curve(r), "num_caches": r.get("num_caches", r.get("cache_threshold")),
             "speedup": r["speedup"], "action_error": r["action_rel_error"]}
            for r in rows if r["mode"] != "original"
        ]
        if records:
            print(f"plot: {plot_speed_vs_error(records, out.with_name(f'{out.stem}_b{batch_size}_speed_vs_error.png'))}")
    write_json_atomic(out, report)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
