"""Summarise a benchmark results tree into one table (CSV + Markdown) and PNG plots.

    python scripts/aggregate_results.py results/

Reads results/<task>/train_<i>/<kind>/<setting>/{eval_results,benchmark_results}.json (the tree
scripts/benchmark_suite.py writes; <setting> is one cache setting: original, threshold_5, optimal_k5_bu3,
..., with a suffix _sampling_seed<S> for a run with sampling seed S other than 0) and writes, atomically,
results/summary.csv, results/summary.md, results/summary_success_vs_speedup.png and results/summary_modes.png.

One row per task and cache setting, in table order (original, threshold by period, optimal by strategy,
num_caches, BU blocks). The runs of one checkpoint and setting with other sampling seeds (same episodes,
other noise) are first pooled into one evaluation: the mean of their scores, with standard error
sqrt(sum se_i^2) / n and their episodes summed. Success is reported the BAC-paper way:
  success_max     the `max` checkpoint's mean_score, mean and std over training seeds.
  success_last10  per seed, the mean mean_score of the last 10 evaluated checkpoints, ordered
                  epoch_XXXX kinds by epoch, then `latest`. The paper averages the test scores of
                  the last 10 checkpoints logged during training; the released tree keeps only
                  latest.ckpt, so with only `latest` evaluated this is latest's score. Then mean and
                  std over seeds.
  std is the population std (ddof=0) over seeds, 0 for a single seed.
  se              the standard error from the episodes: per run, the sample std (ddof=1) of the test
                  episodes' scores (`test/sim_max_reward_<seed>`, whose mean is mean_score) over the square
                  root of their number; for a runner that logs no per-episode score (Kitchen, as the
                  original), the binomial sqrt(p(1-p)/n) of its n test episodes (an upper bound for scores
                  in [0, 1]); a mean of runs has sqrt(sum se_i^2) / n. This is the noise of a 50-episode
                  evaluation, what decides whether a cached setting lost points.
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

from diffusion_policy.acceleration.config import describe_text as describe_cache
from diffusion_policy.activation_utils.schedule_files import write_atomic
from diffusion_policy.cli.suite import parse_run_dir_name

MODE_ORDER = ("original", "threshold", "optimal")
LAST_N = 10
SEED_DIR = re.compile(r"^train_(\d+)$")
EPOCH_KIND = re.compile(r"^epoch_(\d+)$")
EPISODE_SCORE = re.compile(r"^(train|test)/sim_max_reward_(-?\d+)$")
COLUMNS = (
    "task", "setting", "mode", "cache",
    "success_max", "success_max_se", "success_max_std", "n_seeds_max",
    "success_last10", "success_last10_se", "success_last10_std", "n_seeds_last10", "n_episodes", "n_sampling_seeds",
    "speedup", "latency_ms", "latency_original_ms",
    "flops_per_chunk", "flops_per_chunk_original", "action_frequency_hz", "n_runs",
)


@dataclass
class RunRecord:
    """One results/<task>/train_<seed>/<kind>/<setting>/ directory (or, pooled, every sampling seed's run of
    one checkpoint and setting); None where its file lacked it."""

    task: str
    seed: int  # the training seed (train_<seed>)
    kind: str
    setting: str  # one cache setting: the run directory's name less its sampling-seed suffix
    sampling_seeds: tuple[int, ...] = (0,)  # the sampling seeds of the run(s) behind this record
    mean_score: Optional[float] = None
    score_se: Optional[float] = None  # standard error of mean_score from its episodes
    n_episodes: Optional[int] = None  # of all its runs
    speedup: Optional[float] = None
    latency_ms: Optional[float] = None
    latency_original_ms: Optional[float] = None
    flops: Optional[float] = None
    flops_original: Optional[float] = None
    action_frequency_hz: Optional[float] = None
    cache: Optional[str] = None  # describe_cache of the run's cache settings
    cache_params: Optional[dict] = None  # the result file's `cache`

    @property
    def mode(self) -> str:
        mode = (self.cache_params or {}).get("mode")
        return mode if isinstance(mode, str) else self.setting.split("_")[0]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def episode_scores(evaluation: dict) -> list[float]:
    """The per-episode scores behind an eval_results.json's mean_score: its test episodes' (its train
    episodes' when it has no test episodes), from the runner's `<prefix>sim_max_reward_<seed>` metrics."""
    metrics = evaluation.get("metrics")
    if not isinstance(metrics, dict):
        return []
    by_prefix: dict[str, list[float]] = {}
    for key, value in metrics.items():
        match = EPISODE_SCORE.match(str(key))
        if match and isinstance(value, (int, float)) and not isinstance(value, bool):
            by_prefix.setdefault(match.group(1), []).append(float(value))
    return by_prefix.get("test") or by_prefix.get("train") or []


def standard_error(scores: list[float]) -> Optional[float]:
    """Sample std (ddof=1) over sqrt(n); None below two scores."""
    return float(np.std(scores, ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else None


def episode_count(evaluation: dict) -> int:
    """How many episodes stand behind mean_score: the test episodes (the train ones when there are none)."""
    prefixes = [e.get("prefix") for e in evaluation.get("episode_rewards") or () if isinstance(e, dict)]
    return prefixes.count("test/") or prefixes.count("train/")


def binomial_standard_error(mean: float, n: int) -> Optional[float]:
    """sqrt(p(1-p)/n): exact for 0/1 successes, an upper bound for scores in [0, 1]; None outside that."""
    return float(np.sqrt(mean * (1 - mean) / n)) if n > 1 and 0.0 <= mean <= 1.0 else None


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
        task, kind, setting = run_dir.parent.parent.parent.name, run_dir.parent.name, run_dir.name
        setting, sampling_seed = parse_run_dir_name(setting)
        record = RunRecord(task, int(seed_match.group(1)), kind, setting, (sampling_seed,))
        evaluation = _read_json(run_dir / "eval_results.json", warn)
        if evaluation is not None:
            record.mean_score = _number(evaluation, "mean_score")
            if record.mean_score is None:
                warn(f"{run_dir / 'eval_results.json'} has no numeric mean_score; success left out")
            scores = episode_scores(evaluation)
            if record.mean_score is None:
                pass
            elif scores and abs(np.mean(scores) - record.mean_score) > 1e-6:
                warn(f"{run_dir / 'eval_results.json'}: its episode scores do not average to mean_score; "
                     "standard error left out")
            elif scores:
                record.score_se, record.n_episodes = standard_error(scores), len(scores)
            elif episode_count(evaluation):
                record.n_episodes = episode_count(evaluation)
                record.score_se = binomial_standard_error(record.mean_score, record.n_episodes)
        bench = _read_json(run_dir / "benchmark_results.json", warn)
        if bench is not None:
            record.speedup = _number(bench, "speedup")
            record.latency_ms = _number(bench, "latency", "median_ms")
            record.latency_original_ms = _number(bench, "latency_original", "median_ms")
            record.flops = _number(bench, "flops_per_predict_action")
            record.flops_original = _number(bench, "flops_per_predict_action_original")
            record.action_frequency_hz = _number(bench, "action_frequency_hz")
        cache = (bench or {}).get("cache") or (evaluation or {}).get("cache")
        if isinstance(cache, dict):
            record.cache, record.cache_params = describe_cache(cache), cache
        if evaluation is not None or bench is not None:
            records.append(record)
    return records


def _mean(values: list[float]) -> Optional[float]:
    return float(np.mean(values)) if values else None


def _std(values: list[float]) -> Optional[float]:
    return float(np.std(values)) if values else None


def _se_of_mean(errors: list[Optional[float]]) -> Optional[float]:
    """Standard error of a mean of independent estimates with these errors (None if one is unknown)."""
    if not errors or any(e is None for e in errors):
        return None
    return float(np.sqrt(np.sum(np.square(errors))) / len(errors))


def pool_sampling_seeds(records: list[RunRecord]) -> list[RunRecord]:
    """One record per checkpoint (task, training seed, kind) and setting: its runs with other sampling seeds
    pooled into one evaluation of all their episodes (mean score, se sqrt(sum se_i^2) / n, episodes summed,
    speed figures averaged). A run without a score adds only its speed figures."""
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.task, record.seed, record.kind, record.setting), []).append(record)
    pooled = []
    for (task, seed, kind, setting), runs in groups.items():
        if len(runs) == 1:
            pooled.append(runs[0])
            continue
        scored = [r for r in runs if r.mean_score is not None]
        episodes = [r.n_episodes for r in scored]
        record = RunRecord(task, seed, kind, setting, tuple(sorted(s for r in runs for s in r.sampling_seeds)),
                           mean_score=_mean([r.mean_score for r in scored]),
                           score_se=_se_of_mean([r.score_se for r in scored]),
                           n_episodes=sum(episodes) if scored and all(episodes) else None,
                           cache=next((r.cache for r in runs if r.cache), None),
                           cache_params=next((r.cache_params for r in runs if r.cache_params), None))
        for attr in ("speedup", "latency_ms", "latency_original_ms", "flops", "flops_original",
                     "action_frequency_hz"):
            setattr(record, attr, _mean([getattr(r, attr) for r in runs if getattr(r, attr) is not None]))
        pooled.append(record)
    return pooled


def last_n(records: list[RunRecord], n: int = LAST_N) -> list[RunRecord]:
    """One seed's last n scored checkpoints: epoch_XXXX kinds by epoch, then latest."""
    ordered = sorted((int(EPOCH_KIND.match(r.kind).group(1)), i) for i, r in enumerate(records)
                     if EPOCH_KIND.match(r.kind) and r.mean_score is not None)
    chosen = [records[i] for _, i in ordered]
    chosen += [r for r in records if r.kind == "latest" and r.mean_score is not None]
    return chosen[-n:]


def last_n_score(records: list[RunRecord], n: int = LAST_N) -> Optional[float]:
    """Mean score of one seed's last n checkpoints: epoch_XXXX kinds by epoch, then latest."""
    return _mean([r.mean_score for r in last_n(records, n)])


def setting_rank(setting: str, cache: Optional[dict]) -> tuple:
    """Table order: original, threshold by period, optimal by strategy, order, metric, num_caches, BU blocks;
    settings without a readable cache last, by name."""
    cache = cache or {}
    mode = cache.get("mode", setting.split("_")[0])
    mode_rank = MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)

    def num(key: str) -> float:
        value = cache.get(key)
        return float(value) if isinstance(value, (int, float)) else float("inf")

    forecast = cache.get("strategy") == "forecast"
    return (mode_rank, num("cache_threshold") if mode == "threshold" else 0, forecast,
            num("forecast_order") if forecast else 0, str(cache.get("metric", "")), num("num_caches"),
            num("num_bu_blocks"), setting)


