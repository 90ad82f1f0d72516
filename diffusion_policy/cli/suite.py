"""Batch BAC schedules and benchmarks over every task (bac-suite; the shs/ scripts are thin wrappers of this).

    bac-suite schedules --device cuda:0 --num_caches 5 [--ph_only|--mh_only|--lowdim_only]
    bac-suite run --device cuda:0 --skip_video [--task can_ph] [--jobs 4] [--dry_run]

`run` evaluates, for every checkpoint, the grid of cache settings the flags span: original; threshold at
each --cache_threshold (default 5); optimal at each --num_caches (default 5) x --num_bu_blocks (default 3
here, the paper's BAC: ACS + Bubbling Union) x --strategy. The paper's table:
    bac-suite run --cache_threshold 5,10 --num_caches 5,8,10 --num_bu_blocks 0,3 --n_test 50 --n_train 0
(add --seed 0,1,2 to run each setting with three sampling seeds, which bac-aggregate pools: a 50-episode
score is itself noisy).

This file is the one place that knows the task list, the checkpoint tree and the filters. A run is a
typed job (EvalJob: `evaluate_checkpoint` with a CacheConfig and EvalSettings; ScheduleJob:
`compute_optimal_schedules`), executed as a library call in a child process of its own (spawned:
its own torch threads, envs, crash and log); the equivalent bac-* command line is printed by
--dry_run and heads each run's log. Checkpoint layouts (BAC README §1):

    checkpoint/<task>_<ph|mh>/diffusion_policy_transformer/train_<i>/checkpoints/*.ckpt
    checkpoint/low_dim/<task>/diffusion_policy_transformer/train_<i>/checkpoints/*.ckpt
    checkpoint/<task>/<name>.ckpt          flat: a bundled checkpoint, counted as train_0

In each checkpoints dir, `max` is the epoch=XXXX-test_mean_score=Y.YYY.ckpt with the highest score
(ties: the later epoch) and `latest` is latest.ckpt; `epochs` adds every scored file as epoch_XXXX.
Schedules go to assets/<task>/ from train_0's max checkpoint and serve every seed and kind, as in
the original. One benchmark run writes results/<task>/train_<i>/<kind>/<setting>/{eval_results.json,
benchmark_results.json, run.log}, <setting> being `setting_name` of its cache (original, threshold_5,
optimal_k5_bu3, optimal_k5_bu3_forecast1, optimal_l2_k5_bu0, optimal_k5_bu3_recompute_l0ffn), and
<setting>_sampling_seed<S> for a sampling seed S other than 0 (`--seed 0,1,2`: every setting three times,
same episodes, other noise; bac-aggregate pools them). Runs whose two JSON files are already there are
skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import concurrent.futures
import itertools
import multiprocessing
import os
import json
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from diffusion_policy.acceleration.config import CACHE_MODES, CacheConfig
from diffusion_policy.cli import flags
from diffusion_policy.env_runner.settings import EvalSettings

REPO_ROOT = Path(__file__).resolve().parents[1]

GROUPS = ("ph", "mh", "lowdim", "other")
MODES = CACHE_MODES
CKPT_KINDS = ("max", "latest", "epochs")
TREE_SUBDIR = "diffusion_policy_transformer"
SCORED_CKPT = re.compile(r"^epoch=(\d+)-test_mean_score=(-?\d+(?:\.\d+)?)\.ckpt$")
EVAL_OUTPUTS = ("eval_results.json", "benchmark_results.json")
SAMPLING_SEED_SUFFIX = "_sampling_seed"  # results/<task>/train_<i>/<kind>/<setting>_sampling_seed<S>/


@dataclass(frozen=True)
class TaskSpec:
    name: str  # key of results/<name>/ and assets/<name>/, e.g. "can_ph"
    group: str  # "ph", "mh", "lowdim" or "other" (what the --*_only filters select)
    subdir: str  # checkpoint dir under the checkpoint root, e.g. "can_ph" or "low_dim/kitchen"
    required: bool = True  # reported as missing when absent


# The paper's tasks; optional ones are benchmarked only when their checkpoints are there.
TASKS = (
    TaskSpec("lift_ph", "ph", "lift_ph"),
    TaskSpec("lift_mh", "mh", "lift_mh"),
    TaskSpec("can_ph", "ph", "can_ph"),
    TaskSpec("can_mh", "mh", "can_mh"),
    TaskSpec("square_ph", "ph", "square_ph"),
    TaskSpec("square_mh", "mh", "square_mh"),
    TaskSpec("transport_ph", "ph", "transport_ph"),
    TaskSpec("transport_mh", "mh", "transport_mh"),
    TaskSpec("tool_hang_ph", "ph", "tool_hang_ph"),
    TaskSpec("block_pushing", "lowdim", "low_dim/block_pushing"),
    TaskSpec("kitchen", "lowdim", "low_dim/kitchen"),
    TaskSpec("pusht", "lowdim", "low_dim/pusht", required=False),
)


@dataclass(frozen=True)
class EvalJob:
    """One evaluation: `evaluate_checkpoint` with the library's own config objects."""

    checkpoint: str
    output_dir: str
    cache: CacheConfig
    settings: EvalSettings
    device: str = "cpu"
    num_inference_steps: Optional[int] = None
    trust_checkpoint: bool = False

    def run(self) -> None:
        from diffusion_policy.env_runner.evaluate import evaluate_checkpoint

        evaluate_checkpoint(self.checkpoint, self.output_dir, self.cache, device=self.device,
                            settings=self.settings, num_inference_steps=self.num_inference_steps,
                            trust_checkpoint=self.trust_checkpoint)

    def command(self) -> list[str]:
        """The bac-eval command line that does the same (for --dry_run and the run's log)."""
        args = ["bac-eval", "--checkpoint", self.checkpoint, "-o", self.output_dir, "--device", self.device]
        args += flags.cache_config_flags(self.cache) + flags.eval_settings_flags(self.settings)
        if self.num_inference_steps is not None:
            args += ["--num_inference_steps", str(self.num_inference_steps)]
        return args + ["--trust_checkpoint"] * self.trust_checkpoint


