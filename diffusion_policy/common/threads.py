"""How many torch threads a command uses, chosen so that the machine's cores are not oversubscribed.

On a small machine, OpenMP threads that spin while env worker processes (or other programs) want the
same cores make every torch call wait for its slowest thread: one predict_action went from 7 s to
173 s with 2 threads on 2 busy cores. The default is therefore: the cores this process may use, less
the env worker processes that run beside the policy, less what other programs keep busy (the
1-minute load average), and at least 1. OMP_NUM_THREADS, when set, and `--threads N` override it.
"""

from __future__ import annotations

import argparse
import os


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads(env_workers: int = 0) -> tuple[int, str]:
    """(threads, why) for a command that runs `env_workers` env processes beside the policy.
    OMP_NUM_THREADS, when set, is the user's choice and wins."""
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) >= 1:
        return int(omp), "OMP_NUM_THREADS"
    cores = usable_cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    idle = max(cores - int(round(load)), 1)
    threads = max(1, min(cores - env_workers, idle))
    parts = [f"{cores} cores"]
    if env_workers:
        parts.append(f"{env_workers} env worker process{'es' if env_workers > 1 else ''}")
    if idle < cores:
        parts.append(f"1-min load average {load:.1f}")
    return threads, ", ".join(parts)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads (default: free cores, 1 when env worker processes run; printed)")


def set_threads(requested: int | None, env_workers: int = 0, report=print) -> int:
    """torch.set_num_threads(requested or the default) and report the choice in one line."""
    import torch  # here, not at the top: scripts import this module before argparse runs

    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        threads, why = requested, "--threads"
    else:
        threads, why = default_threads(env_workers)
        why += "; --threads N to choose"
    torch.set_num_threads(threads)
    if report is not None:
        report(f"torch threads: {threads} ({why})")
    return threads
