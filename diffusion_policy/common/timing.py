"""Latency statistics, computed one way everywhere (benchmarks, evaluation, collection)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def p90(values: Sequence[float]) -> float:
    """The 90th percentile by nearest rank on the sorted values (no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def latency_stats_ms(seconds: Sequence[float]) -> dict:
    """{median_ms, p90_ms, mean_ms, n} of latencies given in seconds."""
    return {
        "median_ms": statistics.median(seconds) * 1e3,
        "p90_ms": p90(seconds) * 1e3,
        "mean_ms": statistics.fmean(seconds) * 1e3,
        "n": len(seconds),
    }