@dataclass(frozen=True)
class ScheduleJob:
    """One schedule computation: `compute_optimal_schedules` for a task's checkpoint."""

    checkpoint: str
    output_dir: str
    device: str = "cpu"
    num_caches: tuple[int, ...] = (5,)
    metrics: tuple[str, ...] = ("cosine",)
    force_recompute: bool = False
    trust_checkpoint: bool = False
    strategies: tuple[str, ...] = ("reuse",)

    def run(self) -> None:
        from diffusion_policy.activation_utils.calibrate import compute_optimal_schedules

        compute_optimal_schedules(self.checkpoint, self.output_dir, device=self.device,
                                  num_caches_list=tuple(self.num_caches), metrics=tuple(self.metrics),
                                  force_recompute=self.force_recompute, trust_checkpoint=self.trust_checkpoint,
                                  strategies=tuple(self.strategies))

    def command(self) -> list[str]:
        args = ["bac-schedules", "-c", self.checkpoint, "-o", self.output_dir, "-d", self.device,
                "--num_caches", ",".join(map(str, self.num_caches)), "--metric", ",".join(self.metrics)]
        if tuple(self.strategies) != ("reuse",):
            args += ["--strategy", ",".join(self.strategies)]
        return args + ["--force_recompute"] * self.force_recompute + ["--trust_checkpoint"] * self.trust_checkpoint


@dataclass(frozen=True)
class PlannedRun:
    name: str  # e.g. "can_ph/train_0/max/optimal"
    job: EvalJob | ScheduleJob  # what the run calls (in a child process of its own)
    output_dir: str
    log_path: str
    expected: tuple[str, ...]  # files whose presence (as valid JSON) means the run is done
    cwd: str  # the working directory of the run (absolute, so a Ray worker can use it)

    @property
    def command(self) -> tuple[str, ...]:
        return tuple(self.job.command())


@dataclass
class Plan:
    runs: list[PlannedRun] = field(default_factory=list)  # to execute
    done: list[PlannedRun] = field(default_factory=list)  # results already there: skipped
    missing: list[str] = field(default_factory=list)  # one line per missing task / seed / schedule


@dataclass(frozen=True)
class RunOutcome:
    name: str
    returncode: int
    log_path: str
    seconds: float
    error: str = ""  # why it failed, besides the log

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class EvalOptions:
    """What every eval run of a plan shares: the cache settings (mode and schedule dir set per run),
    the rollout settings, and the checkpoint options. The library's own config objects, no copies."""

    cache: CacheConfig = field(default_factory=lambda: CacheConfig(num_bu_blocks=3))  # the paper's BAC: ACS + BU 3
    settings: EvalSettings = field(default_factory=EvalSettings)
    num_inference_steps: Optional[int] = None
    trust_checkpoint: bool = False


