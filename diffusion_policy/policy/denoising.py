"""Where a policy's sampling loop is: the explicit denoising context that hooks read.

The sampling loop writes it, hooks only read it:

    with policy.denoising.run(scheduler.timesteps):          # one predict_action
        for i, t in enumerate(scheduler.timesteps):
            policy.denoising.begin_step(i, t)
            model_output = policy.model(trajectory, t, cond)

so a cache knows the step index and timestep it is at (given, never inferred from counting calls),
and a call of `policy.model(...)` outside a run (`active` is False) is a plain forward that no
cache may serve from or store into. Run listeners (hooks' per-run state resets) are called when a
run starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


class DenoisingState:
    def __init__(self) -> None:
        self.active = False  # inside a sampling run
        self.step = -1  # index of the current denoising step (0 = noisiest)
        self.timestep: torch.Tensor | None = None  # the scheduler timestep of that step
        self.timesteps: torch.Tensor | None = None  # (N,) all of the run's timesteps, in order
        self._run_listeners: list[Callable[[DenoisingState], None]] = []

    @property
    def num_steps(self) -> int:
        return 0 if self.timesteps is None else len(self.timesteps)

    @contextmanager
    def run(self, timesteps: torch.Tensor) -> Iterator[DenoisingState]:
        if self.active:
            raise RuntimeError("a denoising run is already in progress (sampling runs cannot nest)")
        self.active, self.step, self.timesteps = True, -1, timesteps
        try:
            for listener in list(self._run_listeners):
                listener(self)
            yield self
        finally:
            self.active, self.step, self.timestep = False, -1, None

    def begin_step(self, index: int, timestep: torch.Tensor) -> None:
        self.step, self.timestep = index, timestep

    def add_run_listener(self, listener: Callable[[DenoisingState], None]) -> None:
        self._run_listeners.append(listener)

    def remove_run_listener(self, listener: Callable[[DenoisingState], None]) -> None:
        if listener in self._run_listeners:
            self._run_listeners.remove(listener)
