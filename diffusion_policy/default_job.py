"""The main job on the bundled default: schedules, then evaluation in every cache mode, then a table.

    python scripts/run_default.py            # short CPU-friendly run
    python scripts/run_default.py --full     # 50 test episodes per mode, as reported

Uses the project-trained checkpoint under checkpoint/ and its schedules under assets/ (computed
first if they are not shipped). Results go to results/default/<mode>/ (eval_results.json,
benchmark_results.json) plus results/default/summary.{json,md} and a plot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from diffusion_policy.acceleration import CacheConfig
from diffusion_policy.common.files import write_atomic, write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TASK = "lift_lowdim"  # the quickest shipped checkpoint
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoint" / DEFAULT_TASK / "latest.ckpt"
DEFAULT_ASSETS = REPO_ROOT / "assets" / DEFAULT_TASK


def shipped_tasks(root: Path = REPO_ROOT) -> list[str]:
    """Tasks with a shipped checkpoint: checkpoint/<task>/latest.ckpt."""
    return sorted(p.parent.name for p in (Path(root) / "checkpoint").glob("*/latest.ckpt"))


def task_paths(task: str, root: Path = REPO_ROOT) -> tuple[Path, Path, Path]:
    """(checkpoint, assets dir, default output dir) of a shipped task; ValueError naming the shipped ones."""
    tasks = shipped_tasks(root)
    if task not in tasks:
        raise ValueError(f"no shipped checkpoint for task {task!r} (checkpoint/{task}/latest.ckpt); shipped: "
                         f"{', '.join(tasks) or 'none'}")
    output = Path("results") / ("default" if task == DEFAULT_TASK else f"default_{task}")
    return Path(root) / "checkpoint" / task / "latest.ckpt", Path(root) / "assets" / task, output


@dataclass
class JobSettings:
    checkpoint: Path = DEFAULT_CHECKPOINT
    assets_dir: Path = DEFAULT_ASSETS
    output_dir: Path = Path("results") / "default"
    n_test: int = 6
    n_envs: int | None = None
    device: str = "cpu"
    metric: str = "cosine"
    # The job's optimal mode: on the bundled Lift policy num_caches 5 costs success; BU 3 as in the paper.
    num_caches: int = 10
    num_bu_blocks: int = 3
    cache_threshold: int = 5
    skip_video: bool = True
    seed: int = 0
    num_inference_steps: int | None = None  # denoising steps (None: the checkpoint's)
    threads: int | None = None  # torch threads; None: common.threads.default_threads
    force_recompute: bool = False  # recompute the schedules even when they are there for this model
    strategy: str = "reuse"  # what cached blocks answer between updates: reuse (BAC) or forecast
    forecast_order: int = 1
    compile: bool = False  # torch.compile the denoising step of every mode (acceleration/compile.py)
    compile_mode: str = "auto"


def job_configs(settings: JobSettings) -> dict[str, CacheConfig]:
    steps_dir = str(Path(settings.assets_dir) / "optimal_steps" / settings.metric)
    compiled = dict(compile=settings.compile, compile_mode=settings.compile_mode)
    cached = dict(strategy=settings.strategy, forecast_order=settings.forecast_order, **compiled)
    return {
        "original": CacheConfig("original", **compiled),
        "threshold": CacheConfig("threshold", cache_threshold=settings.cache_threshold, **cached),
        "optimal": CacheConfig("optimal", optimal_steps_dir=steps_dir, metric=settings.metric,
                               num_caches=settings.num_caches, num_bu_blocks=settings.num_bu_blocks, **cached),
    }


def format_table(rows: list[dict]) -> str:
    header = "| mode | success | episodes | latency (ms) | speedup | GFLOPs / predict_action | action Hz |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['success']:.2f} | {r['episodes']} | {r['latency_ms']:.1f} | "
                     f"{r['speedup']:.2f}x | {r['gflops']:.3f} | {r['hz']:.1f} |")
    return "\n".join(lines)


def run_default_job(settings: JobSettings) -> list[dict]:
    """Compute (or reuse) schedules, evaluate each mode, write and return the comparison rows."""
    from diffusion_policy.activation_utils.calibrate import compute_optimal_schedules
    from diffusion_policy.env_runner.evaluate import EvalSettings, evaluate_checkpoint

    if not settings.checkpoint.is_file():
        raise FileNotFoundError(f"bundled checkpoint {settings.checkpoint} is missing; restore it with "
                                "`git checkout -- checkpoint/` or train it (see checkpoint/README.md)")
    configs = job_configs(settings)
    compute_optimal_schedules(str(settings.checkpoint), str(settings.assets_dir), device=settings.device,
                              num_caches_list=(5, settings.num_caches), metrics=(settings.metric,),
                              force_recompute=settings.force_recompute,
                              strategies=("reuse",) if settings.strategy == "reuse" else ("reuse", settings.strategy))
    eval_settings = EvalSettings(n_test=settings.n_test, n_train=0, n_envs=settings.n_envs,
                                 skip_video=settings.skip_video, seed=settings.seed, threads=settings.threads)
    rows = []
    for mode, config in configs.items():
        logger.info("evaluating %s (%d test episodes)", mode, settings.n_test)
        results, bench, out = evaluate_checkpoint(str(settings.checkpoint), str(settings.output_dir / mode), config,
                                                  device=settings.device, settings=eval_settings,
                                                  num_inference_steps=settings.num_inference_steps)
        rows.append({
            "mode": mode, **config.describe(), "success": results.mean_score, "episodes": results.n_episodes,
            "latency_ms": bench.latency.median_ms, "latency_original_ms": bench.latency_original.median_ms,
            "speedup": bench.speedup, "gflops": bench.flops_per_predict_action / 1e9,
            "hz": bench.action_frequency_hz, "results_dir": str(out),
        })
    write_json_atomic(settings.output_dir / "summary.json", {"checkpoint": str(settings.checkpoint), "rows": rows})
    write_text_atomic(settings.output_dir / "summary.md", format_table(rows) + "\n")
    plot_summary(rows, settings.output_dir / "success_vs_speedup.png")
    return rows


def success_standard_error(success: float, episodes: int) -> float:
    """Standard error of a success rate measured on `episodes` independent episodes."""
    return (success * (1 - success) / episodes) ** 0.5 if episodes else 0.0


def plot_summary(rows: list[dict], path: Path) -> Path:
    """Left: success (± standard error from the episode count) against speedup, one point per mode.
    Right: median latency per predict_action of each mode and of `original` re-timed in the same run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8), dpi=120)
    ax_success, ax_latency = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    colors = ["tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for i, r in enumerate(rows):
        error = success_standard_error(r["success"], r["episodes"])
        ax_success.errorbar(r["speedup"], r["success"], yerr=error, fmt="o", ms=7, capsize=4, color=colors[i % 6],
                            label=f"{r['mode']} ({r['episodes']} episodes)")
    ax_success.set_xlabel("speedup vs original (same run)")
    ax_success.set_ylabel("success rate (± s.e.)")
    ax_success.set_ylim(-0.05, 1.1)
    ax_success.set_xlim(0, max(r["speedup"] for r in rows) * 1.25 + 0.5)
    ax_success.grid(alpha=0.3)
    ax_success.legend(loc="lower right", fontsize=8)
    names = [r["mode"] for r in rows]
    latencies = [r["latency_ms"] for r in rows]
    bars = ax_latency.bar(names, latencies, color=[colors[i % 6] for i in range(len(rows))])
    for bar, r in zip(bars, rows):
        ax_latency.annotate(f"{r['latency_ms']:.0f} ms", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
    ax_latency.set_ylabel("median ms per predict_action")
    ax_latency.set_ylim(0, max(latencies) * 1.2)
    ax_latency.grid(alpha=0.3, axis="y")
    fig.suptitle(f"BAC on the bundled default ({rows[0]['episodes']} test episodes per mode)", fontsize=10)
    fig.tight_layout()
    return write_atomic(path, lambda f: fig.savefig(f, format="png"))