@dataclass(frozen=True)
class CacheGrid:
    """The cache settings a suite run compares: every mode, threshold mode at every period, optimal mode
    at every num_caches x num_bu_blocks x strategy (the rest of each setting: EvalOptions.cache)."""

    modes: tuple[str, ...] = MODES
    cache_thresholds: tuple[int, ...] = (5,)
    num_caches: tuple[int, ...] = (5,)
    num_bu_blocks: tuple[int, ...] = (3,)
    strategies: tuple[str, ...] = ("reuse",)

    def settings(self, base: CacheConfig, optimal_steps_dir: Optional[str] = None) -> list[CacheConfig]:
        """One CacheConfig per setting, in table order; optimal ones read schedules from optimal_steps_dir."""
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ValueError(f"unknown mode {', '.join(bad)}; modes: {', '.join(MODES)}")
        configs = []
        for mode in MODES:  # table order, whatever order the flags gave
            if mode not in self.modes:
                continue
            if mode == "original":
                configs.append(dataclasses.replace(base, mode="original", optimal_steps_dir=None))
            elif mode == "threshold":
                configs += [dataclasses.replace(base, mode="threshold", cache_threshold=n, optimal_steps_dir=None)
                            for n in sorted(set(self.cache_thresholds))]
            elif optimal_steps_dir is not None:
                configs += [dataclasses.replace(base, mode="optimal", num_caches=k, num_bu_blocks=bu, strategy=strategy,
                                                optimal_steps_dir=str(optimal_steps_dir))
                            for strategy in dict.fromkeys(self.strategies)
                            for k in sorted(set(self.num_caches)) for bu in sorted(set(self.num_bu_blocks))]
        return configs


def setting_name(cache: CacheConfig) -> str:
    """The results dir of one cache setting: original, threshold_5, optimal_k5_bu3 (optimal_l2_k5_bu3 for a
    metric other than cosine, optimal_k5_bu3_forecast1 for the forecast strategy)."""
    if cache.mode == "threshold":
        name = f"threshold_{cache.cache_threshold}"
    elif cache.mode == "optimal":
        metric = "" if cache.metric == "cosine" else f"{cache.metric}_"
        name = f"optimal_{metric}k{cache.num_caches}_bu{cache.num_bu_blocks}"
    else:
        return "original"
    if cache.strategy == "forecast":
        name += f"_forecast{cache.forecast_order}"
    if cache.recompute_blocks:  # decoder.layers.0.ffn -> l0ffn
        name += "_recompute_" + "_".join(b.replace("decoder.layers.", "l").replace(".", "") for b in cache.recompute_blocks)
    return name


def run_dir_name(setting: str, sampling_seed: int = 0) -> str:
    """The results dir of one setting run with one sampling seed: the setting's name for seed 0,
    <setting>_sampling_seed<S> otherwise (bac-aggregate pools a setting's sampling seeds into one row)."""
    return setting if sampling_seed == 0 else f"{setting}{SAMPLING_SEED_SUFFIX}{sampling_seed}"


def parse_run_dir_name(name: str) -> tuple[str, int]:
    """run_dir_name's inverse: (setting, sampling seed)."""
    setting, _, seed = name.rpartition(SAMPLING_SEED_SUFFIX)
    return (setting, int(seed)) if setting and seed.isdigit() else (name, 0)


# ---------------------------------------------------------------- checkpoint discovery


def group_of(name: str) -> str:
    """Filter group of a task found on disk but not in TASKS."""
    if name.endswith("_ph"):
        return "ph"
    if name.endswith("_mh"):
        return "mh"
    return "lowdim" if "lowdim" in name else "other"


def has_checkpoints(task_dir: Path) -> bool:
    return (task_dir / TREE_SUBDIR).is_dir() or any(task_dir.glob("*.ckpt"))


def discover_tasks(checkpoint_root) -> list[TaskSpec]:
    """TASKS plus every other task dir under the root that holds checkpoints (tree or flat).

    A found dir whose name is already taken (e.g. checkpoint/kitchen next to low_dim/kitchen) is ignored.
    """
    root = Path(checkpoint_root)
    tasks = list(TASKS)
    for parent, prefix in ((root, ""), (root / "low_dim", "low_dim/")):
        if not parent.is_dir():
            continue
        for task_dir in sorted(p for p in parent.iterdir() if p.is_dir()):
            taken = {spec.name for spec in tasks}
            if task_dir.name in taken or task_dir.name == "low_dim" or not has_checkpoints(task_dir):
                continue
            group = "lowdim" if prefix else group_of(task_dir.name)
            tasks.append(TaskSpec(task_dir.name, group, prefix + task_dir.name, required=False))
    return tasks


def select_tasks(checkpoint_root, group: Optional[str] = None, names: Sequence[str] = ()) -> list[TaskSpec]:
    """The tasks passing the filters; an unknown name or an empty selection is a ValueError."""
    tasks = discover_tasks(checkpoint_root)
    by_name = {spec.name: spec for spec in tasks}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    if names:
        tasks = [by_name[n] for n in names]
    if group:
        tasks = [spec for spec in tasks if spec.group == group]
    if not tasks:
        raise ValueError(f"no task matches --task {','.join(names)} with the {group} filter")
    return tasks


