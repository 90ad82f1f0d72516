"""What every scripted expert shares: an episode style drawn from the expert's generator at reset."""

from __future__ import annotations

import numpy as np


class ScriptedExpert:
    """Base of the scripted experts. Subclasses name their `style_class` (with `sample(rng)`), set
    their per-episode state in `start_episode`, and implement `act`."""

    style_class: type

    def __init__(self, rng: np.random.Generator | None = None):
        self.rng = rng if rng is not None else np.random.default_rng()
        self.reset()

    def reset(self, rng: np.random.Generator | None = None) -> None:
        """Start a new episode with a new style (drawn from `rng` if given, which then replaces
        the expert's generator)."""
        if rng is not None:
            self.rng = rng
        self.style = self.style_class.sample(self.rng)
        self.start_episode()

    def start_episode(self) -> None:
        """Reset the per-episode state; `self.style` is already drawn."""
        raise NotImplementedError
