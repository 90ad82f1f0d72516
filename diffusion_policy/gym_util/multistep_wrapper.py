"""Observation history + action chunks on top of a single-step gymnasium env.

The policy sees the last `n_obs_steps` observations (To) and returns a chunk of actions (Ta, Da).
`MultiStepWrapper` turns the env into one whose observation is that history and whose action is
that chunk:

- reset: the history is the first observation repeated To times.
- step(chunk): executes the actions one by one and stops early when the episode ends
  (terminated by the env, or truncated once `max_episode_steps` env steps have run). Once the
  episode has ended, further steps are no-ops (nothing is executed, reward 0).
- returns (obs history (To, ...), reward of the chunk aggregated by `reward_agg`, terminated,
  truncated, info of the last env step). Dict observations are stacked per key.

The full per-step reward list and the last info are kept for the rollout runner
(`get_rewards()`, `get_last_info()`), which reads them through `VectorEnv.call`.
"""

from collections import deque

import gymnasium
import numpy as np
from gymnasium import spaces

REWARD_AGGREGATORS = {"max": np.max, "sum": np.sum, "mean": np.mean, "min": np.min}


def stack_space(space: spaces.Space, n: int) -> spaces.Space:
    """Space of `n` stacked samples of `space` along a new leading axis (Box or Dict of Box)."""
    if isinstance(space, spaces.Box):
        low = np.repeat(space.low[None], n, axis=0)
        high = np.repeat(space.high[None], n, axis=0)
        return spaces.Box(low=low, high=high, dtype=space.dtype)
    if isinstance(space, spaces.Dict):
        return spaces.Dict({key: stack_space(sub, n) for key, sub in space.spaces.items()})
    raise TypeError(f"MultiStepWrapper supports Box and Dict observation/action spaces, got {space}")


def copy_obs(obs):
    """Own copy of an observation, so envs that reuse their buffers cannot rewrite the history."""
    if isinstance(obs, dict):
        return {key: np.array(value, copy=True) for key, value in obs.items()}
    return np.array(obs, copy=True)


def stack_obs(history: list) -> np.ndarray | dict[str, np.ndarray]:
    """Stack a list of T observations (arrays or dicts of arrays) into (T, ...) arrays."""
    if isinstance(history[0], dict):
        return {key: np.stack([obs[key] for obs in history]) for key in history[0]}
    return np.stack(history)


class MultiStepWrapper(gymnasium.Wrapper):
    def __init__(
        self,
        env: gymnasium.Env,
        n_obs_steps: int,
        n_action_steps: int,
        max_episode_steps: int | None = None,
        reward_agg: str = "max",
    ):
        super().__init__(env)
        if reward_agg not in REWARD_AGGREGATORS:
            raise ValueError(f"reward_agg={reward_agg!r} is unknown; use one of {sorted(REWARD_AGGREGATORS)}")
        self.n_obs_steps = n_obs_steps
        self.n_action_steps = n_action_steps
        self.max_episode_steps = max_episode_steps
        self.reward_agg = reward_agg
        self.observation_space = stack_space(env.observation_space, n_obs_steps)
        self.action_space = stack_space(env.action_space, n_action_steps)
        # Options used by reset() when the caller passes none. A vector env gives each sub-env its
        # own options (e.g. {"init_state": ...}) with `set_attr("episode_reset_options", [...])`.
        self.episode_reset_options: dict | None = None
        self._obs_history: deque = deque(maxlen=n_obs_steps)
        self._rewards: list[float] = []
        self._last_info: dict = {}
        self._terminated = False
        self._truncated = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options is None:
            options = self.episode_reset_options
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs_history.clear()
        self._obs_history.extend([copy_obs(obs)] * self.n_obs_steps)
        self._rewards = []
        self._last_info = info
        self._terminated = self._truncated = False
        return stack_obs(list(self._obs_history)), info

    def step(self, action: np.ndarray):
        """action: (Ta, Da) chunk, executed until the episode ends."""
        chunk_rewards = []
        for single_action in action:
            if self._terminated or self._truncated:
                break
            obs, reward, terminated, truncated, info = self.env.step(single_action)
            self._obs_history.append(copy_obs(obs))
            self._rewards.append(float(reward))
            chunk_rewards.append(float(reward))
            self._last_info = info
            self._terminated = bool(terminated)
            at_step_limit = self.max_episode_steps is not None and len(self._rewards) >= self.max_episode_steps
            self._truncated = bool(truncated) or at_step_limit
        reward = float(REWARD_AGGREGATORS[self.reward_agg](chunk_rewards)) if chunk_rewards else 0.0
        obs = stack_obs(list(self._obs_history))
        return obs, reward, self._terminated, self._truncated, self._last_info

    def get_rewards(self) -> list[float]:
        """Per-env-step rewards of the current episode."""
        return list(self._rewards)

    def get_last_info(self) -> dict:
        """Info dict of the last env step (or of the reset) of the current episode."""
        return self._last_info