def summarize(records: list[RunRecord], warn: Callable[[str], None] = _warn) -> list[dict]:
    """One row (COLUMNS) per task and cache setting, sorted by task, then setting_rank (runs with several
    sampling seeds pooled first: pool_sampling_seeds)."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for record in pool_sampling_seeds(records):
        groups.setdefault((record.task, record.setting), []).append(record)

    def rank(key: tuple[str, str]) -> tuple:
        params = next((r.cache_params for r in groups[key] if r.cache_params), None)
        return (key[0], setting_rank(key[1], params))

    rows = []
    for (task, setting) in sorted(groups, key=rank):
        runs = groups[(task, setting)]
        seeds = sorted({r.seed for r in runs})
        max_runs = [r for r in runs if r.kind == "max" and r.mean_score is not None]
        last_runs = [chosen for chosen in (last_n([r for r in runs if r.seed == seed]) for seed in seeds) if chosen]
        last_scores = [_mean([r.mean_score for r in chosen]) for chosen in last_runs]
        last_errors = [_se_of_mean([r.score_se for r in chosen]) for chosen in last_runs]
        caches = sorted({r.cache for r in runs if r.cache})
        if len(caches) > 1:
            warn(f"{task}/{setting} mixes cache settings ({'; '.join(caches)}); speed averaged over all of them")
        episodes = sorted({r.n_episodes for r in runs if r.n_episodes})
        sampling_seed_counts = sorted({len(r.sampling_seeds) for r in runs})

        def mean_of(attr: str) -> Optional[float]:
            return _mean([getattr(r, attr) for r in runs if getattr(r, attr) is not None])

        rows.append({
            "task": task, "setting": setting, "mode": runs[0].mode, "cache": "; ".join(caches),
            "success_max": _mean([r.mean_score for r in max_runs]),
            "success_max_se": _se_of_mean([r.score_se for r in max_runs]),
            "success_max_std": _std([r.mean_score for r in max_runs]), "n_seeds_max": len(max_runs),
            "success_last10": _mean(last_scores), "success_last10_se": _se_of_mean(last_errors),
            "success_last10_std": _std(last_scores), "n_seeds_last10": len(last_scores),
            "n_episodes": episodes[0] if len(episodes) == 1 else None,
            "n_sampling_seeds": sampling_seed_counts[0] if len(sampling_seed_counts) == 1 else None,
            "speedup": mean_of("speedup"), "latency_ms": mean_of("latency_ms"),
            "latency_original_ms": mean_of("latency_original_ms"),
            "flops_per_chunk": mean_of("flops"), "flops_per_chunk_original": mean_of("flops_original"),
            "action_frequency_hz": mean_of("action_frequency_hz"), "n_runs": sum(len(r.sampling_seeds) for r in runs),
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


def _score_cell(mean: Optional[float], se: Optional[float], std: Optional[float], n: int) -> str:
    """'0.777 ± 0.030' (± the episodes' standard error); over several seeds also their std and count."""
    if mean is None:
        return "–"
    text = f"{mean:.3f}" + (f" ± {se:.3f}" if se is not None else "")
    return text + (f" (std {std:.3f}, {n} seeds)" if n > 1 else "")


def _episodes_cell(n_episodes: Optional[int], n_sampling_seeds: Optional[int]) -> str:
    """'50'; '3×50' for 150 episodes from three sampling seeds' runs of 50."""
    if not n_episodes:
        return "–"
    seeds = n_sampling_seeds or 1
    return f"{seeds}×{n_episodes // seeds}" if seeds > 1 and n_episodes % seeds == 0 else str(n_episodes)


def _cell(value: Optional[float], fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown_table(rows: list[dict]) -> str:
    """The table; a success column no row has a value for (no `max` checkpoints, say) is left out."""
    success = [(key, title) for key, title in (("success_max", "success max"), ("success_last10", "success last-10"))
               if any(row[key] is not None for row in rows)]
    header = ("| task | setting | " + "".join(f"{title} | " for _, title in success)
              + "episodes | speedup | latency ms | GFLOPs / chunk | action Hz | runs |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        gflops = None if row["flops_per_chunk"] is None else row["flops_per_chunk"] / 1e9
        scores = "".join(f"{_score_cell(row[key], row[f'{key}_se'], row[f'{key}_std'], row[f'n_seeds_{key[8:]}'])} | "
                         for key, _ in success)
        lines.append(" ".join([
            f"| {row['task']} | {row['cache'] or row['setting']} | {scores}"
            f"{_episodes_cell(row['n_episodes'], row['n_sampling_seeds'])} |",
            f"{_cell(row['speedup'], '.2f')}{'×' if row['speedup'] is not None else ''} |",
            f"{_cell(row['latency_ms'], '.1f')} | {_cell(gflops, '.3f')} |",
            f"{_cell(row['action_frequency_hz'], '.1f')} | {row['n_runs']} |",
        ]))
    return "\n".join(lines) + "\n"


def write_markdown(rows: list[dict], path) -> Path:
    notes = (
        "\nsuccess: mean_score ± its standard error from the test episodes (sample std / sqrt(episodes), or the "
        "binomial sqrt(p(1-p)/n) where the runner logs no per-episode score; for a mean over seeds or checkpoints, sqrt(sum se²) / n), with the std over training seeds where there are "
        "several. `max` = the best-scored checkpoint, `last-10` = per seed the mean over the last 10 evaluated "
        "checkpoints (only latest.ckpt in the released tree, so its score). Episodes: per checkpoint evaluation; "
        "'3×50' = the runs of three sampling seeds (same episodes, other noise) pooled into one. Speedup, latency, GFLOPs per action "
        "chunk (one predict_action) and action frequency: mean over every run of the task and setting; speedup "
        "is against the original policy timed in the same run.\n"
    )
    return _write_text(Path(path), "# Benchmark summary\n\n" + markdown_table(rows) + notes)


# ---------------------------------------------------------------- plots


def _success(row: dict) -> tuple[Optional[float], float]:
    """(success, error bar) for plotting: max checkpoint, else last-10; the bar is the episodes' standard
    error (the seeds' std where unknown)."""
    for key in ("success_max", "success_last10"):
        if row[key] is not None:
            error = row[f"{key}_se"] if row[f"{key}_se"] is not None else row[f"{key}_std"]
            return row[key], error or 0.0
    return None, 0.0


def _save_png(fig, path: Path) -> Path:
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))


def _settings_in_order(rows: list[dict]) -> list[str]:
    """Every row's label (cache description, else setting), in the rows' (table) order."""
    return list(dict.fromkeys(r["cache"] or r["setting"] for r in rows))


def plot_success_vs_speedup(rows: list[dict], path) -> Optional[Path]:
    """One panel per task: a point per setting at (speedup, success), the standard error as error bar,
    the original's score as a line with its band."""
    tasks = sorted({r["task"] for r in rows if r["speedup"] is not None and _success(r)[0] is not None})
    if not tasks:
        return None
    colors = {label: f"C{i % 10}" for i, label in enumerate(_settings_in_order(rows))}
    markers = {"original": "s", "threshold": "^", "optimal": "o"}
    ncols = min(3, len(tasks))
    nrows = -(-len(tasks) // ncols)
    from matplotlib.figure import Figure  # here: --help stays instant

    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks):
        for row in rows:
            success, error = _success(row)
            if row["task"] != task or row["speedup"] is None or success is None:
                continue
            label = row["cache"] or row["setting"]
            if row["mode"] == "original":
                ax.axhline(success, color="gray", linewidth=0.8)
                ax.axhspan(success - error, success + error, color="gray", alpha=0.15)
            ax.errorbar(row["speedup"], success, yerr=error, fmt=markers.get(row["mode"], "o"), color=colors[label],
                        capsize=3, label=label)
        ax.set_title(task)
        ax.set_xlabel("speedup (×)")
        ax.set_ylabel("success")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    return _save_png(fig, Path(path))


def plot_mode_bars(rows: list[dict], path) -> Optional[Path]:
    """Two panels, success (± standard error) and speedup: per task, one bar per setting."""
    tasks = sorted({r["task"] for r in rows})
    labels = _settings_in_order(rows)
    if not tasks:
        return None
    by_key = {(r["task"], r["cache"] or r["setting"]): r for r in rows}
    width = 0.8 / len(labels)
    x = np.arange(len(tasks))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(7.0, 0.35 * len(tasks) * len(labels) + 3), 6.5), layout="constrained")
    ax_success, ax_speed = fig.subplots(2, 1, sharex=True)
    for i, label in enumerate(labels):
        rows_of_setting = [by_key.get((task, label)) for task in tasks]
        success = [(_success(r) if r else (None, 0.0)) for r in rows_of_setting]
        offsets = x + (i - (len(labels) - 1) / 2) * width
        ax_success.bar(offsets, [s if s is not None else 0.0 for s, _ in success], width,
                       yerr=[e if s is not None else 0.0 for s, e in success], capsize=2, label=label,
                       color=f"C{i % 10}")
        ax_speed.bar(offsets, [(r["speedup"] or 0.0) if r else 0.0 for r in rows_of_setting], width,
                     label=label, color=f"C{i % 10}")
    ax_success.set_ylabel("success")
    ax_success.set_ylim(0, 1.05)
    ax_success.legend(fontsize="x-small", ncols=min(4, len(labels)))
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
        raise ValueError(f"no results under {results_dir}/<task>/train_<i>/<kind>/<setting>/; "
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