def scored_checkpoints(ckpt_dir: Path) -> list[tuple[int, float, Path]]:
    """(epoch, test_mean_score, path) of every epoch=XXXX-test_mean_score=Y.YYY.ckpt, by epoch."""
    found = []
    for path in ckpt_dir.glob("epoch=*.ckpt"):
        match = SCORED_CKPT.match(path.name)
        if match:
            found.append((int(match.group(1)), float(match.group(2)), path))
    return sorted(found)


def checkpoint_kinds(ckpt_dir: Path, flat: bool = False) -> dict[str, Path]:
    """{'max': best scored file, 'latest': latest.ckpt, 'epoch_XXXX': each scored file} that exist.

    In a flat dir without scored names, a single other .ckpt file counts as 'max'.
    """
    kinds: dict[str, Path] = {}
    scored = scored_checkpoints(ckpt_dir)
    if scored:
        kinds["max"] = max(scored, key=lambda item: (item[1], item[0]))[2]  # best score, then latest epoch
    elif flat:
        others = sorted(p for p in ckpt_dir.glob("*.ckpt") if p.name != "latest.ckpt")
        if len(others) == 1:
            kinds["max"] = others[0]
    if (ckpt_dir / "latest.ckpt").is_file():
        kinds["latest"] = ckpt_dir / "latest.ckpt"
    for epoch, score, path in scored:
        kinds[f"epoch_{epoch:04d}"] = path
    return kinds


def seed_checkpoint_dirs(checkpoint_root, spec: TaskSpec, seeds: Sequence[int]) -> tuple[dict[int, Path], bool]:
    """({seed: checkpoints dir}, flat) for the seeds asked; a flat dir serves train_0 only."""
    task_dir = Path(checkpoint_root) / spec.subdir
    if (task_dir / TREE_SUBDIR).is_dir():
        return {s: task_dir / TREE_SUBDIR / f"train_{s}" / "checkpoints" for s in seeds}, False
    return ({0: task_dir} if 0 in seeds else {}), True


