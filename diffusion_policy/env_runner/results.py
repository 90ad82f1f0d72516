"""What an evaluation produces, as dataclasses written to and read from its two JSON files.

    <output_dir>/eval_results.json        EvalResult: success, task metrics, per-episode rewards
    <output_dir>/benchmark_results.json   BenchmarkResult: latency of the mode and of `original` on
                                          the same observations in the same run, speedup, FLOPs, ...

The JSON layout is the dataclasses' fields (nested LatencyStats as objects), so the files stay
readable by any tool, and `load` gives the typed result back (one line naming the file if not).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from diffusion_policy.common.files import write_json_atomic

EVAL_RESULTS = "eval_results.json"
BENCHMARK_RESULTS = "benchmark_results.json"


@dataclass
class LatencyStats:
    median_ms: float
    p90_ms: float
    mean_ms: float
    n: int


@dataclass
class EpisodeReward:
    prefix: str  # 'train/' or 'test/'
    seed: int
    rewards: list[float]  # per env step
    total_reward: float
    max_reward: float


@dataclass
class EvalResult:
    checkpoint: str
    task: str
    cache: dict  # CacheConfig.describe()
    mean_score: Optional[float]  # test/mean_score (train/mean_score when there are no test episodes)
    metrics: dict[str, float]  # every metric of the task's runner
    episode_rewards: list[EpisodeReward]
    videos: dict[str, str] = field(default_factory=dict)
    n_episodes: int = 0
    time: str = ""

    def save(self, output_dir) -> Path:
        return write_json_atomic(Path(output_dir) / EVAL_RESULTS, dataclasses.asdict(self))

    @classmethod
    def load(cls, path) -> "EvalResult":
        data = _read(path, cls)
        data["episode_rewards"] = [EpisodeReward(**e) for e in data.get("episode_rewards", [])]
        return _build(cls, data, path)


@dataclass
class BenchmarkResult:
    task: str
    cache: dict
    num_inference_steps: int
    n_action_steps: int
    batch_size: int
    latency: LatencyStats  # this mode, re-timed on recorded observations
    latency_original: LatencyStats  # original, on the same observations, round-robin with it
    speedup: float  # latency_original.median_ms / latency.median_ms
    rollout_latency: LatencyStats  # every predict_action of the rollout
    flops_per_predict_action: float
    flops_per_predict_action_original: float
    flops_ratio: Optional[float]
    block_evaluations_per_predict_action: int
    block_evaluations_per_predict_action_original: int
    action_frequency_hz: float
    action_frequency_hz_original: float
    environment: dict = field(default_factory=dict)  # hardware, versions, threads

    def save(self, output_dir) -> Path:
        return write_json_atomic(Path(output_dir) / BENCHMARK_RESULTS, dataclasses.asdict(self))

    @classmethod
    def load(cls, path) -> "BenchmarkResult":
        data = _read(path, cls)
        for name in ("latency", "latency_original", "rollout_latency"):
            if isinstance(data.get(name), dict):
                data[name] = LatencyStats(**data[name])
        return _build(cls, data, path)


def _read(path, cls) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found; run the evaluation that writes it") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); rerun the evaluation") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a {cls.__name__}; rerun the evaluation")
    return data


def _build(cls, data: dict, path):
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as error:
        raise ValueError(f"{path} is not a complete {cls.__name__} ({error}); rerun the evaluation") from None
