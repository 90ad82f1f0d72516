"""Summarise a benchmark results tree into one table (CSV + Markdown) and PNG plots.

    python scripts/aggregate_results.py results/

Reads results/<task>/train_<i>/<kind>/<mode>/{eval_results,benchmark_results}.json (the tree
scripts/benchmark_suite.py writes) and writes, atomically, results/summary.csv, results/summary.md,
results/summary_success_vs_speedup.png and results/summary_modes.png.

Per task and mode, success is reported the BAC-paper way:
  success_max     the `max` checkpoint's mean_score, mean and std over training seeds.
  success_last10  per seed, the mean mean_score of the last 10 evaluated checkpoints, ordered
                  epoch_XXXX kinds by epoch, then `latest`. The paper averages the test scores of
                  the last 10 checkpoints logged during training; the released tree keeps only
                  latest.ckpt, so with only `latest` evaluated this is latest's score. Then mean and
                  std over seeds.
  std is the population std (ddof=0) over seeds, 0 for a single seed.
Speed, as the mean over every run of the task and mode (all seeds and kinds): speedup (original
vs cached median latency, timed in the same run), latency, FLOPs per action chunk (= one
predict_action, which yields n_action_steps actions) and action frequency in Hz.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from diffusion_policy.activation_utils.schedule_files import write_atomic

MODE_ORDER = ("original", "threshold", "optimal")
LAST_N = 10
SEED_DIR = re.compile(r"^train_(\d+)$")
EPOCH_KIND = re.compile(r"^epoch_(\d+)$")
COLUMNS = (
    "task", "mode", "cache",
    "success_max", "success_max_std", "n_seeds_max",
    "success_last10", "success_last10_std", "n_seeds_last10",
    "speedup", "latency_ms", "latency_original_ms",
    "flops_per_chunk", "flops_per_chunk_original", "action_frequency_hz", "n_runs",
)


@dataclass
class RunRecord:
    """One results/<task>/train_<seed>/<kind>/<mode>/ directory; None where its file lacked it."""

    task: str
    seed: int
    kind: str
    mode: str
    mean_score: Optional[float] = None
    speedup: Optional[float] = None
    latency_ms: Optional[float] = None
    latency_original_ms: Optional[float] = None
    flops: Optional[float] = None
    flops_original: Optional[float] = None
    action_frequency_hz: Optional[float] = None
    cache: Optional[str] = None


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def describe_cache(cache: dict) -> str:
    """'original', 'threshold every 5', 'optimal cosine k=5 bu=3' from a result file's `cache`."""
    mode = cache.get("mode", "?")
    if mode == "threshold":
        return f"threshold every {cache.get('cache_threshold')}"
    if mode == "optimal":
        return f"optimal {cache.get('metric')} k={cache.get('num_caches')} bu={cache.get('num_bu_blocks')}"
    return str(mode)


def _read_json(path: Path, warn: Callable[[str], None]) -> Optional[dict]:
    if not path.is_file():
        warn(f"{path} is missing (failed or unfinished run?); left out")
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        warn(f"{path} is unreadable ({err}); left out")
        return None
    if not isinstance(data, dict):
        warn(f"{path} does not hold a JSON object; left out")
        return None
    return data


def _number(data: dict, *keys: str) -> Optional[float]:
    """data[k0][k1]... as a float, or None if absent or not a number."""
    value = data
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def load_records(results_dir, warn: Callable[[str], None] = _warn) -> list[RunRecord]:
    """Every run directory of the tree; missing or corrupt files are left out with a warning."""
    records = []
    for run_dir in sorted(Path(results_dir).glob("*/train_*/*/*")):
        seed_match = SEED_DIR.match(run_dir.parent.parent.name)
        if not run_dir.is_dir() or seed_match is None:
            continue
        task, kind, mode = run_dir.parent.parent.parent.name, run_dir.parent.name, run_dir.name
        record = RunRecord(task, int(seed_match.group(1)), kind, mode)
        evaluation = _read_json(run_dir / "eval_results.json", warn)
        if evaluation is not None:
            record.mean_score = _number(evaluation, "mean_score")
            if record.mean_score is None:
                warn(f"{run_dir / 'eval_results.json'} has no numeric mean_score; success left out")
        bench = _read_json(run_dir / "benchmark_results.json", warn)
        if bench is not None:
            record.speedup = _number(bench, "speedup")
            record.latency_ms = _number(bench, "latency", "median_ms")
            record.latency_original_ms = _number(bench, "latency_original", "median_ms")
            record.flops = _number(bench, "flops_per_predict_action")
            record.flops_original = _number(bench, "flops_per_predict_action_original")
            record.action_frequency_hz = _number(bench, "action_frequency_hz")
        cache = (bench or {}).get("cache") or (evaluation or {}).get("cache")
        record.cache = describe_cache(cache) if isinstance(cache, dict) else None
        if evaluation is not None or bench is not None:
            records.append(record)
    return records