def wanted_kinds(available: dict[str, Path], ckpt_kinds: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    """(kind -> checkpoint to evaluate, descriptions of the kinds asked for but absent)."""
    chosen, absent = {}, []
    for kind in ckpt_kinds:
        if kind == "epochs":
            chosen.update({k: p for k, p in available.items() if k.startswith("epoch_")})
        elif kind in available:
            chosen[kind] = available[kind]
        else:
            absent.append("no max checkpoint (epoch=*-test_mean_score=*.ckpt)" if kind == "max" else "no latest.ckpt")
    return chosen, absent


def find_checkpoints(checkpoint_root, spec: TaskSpec, seeds: Sequence[int],
                     ckpt_kinds: Sequence[str]) -> tuple[dict[int, dict[str, Path]], list[str]]:
    """({seed: {kind: path}}, missing lines: one per absent task, or per seed with absent kinds)."""
    task_dir = Path(checkpoint_root) / spec.subdir
    if not has_checkpoints(task_dir):
        if not spec.required:
            return {}, []
        return {}, [f"{spec.name}: no checkpoints (expected {task_dir}/{TREE_SUBDIR}/train_<i>/checkpoints/*.ckpt)"]
    dirs, flat = seed_checkpoint_dirs(checkpoint_root, spec, seeds)
    found, missing = {}, []
    for seed, ckpt_dir in dirs.items():
        chosen, absent = wanted_kinds(checkpoint_kinds(ckpt_dir, flat) if ckpt_dir.is_dir() else {}, ckpt_kinds)
        if chosen:
            found[seed] = chosen
        if not ckpt_dir.is_dir():
            missing.append(f"{spec.name} train_{seed}: no directory {ckpt_dir}")
        elif absent:
            missing.append(f"{spec.name} train_{seed}: {', '.join(absent)} in {ckpt_dir}")
    return found, missing


# ---------------------------------------------------------------- planning


def is_complete(run: PlannedRun) -> bool:
    """True if every expected output exists and, for .json files, holds a JSON object."""
    for name in run.expected:
        path = Path(run.cwd, name)  # relative paths are relative to the run's cwd, also on a Ray worker
        if not path.is_file():
            return False
        if path.suffix == ".json":
            try:
                if not isinstance(json.loads(path.read_text()), dict):
                    return False
            except (OSError, ValueError):
                return False
    return True


def plan_runs(
    checkpoint_root="checkpoint",
    results_dir="results",
    assets_dir="assets",
    device: str = "cpu",
    group: Optional[str] = None,
    tasks: Sequence[str] = (),
    seeds: Sequence[int] = (0, 1, 2),
    ckpt_kinds: Sequence[str] = ("max", "latest"),
    grid: CacheGrid = CacheGrid(),
    options: EvalOptions = EvalOptions(),
    job_type: Optional[type] = None,
    force: bool = False,
    sampling_seeds: Optional[Sequence[int]] = None,
) -> Plan:
    """Every task x train_<seed> x checkpoint kind x cache setting x sampling seed run (job_type: EvalJob or
    a stand-in). sampling_seeds: the seeds of the sampling noise, one run each (default: options.settings.seed's
    one run); the episodes' env seeds are the same in every run."""
    from diffusion_policy.activation_utils.schedule_files import optimal_steps_dir, schedule_path

    bad = [k for k in ckpt_kinds if k not in CKPT_KINDS]
    if bad:
        raise ValueError(f"unknown checkpoint kind {', '.join(bad)}; kinds: {', '.join(CKPT_KINDS)}")
    job_type = job_type or EvalJob
    sampling_seeds = tuple(dict.fromkeys(sampling_seeds)) if sampling_seeds else (options.settings.seed,)
    cwd = str(Path.cwd())
    plan = Plan()
    for spec in select_tasks(checkpoint_root, group, tasks):
        found, missing = find_checkpoints(checkpoint_root, spec, seeds, ckpt_kinds)
        plan.missing += missing
        schedule_dir = optimal_steps_dir(Path(assets_dir) / spec.name, options.cache.metric)
        settings = grid.settings(options.cache, str(schedule_dir))
        if found:
            absent = {}  # schedule file -> the settings that need it
            for cache in settings:
                if cache.mode == "optimal":
                    path = schedule_path(Path(assets_dir) / spec.name, cache.metric, cache.num_caches, cache.strategy)
                    if not path.is_file():
                        absent.setdefault(path, []).append(cache)
            for path, caches in absent.items():
                plan.missing.append(
                    f"{spec.name}: no schedule {path} ({', '.join(map(setting_name, caches))} left out); compute it "
                    f"with ./shs/get_steps/get_optimal_steps.sh --device {device} --num_caches {caches[0].num_caches} "
                    f"--strategy {caches[0].strategy} --task {spec.name}")
            left_out = [c for caches in absent.values() for c in caches]
            settings = [c for c in settings if c not in left_out]
        for seed, kinds in found.items():
            for kind, checkpoint in kinds.items():
                for cache, sampling_seed in itertools.product(settings, sampling_seeds):
                    name = run_dir_name(setting_name(cache), sampling_seed)
                    out = Path(results_dir) / spec.name / f"train_{seed}" / kind / name
                    job = job_type(str(checkpoint), str(out), cache,
                                   dataclasses.replace(options.settings, seed=sampling_seed), device,
                                   options.num_inference_steps, options.trust_checkpoint)
                    run = PlannedRun(
                        name=f"{spec.name}/train_{seed}/{kind}/{name}",
                        job=job,
                        output_dir=str(out),
                        log_path=str(out / "run.log"),
                        expected=tuple(str(out / f) for f in EVAL_OUTPUTS),
                        cwd=cwd,
                    )
                    (plan.done if not force and is_complete(run) else plan.runs).append(run)
    return plan


def plan_schedules(
    checkpoint_root="checkpoint",
    assets_dir="assets",
    device: str = "cpu",
    group: Optional[str] = None,
    tasks: Sequence[str] = (),
    num_caches: Sequence[int] = (5,),
    metrics: Sequence[str] = ("cosine", "l1", "mse"),
    force_recompute: bool = False,
    trust_checkpoint: bool = False,
    strategies: Sequence[str] = ("reuse",),
) -> Plan:
    """One get_optimal_cache_update_steps.py run per task, on train_0's max checkpoint (a flat dir's
    latest.ckpt when it holds no other)."""
    from diffusion_policy.activation_utils.schedule_files import bubbling_union_path, schedule_path

    plan = Plan()
    for spec in select_tasks(checkpoint_root, group, tasks):
        found, missing = find_checkpoints(checkpoint_root, spec, seeds=(0,), ckpt_kinds=("max",))
        if 0 not in found and seed_checkpoint_dirs(checkpoint_root, spec, (0,))[1]:
            # a flat dir of one shipped latest.ckpt (checkpoint/<task>/latest.ckpt): that one
            found, missing = find_checkpoints(checkpoint_root, spec, seeds=(0,), ckpt_kinds=("latest",))
        plan.missing += missing
        if 0 not in found:
            continue
        out = Path(assets_dir) / spec.name
        job = ScheduleJob(str(next(iter(found[0].values()))), str(out), device, tuple(num_caches), tuple(metrics),
                          force_recompute, trust_checkpoint, tuple(strategies))
        expected = [bubbling_union_path(out, m) for m in metrics]
        expected += [schedule_path(out, m, k, strategy) for m in metrics for k in num_caches for strategy in strategies]
        run = PlannedRun(name=spec.name, job=job, output_dir=str(out),
                         log_path=str(out / "get_optimal_steps.log"), expected=tuple(map(str, expected)),
                         cwd=str(Path.cwd()))
        (plan.done if not force_recompute and is_complete(run) else plan.runs).append(run)
    return plan


# ---------------------------------------------------------------- execution


def _run_job_in_child(job, log_path: str, cwd: str) -> None:
    """Child process: the job's library call, its stdout, stderr and logging into log_path."""
    import traceback

    os.chdir(cwd)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (the process's own streams)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    from diffusion_policy.common.checkpoint import CheckpointError
    from diffusion_policy.common.console import setup_console_logging

    setup_console_logging()
    try:
        job.run()
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    sys.exit(0)


def execute_run(run: PlannedRun) -> RunOutcome:
    """Run one planned job in a fresh child process (its own torch threads, envs and crashes), its
    output into run.log_path; check its outputs."""
    Path(run.cwd, run.output_dir).mkdir(parents=True, exist_ok=True)
    log_path = Path(run.cwd, run.log_path)
    start = time.monotonic()
    error = ""
    log_path.write_text(f"$ {shlex.join(run.command)}\n")
    # Imported, not taken from this function's globals: on Ray this function may arrive pickled by
    # value, and the child process needs the target by its module path.
    from diffusion_policy.cli.suite import _run_job_in_child

    child = multiprocessing.get_context("spawn").Process(target=_run_job_in_child,
                                                         args=(run.job, str(log_path), run.cwd))
    child.start()
    child.join()
    returncode = child.exitcode if child.exitcode is not None else -1
    if returncode == 0 and not is_complete(run):
        returncode, error = 1, "exited 0 but did not write " + ", ".join(Path(p).name for p in run.expected)
    if error:
        with open(log_path, "a") as log:
            log.write(f"error: {error}\n")
    return RunOutcome(run.name, returncode, run.log_path, time.monotonic() - start, error)


Runner = Callable[[PlannedRun], RunOutcome]


def _outcome_line(index: int, total: int, outcome: RunOutcome) -> str:
    status = "ok    " if outcome.ok else f"FAILED (exit {outcome.returncode})"
    return f"[{index}/{total}] {status} {outcome.name} ({outcome.seconds:.1f} s, log {outcome.log_path})"


def _run_local(runs: Sequence[PlannedRun], jobs: int, runner: Runner, report) -> list[RunOutcome]:
    outcomes = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # each run: a child process
        futures = {pool.submit(runner, run): run for run in runs}
        try:
            for future in concurrent.futures.as_completed(futures):
                run = futures[future]
                try:
                    outcome = future.result()
                except Exception as err:  # a runner bug must not stop the other runs
                    outcome = RunOutcome(run.name, -1, run.log_path, 0.0, f"{type(err).__name__}: {err}")
                outcomes.append(outcome)
                report(_outcome_line(len(outcomes), len(runs), outcome))
        except KeyboardInterrupt:  # Ctrl-C reaches the running children too; start no new ones
            pool.shutdown(cancel_futures=True)
            raise
    return outcomes


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("--backend ray needs Ray: pip install 'ray[default]' "
                           "(or the project's extra: pip install -e '.[dist]')") from None
    return ray


def _run_ray(runs: Sequence[PlannedRun], runner: Runner, device: str, cpus_per_run: float,
             address: Optional[str], report) -> list[RunOutcome]:
    """One Ray task per run; outputs land in the shared results tree, the driver gathers outcomes."""
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address)  # None: RAY_ADDRESS, else a fresh local cluster
    try:
        gpus = 1 if device.startswith("cuda") else 0
        if gpus and ray.cluster_resources().get("GPU", 0) < 1:
            raise RuntimeError(f"--device {device} with --backend ray needs GPUs in the Ray cluster; it has none")
        module = sys.modules.get(runner.__module__)
        if module is not None and runner.__module__ != "__main__":
            ray.cloudpickle.register_pickle_by_value(module)  # workers need not import scripts/
        remote = ray.remote(num_gpus=gpus, num_cpus=cpus_per_run)(runner)
        pending = {remote.remote(run): run for run in runs}
        outcomes = []
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as err:  # RayTaskError, worker crash
                outcome = RunOutcome(run.name, -1, run.log_path, 0.0, f"{type(err).__name__}: {err}")
            outcomes.append(outcome)
            report(_outcome_line(len(outcomes), len(runs), outcome))
        return outcomes
    finally:
        if started_here:
            ray.shutdown()


def run_plan(
    runs: Sequence[PlannedRun],
    jobs: int = 1,
    backend: str = "local",
    runner: Runner = execute_run,
    device: str = "cpu",
    cpus_per_run: float = 1,
    ray_address: Optional[str] = None,
    report: Callable[[str], None] = print,
) -> list[RunOutcome]:
    """Execute runs (local: `jobs` at a time; ray: one Ray task each); failures don't stop the rest.

    On Ray each task gets one GPU when device is cuda (Ray sets CUDA_VISIBLE_DEVICES, so cuda:0 is
    that GPU) and cpus_per_run CPUs; the working tree and results dir must be on a shared filesystem.
    """
    if backend == "local":
        return _run_local(runs, jobs, runner, report)
    if backend == "ray":
        return _run_ray(runs, runner, device, cpus_per_run, ray_address, report) if runs else []
    raise ValueError(f"unknown backend {backend!r}; use local or ray")


def aggregate(results_dir="results", plots: bool = True) -> list[dict]:
    """Write results_dir/summary.{csv,md} and plots; returns the summary rows."""
    from diffusion_policy.cli.aggregate import aggregate as aggregate_results

    return aggregate_results(results_dir, plots=plots)


# ---------------------------------------------------------------- command line


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_device_flags(parser)
    only = parser.add_mutually_exclusive_group()
    for group in ("ph", "mh", "lowdim"):
        only.add_argument(f"--{group}_only", dest="group", action="store_const", const=group,
                          help=f"only the {group} tasks")
    parser.add_argument("--task", type=flags.name_list, default=[], help="task name(s), e.g. can_ph or can_ph,kitchen")
    parser.add_argument("--checkpoint_root", default="checkpoint",
                        help="where the checkpoints are (the layouts in this file's docstring)")
    parser.add_argument("--assets_dir", default="assets", help="schedules live in <assets_dir>/<task>/")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (local backend)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: child processes here, --jobs at a time; ray: one Ray task per run")
    parser.add_argument("--cpus_per_run", type=float, default=1, help="Ray CPUs per run")
    parser.add_argument("--ray_address", default=None, help="Ray cluster (default: RAY_ADDRESS, else a local one)")
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="allow arbitrary pickled code and any _target_ in the checkpoints (unsafe)")
    parser.add_argument("--dry_run", action="store_true", help="print the planned commands and exit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bac-suite", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sched = sub.add_parser("schedules", help="BAC schedules for every task (shs/get_steps/get_optimal_steps.sh)",
                           description="Compute the BAC schedules of every task's checkpoint into <assets_dir>/<task>/.")
    _add_common_arguments(sched)
    flags.add_num_caches_flag(sched)
    flags.add_metric_flag(sched)
    flags.add_strategy_flags(sched, forecast_order=False)
    sched.add_argument("--force_recompute", action="store_true",
                       help="recompute schedules even when they are there for the checkpoint")

    bench = sub.add_parser("run", help="evaluate every checkpoint and mode (shs/benchmark/run_all_benchmarks.sh)",
                           description="Evaluate every checkpoint in every cache mode, then aggregate the results.")
    _add_common_arguments(bench)
    bench.add_argument("--results_dir", default="results",
                       help="results/<task>/train_<i>/<kind>/<setting>/ go here")
    flags.add_cache_mode_flag(bench)
    bench.set_defaults(cache_mode=list(MODES))  # the suite compares every mode
    bench.add_argument("--seeds", type=flags.int_list, default=[0, 1, 2], help="training seeds (train_<i>)")
    bench.add_argument("--ckpt_kinds", type=flags.name_list, default=["max", "latest"],
                       help="max, latest and/or epochs (every epoch=*-test_mean_score=*.ckpt)")
    flags.add_video_flag(bench)
    flags.add_cache_threshold_flag(bench)
    flags.add_metric_flag(bench)
    flags.add_num_caches_flag(bench)
    flags.add_num_bu_blocks_flag(bench)
    flags.add_strategy_flags(bench)
    flags.add_recompute_blocks_flag(bench)
    bench.set_defaults(num_bu_blocks=[3])  # the suite's optimal mode is the paper's BAC: ACS + Bubbling Union 3
    flags.add_cache_switches(bench)
    flags.add_rollout_flags(bench, seed_help="seed(s) of the sampling noise, one run per seed, e.g. 0,1,2")
    flags.add_latency_samples_flag(bench)
    bench.add_argument("--force", action="store_true", help="re-run runs whose results exist")
    bench.add_argument("--no_plots", action="store_true", help="write no summary plots")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def format_command(command: Sequence[str]) -> str:
    shown = ["python" if i == 0 and part == sys.executable else part for i, part in enumerate(command)]
    return shlex.join(shown)


def _plan_from_args(args) -> Plan:
    if args.command == "schedules":
        return plan_schedules(args.checkpoint_root, args.assets_dir, args.device, args.group, args.task,
                              args.num_caches, args.metric, args.force_recompute, args.trust_checkpoint, args.strategy)
    grid = CacheGrid(tuple(args.cache_mode), tuple(args.cache_threshold), tuple(args.num_caches),
                     tuple(args.num_bu_blocks), tuple(args.strategy))
    options = EvalOptions(  # each run sets its mode, period, num_caches, BU blocks and strategy from the grid
        cache=flags.cache_config_from_args(args, mode="original", cache_threshold=args.cache_threshold[0],
                                           num_caches=args.num_caches[0], num_bu_blocks=args.num_bu_blocks[0],
                                           strategy=args.strategy[0]),
        settings=EvalSettings(n_test=args.n_test, n_train=args.n_train, n_envs=args.n_envs, max_steps=args.max_steps,
                              skip_video=args.skip_video, threads=args.threads,
                              latency_samples=args.latency_samples),
        num_inference_steps=args.num_inference_steps, trust_checkpoint=args.trust_checkpoint,
    )
    return plan_runs(args.checkpoint_root, args.results_dir, args.assets_dir, args.device, args.group, args.task,
                     args.seeds, args.ckpt_kinds, grid, options, force=args.force, sampling_seeds=args.seed)


def check_args(args) -> None:
    """One-line ValueError for the first flag outside its range (before anything is planned or run)."""
    from diffusion_policy.common.validation import check_device, check_range

    if not args.dry_run:  # a dry run may plan for another machine's devices
        check_device(args.device)
    check_range("--jobs", args.jobs, 1, allow_none=False)
    if args.cpus_per_run <= 0:
        raise ValueError(f"--cpus_per_run must be > 0, got {args.cpus_per_run}")
    check_range("--num_caches", min(args.num_caches), 1, allow_none=False)
    if args.command == "run":
        check_range("--num_bu_blocks", min(args.num_bu_blocks), 0, allow_none=False)
        check_range("--cache_threshold", min(args.cache_threshold), 1, allow_none=False)
        check_range("--n_test", args.n_test, 0)
        check_range("--n_train", args.n_train, 0)
        check_range("--n_envs", args.n_envs, 1)
        check_range("--max_steps", args.max_steps, 1)
        check_range("--num_inference_steps", args.num_inference_steps, 1)
        check_range("--latency_samples", args.latency_samples, 1, allow_none=False)
    check_range("--threads", args.threads, 1)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_args(args)
        plan = _plan_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if plan.missing:
        print(f"missing ({len(plan.missing)}):")
        for line in plan.missing:
            print(f"  {line}")
    print(f"planned: {len(plan.runs)} run(s) to do, {len(plan.done)} already done (skipped)")
    if args.dry_run:
        for run in plan.runs:
            print(format_command(run.command))
        return 0
    if not plan.runs and not plan.done:
        print(f"error: nothing to run: no checkpoints found under {args.checkpoint_root}/ for the selected tasks "
              "(see the checkpoint layout in the README)", file=sys.stderr)
        return 2
    try:
        outcomes = run_plan(plan.runs, args.jobs, args.backend, device=args.device,
                            cpus_per_run=args.cpus_per_run, ray_address=args.ray_address)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = [o for o in outcomes if not o.ok]
    print(f"done: {len(outcomes) - len(failed)} ok, {len(failed)} failed, {len(plan.done)} skipped, "
          f"{len(plan.missing)} missing")
    for outcome in failed:
        reason = f"; {outcome.error}" if outcome.error else ""
        print(f"  FAILED {outcome.name}: exit {outcome.returncode}{reason} (log {outcome.log_path})")
    aggregated = True
    if args.command == "run":
        try:
            aggregate(args.results_dir, plots=not args.no_plots)
            print(f"summary: {Path(args.results_dir) / 'summary.md'}")
        except ValueError as err:
            print(f"error: aggregation: {err}", file=sys.stderr)
            aggregated = False
    return 0 if not failed and aggregated else 1


if __name__ == "__main__":
    sys.exit(main())
