"""Evaluate a checkpoint in simulation, plain or BAC-accelerated, and measure what the cache buys.

`evaluate_checkpoint` runs the task's env runner with the cached policy, then times the cached and
the original policy round-robin on observations recorded during that rollout, so the speedup in
`benchmark_results.json` compares the two under the same load and on the same inputs.
"""

from __future__ import annotations

import copy
import datetime
import os
import platform
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import tqdm

from diffusion_policy.acceleration import CacheConfig, apply_cache, remove_cache, update_steps_for
from diffusion_policy.acceleration.benchmark import count_flops, timed_predict_action
from diffusion_policy.common.checkpoint import load_checkpoint
from diffusion_policy.common.safe_config import safe_slug
from diffusion_policy.common.threads import set_threads
from diffusion_policy.common.timing import latency_stats_ms
from diffusion_policy.common.validation import check_device, check_output_dir
from diffusion_policy.env_runner.factory import make_env_runner
from diffusion_policy.env_runner.settings import EvalSettings  # noqa: F401 (the evaluation's settings)
from diffusion_policy.env_runner.results import BenchmarkResult, EpisodeReward, EvalResult, LatencyStats


class ObservationRecorder:
    """Policy proxy for the runner: forwards predict_action (sampling noise from its own generator,
    seeded with `seed`), keeps the first `limit` inputs for the re-timing."""

    def __init__(self, policy, limit: int, seed: int = 0):
        self.policy = policy
        self.limit = limit
        self.generator = torch.Generator(device=policy.device).manual_seed(seed)
        self.observations: list[dict] = []

    def __getattr__(self, name):  # device, dtype, n_obs_steps, ... come from the policy
        return getattr(self.policy, name)

    def reset(self) -> None:
        self.policy.reset()

    def predict_action(self, obs_dict: dict) -> dict:
        if len(self.observations) < self.limit:
            self.observations.append({k: v.clone() for k, v in obs_dict.items()})
        return self.policy.predict_action(obs_dict, generator=self.generator)


def task_name_of(cfg) -> str:
    """The checkpoint's task name as a safe path component (it names default output folders)."""
    return safe_slug(cfg.task.get("name", cfg.get("task_name", "task")))


def compare_on_recorded(cached_policy, original_policy, observations: list[dict],
                        progress: bool = True) -> dict[str, list[float]]:
    """Time both policies round-robin on the same observations (one warm-up call each)."""
    timed_predict_action(cached_policy, observations[0])
    timed_predict_action(original_policy, observations[0])
    times = {"cached": [], "original": []}
    bar = tqdm.tqdm(observations, desc="Re-timing cached vs original on recorded observations", unit="obs",
                    leave=False, disable=not progress)
    for obs in bar:
        times["cached"].append(timed_predict_action(cached_policy, obs)[1])
        times["original"].append(timed_predict_action(original_policy, obs)[1])
    return times


def environment_info(device: torch.device) -> dict:
    import diffusers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def eval_result_of(log: dict, episodes, checkpoint: str, task: str, cache_config: CacheConfig) -> EvalResult:
    """The EvalResult of one runner.run log (metrics, per-episode rewards, videos)."""
    metrics = {k: v for k, v in log.items() if "sim_video" not in k and k not in ("timing", "episode_rewards")}
    videos = {k: v for k, v in log.items() if "sim_video" in k}
    mean_key = "test/mean_score" if "test/mean_score" in metrics else "train/mean_score"
    return EvalResult(
        checkpoint=checkpoint,
        task=task,
        cache=cache_config.describe(),
        mean_score=metrics.get(mean_key),
        metrics=metrics,
        episode_rewards=[
            EpisodeReward(spec.prefix, int(spec.seed), rewards.tolist(), float(np.sum(rewards)),
                          float(np.max(rewards)) if len(rewards) else 0.0)
            for spec, rewards in zip(episodes, log["episode_rewards"])
        ],
        videos=videos,
        n_episodes=len(episodes),
        time=datetime.datetime.now().isoformat(timespec="seconds"),
    )