def _mean(values: list[float]) -> Optional[float]:
    return float(np.mean(values)) if values else None


def _std(values: list[float]) -> Optional[float]:
    return float(np.std(values)) if values else None


def last_n_score(records: list[RunRecord], n: int = LAST_N) -> Optional[float]:
    """Mean score of one seed's last n checkpoints: epoch_XXXX kinds by epoch, then latest."""
    ordered = sorted((int(EPOCH_KIND.match(r.kind).group(1)), r.mean_score)
                     for r in records if EPOCH_KIND.match(r.kind) and r.mean_score is not None)
    scores = [score for _, score in ordered]
    scores += [r.mean_score for r in records if r.kind == "latest" and r.mean_score is not None]
    return _mean(scores[-n:])


def _mode_rank(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def summarize(records: list[RunRecord], warn: Callable[[str], None] = _warn) -> list[dict]:
    """One row (COLUMNS) per task and mode, sorted by task, then original/threshold/optimal."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.task, record.mode), []).append(record)
    rows = []
    for (task, mode) in sorted(groups, key=lambda key: (key[0], _mode_rank(key[1]))):
        runs = groups[(task, mode)]
        seeds = sorted({r.seed for r in runs})
        max_scores = [r.mean_score for r in runs if r.kind == "max" and r.mean_score is not None]
        last_scores = [s for s in (last_n_score([r for r in runs if r.seed == seed]) for seed in seeds)
                       if s is not None]
        caches = sorted({r.cache for r in runs if r.cache})
        if len(caches) > 1:
            warn(f"{task}/{mode} mixes cache settings ({'; '.join(caches)}); speed averaged over all of them")

        def mean_of(attr: str) -> Optional[float]:
            return _mean([getattr(r, attr) for r in runs if getattr(r, attr) is not None])

        rows.append({
            "task": task, "mode": mode, "cache": "; ".join(caches),
            "success_max": _mean(max_scores), "success_max_std": _std(max_scores), "n_seeds_max": len(max_scores),
            "success_last10": _mean(last_scores), "success_last10_std": _std(last_scores),
            "n_seeds_last10": len(last_scores),
            "speedup": mean_of("speedup"), "latency_ms": mean_of("latency_ms"),
            "latency_original_ms": mean_of("latency_original_ms"),
            "flops_per_chunk": mean_of("flops"), "flops_per_chunk_original": mean_of("flops_original"),
            "action_frequency_hz": mean_of("action_frequency_hz"), "n_runs": len(runs),
        })
    return rows


# ---------------------------------------------------------------- writers


def _write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode()))


def write_csv(rows: list[dict], path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in COLUMNS})
    return _write_text(Path(path), buffer.getvalue())


def _score_cell(mean: Optional[float], std: Optional[float], n: int) -> str:
    return "–" if mean is None else f"{mean:.3f} ± {std:.3f} ({n})"


def _cell(value: Optional[float], fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown_table(rows: list[dict]) -> str:
    header = ("| task | mode | cache | success max (seeds) | success last-10 (seeds) | speedup | latency ms "
              "| GFLOPs / chunk | action Hz | runs |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        gflops = None if row["flops_per_chunk"] is None else row["flops_per_chunk"] / 1e9
        lines.append(" ".join([
            f"| {row['task']} | {row['mode']} | {row['cache'] or '–'} |",
            f"{_score_cell(row['success_max'], row['success_max_std'], row['n_seeds_max'])} |",
            f"{_score_cell(row['success_last10'], row['success_last10_std'], row['n_seeds_last10'])} |",
            f"{_cell(row['speedup'], '.2f')}{'×' if row['speedup'] is not None else ''} |",
            f"{_cell(row['latency_ms'], '.1f')} | {_cell(gflops, '.3f')} |",
            f"{_cell(row['action_frequency_hz'], '.1f')} | {row['n_runs']} |",
        ]))
    return "\n".join(lines) + "\n"


def write_markdown(rows: list[dict], path) -> Path:
    notes = (
        "\nsuccess: mean ± std (population, over training seeds) of mean_score; `max` = the best-scored "
        "checkpoint, `last-10` = per seed the mean over the last 10 evaluated checkpoints (only latest.ckpt "
        "in the released tree, so its score). Speedup, latency, FLOPs per action chunk (one predict_action) "
        "and action frequency: mean over every run of the task and mode; speedup is against the original "
        "policy timed in the same run.\n"
    )
    return _write_text(Path(path), "# Benchmark summary\n\n" + markdown_table(rows) + notes)


# ---------------------------------------------------------------- plots


def _success(row: dict) -> tuple[Optional[float], float]:
    """(success, std) for plotting: max checkpoint, else last-10."""
    if row["success_max"] is not None:
        return row["success_max"], row["success_max_std"]
    return row["success_last10"], row["success_last10_std"] or 0.0


def _save_png(fig, path: Path) -> Path:
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))


def plot_success_vs_speedup(rows: list[dict], path) -> Optional[Path]:
    """One panel per task: a point per mode at (speedup, success) with the seed std as error bar."""
    tasks = sorted({r["task"] for r in rows if r["speedup"] is not None and _success(r)[0] is not None})
    if not tasks:
        return None
    modes = sorted({r["mode"] for r in rows}, key=_mode_rank)
    colors = {mode: f"C{i}" for i, mode in enumerate(modes)}
    ncols = min(4, len(tasks))
    nrows = -(-len(tasks) // ncols)
    from matplotlib.figure import Figure  # here: --help stays instant

    fig = Figure(figsize=(3.4 * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks):
        for row in rows:
            success, std = _success(row)
            if row["task"] != task or row["speedup"] is None or success is None:
                continue
            ax.errorbar(row["speedup"], success, yerr=std, fmt="o", color=colors[row["mode"]], capsize=3,
                        label=row["mode"])
        ax.set_title(task)
        ax.set_xlabel("speedup (×)")
        ax.set_ylabel("success")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    return _save_png(fig, Path(path))


def plot_mode_bars(rows: list[dict], path) -> Optional[Path]:
    """Two panels, success and speedup: per task, one bar per mode."""
    tasks = sorted({r["task"] for r in rows})
    modes = sorted({r["mode"] for r in rows}, key=_mode_rank)
    if not tasks:
        return None
    by_key = {(r["task"], r["mode"]): r for r in rows}
    width = 0.8 / len(modes)
    x = np.arange(len(tasks))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.2 * len(tasks) * max(1, len(modes)) / 2 + 2), 6.0), layout="constrained")
    ax_success, ax_speed = fig.subplots(2, 1, sharex=True)
    for i, mode in enumerate(modes):
        rows_of_mode = [by_key.get((task, mode)) for task in tasks]
        success = [(_success(r) if r else (None, 0.0)) for r in rows_of_mode]
        offsets = x + (i - (len(modes) - 1) / 2) * width
        ax_success.bar(offsets, [s if s is not None else 0.0 for s, _ in success], width,
                       yerr=[e if s is not None else 0.0 for s, e in success], capsize=2, label=mode, color=f"C{i}")
        ax_speed.bar(offsets, [(r["speedup"] or 0.0) if r else 0.0 for r in rows_of_mode], width,
                     label=mode, color=f"C{i}")
    ax_success.set_ylabel("success")
    ax_success.set_ylim(0, 1.05)
    ax_success.legend(fontsize="small", ncols=len(modes))
    ax_speed.set_ylabel("speedup (×)")
    ax_speed.axhline(1.0, color="gray", linewidth=0.8)
    ax_speed.set_xticks(x, tasks, rotation=30, ha="right")
    for ax in (ax_success, ax_speed):
        ax.grid(axis="y", alpha=0.3)
    return _save_png(fig, Path(path))


# ---------------------------------------------------------------- entry points


def aggregate(results_dir="results", plots: bool = True, warn: Callable[[str], None] = _warn) -> list[dict]:
    """Write summary.csv, summary.md (and the PNG plots) into results_dir; returns the rows."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"results dir {results_dir} does not exist; run shs/benchmark/run_all_benchmarks.sh first")
    rows = summarize(load_records(results_dir, warn), warn)
    if not rows:
        raise ValueError(f"no results under {results_dir}/<task>/train_<i>/<kind>/<mode>/; "
                         "run shs/benchmark/run_all_benchmarks.sh first")
    write_csv(rows, results_dir / "summary.csv")
    write_markdown(rows, results_dir / "summary.md")
    if plots:
        plot_success_vs_speedup(rows, results_dir / "summary_success_vs_speedup.png")
        plot_mode_bars(rows, results_dir / "summary_modes.png")
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bac-aggregate", description=__doc__.split("\n")[0])
    parser.add_argument("results_dir", nargs="?", default="results",
                        help="the tree of eval results to aggregate (default results)")
    parser.add_argument("--no_plots", action="store_true", help="write the tables only")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rows = aggregate(args.results_dir, plots=not args.no_plots)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown_table(rows), end="")
    print(f"wrote {Path(args.results_dir) / 'summary.csv'} and {Path(args.results_dir) / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
