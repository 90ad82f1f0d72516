"""The settings of one evaluation rollout (importable without torch, for the CLIs and the suite)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from diffusion_policy.common.validation import check_range


@dataclass
class EvalSettings:
    n_test: Optional[int] = None
    n_train: Optional[int] = None
    n_envs: Optional[int] = None
    max_steps: Optional[int] = None
    skip_video: bool = False
    seed: int = 0
    latency_samples: int = 20  # observations re-timed for the original-vs-cached comparison
    threads: Optional[int] = None  # torch threads; None: common.threads.default_threads

    def __post_init__(self) -> None:
        check_range("--n_test", self.n_test, 0)
        check_range("--n_train", self.n_train, 0)
        if self.n_test == 0 and self.n_train == 0:
            raise ValueError("--n_test and --n_train are both 0: nothing to evaluate")
        check_range("--n_envs", self.n_envs, 1)
        check_range("--max_steps", self.max_steps, 1)
        check_range("--latency_samples", self.latency_samples, 1, allow_none=False)
        check_range("--threads", self.threads, 1)