def benchmark_against_original(policy, original, observations: list[dict], rollout_timing: dict, task: str,
                               cache_config: CacheConfig) -> BenchmarkResult:
    """Time `policy` (cached) and `original` round-robin on recorded observations; count FLOPs."""
    times = compare_on_recorded(policy, original, observations)
    flops_cached = count_flops(policy, observations[0])
    flops_original = count_flops(original, observations[0])
    cached_stats = LatencyStats(**latency_stats_ms(times["cached"]))
    original_stats = LatencyStats(**latency_stats_ms(times["original"]))
    n_blocks = 3 * len(original.model.decoder.layers)
    block_evaluations = sum(len(s) for s in update_steps_for(original, cache_config).values())
    return BenchmarkResult(
        task=task,
        cache=cache_config.describe(),
        num_inference_steps=int(original.num_inference_steps),
        n_action_steps=int(original.n_action_steps),
        batch_size=int(next(iter(observations[0].values())).shape[0]),
        latency=cached_stats,
        latency_original=original_stats,
        speedup=original_stats.median_ms / cached_stats.median_ms,
        rollout_latency=LatencyStats(**latency_stats_ms(rollout_timing["predict_action_s"])),
        flops_per_predict_action=flops_cached,
        flops_per_predict_action_original=flops_original,
        flops_ratio=flops_original / flops_cached if flops_cached else None,
        block_evaluations_per_predict_action=block_evaluations,
        block_evaluations_per_predict_action_original=n_blocks * int(original.num_inference_steps),
        action_frequency_hz=original.n_action_steps / (cached_stats.median_ms / 1e3),
        action_frequency_hz_original=original.n_action_steps / (original_stats.median_ms / 1e3),
        environment=environment_info(original.device),
    )


def evaluate_checkpoint(
    checkpoint: str,
    output_dir: Optional[str],
    cache_config: CacheConfig,
    device: str = "cpu",
    settings: EvalSettings = EvalSettings(),
    num_inference_steps: Optional[int] = None,
    trust_checkpoint: bool = False,
) -> tuple[EvalResult, BenchmarkResult, Path]:
    """Roll out `checkpoint` with `cache_config`; write eval_results.json and benchmark_results.json.

    Returns (EvalResult, BenchmarkResult, output_dir), also written there as JSON. output_dir defaults to
    results/<task>/<mode>.
    """
    check_device(device)
    if output_dir:
        check_output_dir(output_dir)
    np.random.seed(settings.seed)  # for envs that draw from numpy's global RNG; the policy has its own
    original, cfg = load_checkpoint(checkpoint, device=device, trust_checkpoint=trust_checkpoint,
                                    num_inference_steps=num_inference_steps)
    task = task_name_of(cfg)
    out = Path(output_dir) if output_dir else Path("results") / task / cache_config.mode
    check_output_dir(out)
    policy = copy.deepcopy(original)
    apply_cache(policy, cache_config)  # a bad schedule or cache setting fails here, before the rollout
    runner = make_env_runner(cfg, str(out), n_test=settings.n_test, n_train=settings.n_train,
                             n_envs=settings.n_envs, max_steps=settings.max_steps, skip_video=settings.skip_video)
    # One thread count for the rollout and the re-timing, so both policies are timed alike.
    set_threads(settings.threads, env_workers=runner.env_worker_processes)
    recorder = ObservationRecorder(policy, settings.latency_samples, seed=settings.seed)
    try:
        log = runner.run(recorder)
    finally:
        runner.close()
    eval_result = eval_result_of(log, runner.episodes, str(checkpoint), task, cache_config)
    eval_result.save(out)  # kept even if the re-timing below fails
    remove_cache(original)
    benchmark_result = benchmark_against_original(policy, original, recorder.observations, log["timing"], task,
                                                  cache_config)
    benchmark_result.save(out)
    return eval_result, benchmark_result, out
