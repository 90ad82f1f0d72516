"""Keep every env step of the current episode, for exporting rollouts as datasets.

`FrameRecordingWrapper` sits directly on the raw env (inside `MultiStepWrapper`), so it sees
single steps: after `reset` it holds the first observation; each `step(action)` adds the executed
action, the reward, terminated/truncated, `info["is_success"]` when the env reports it, and the
next observation. With `render=True` it also keeps an `env.render()` frame per observation. It only
records while `recording` is True (the rollout loop sets both per run); otherwise it passes through.

Camera observations (3-D Box entries of a Dict observation space, channel-first (3, H, W) floats
in [0, 1]) are kept as uint8 (H, W, 3), the form a video stores, to keep episodes small; the
cameras render uint8, so this loses nothing. Everything else is copied as is.

`get_episode_frames()` returns the episode as arrays (T = env steps so far):
    "observation": (T + 1, Do) array, or {key: (T + 1, ...)} for dict observations
    "action": (T, Da) float32, "reward": (T,) float64, "terminated"/"truncated": (T,) bool,
    "is_success": (T,) bool (only when every step's info has it),
    "render": (T + 1, H, W, 3) uint8 (only with render=True).
Observation t is the one the action t was chosen from; the last one follows the last action.
"""

import gymnasium
import numpy as np
from gymnasium import spaces


def camera_keys(observation_space: spaces.Space) -> list[str]:
    """Keys of a Dict observation space that hold images (3-D boxes)."""
    if not isinstance(observation_space, spaces.Dict):
        return []
    return [key for key, space in observation_space.spaces.items() if len(space.shape) == 3]


def image_to_hwc_uint8(image: np.ndarray) -> np.ndarray:
    """(3, H, W) float in [0, 1] (or uint8) -> (H, W, 3) uint8; (H, W, 3) uint8 is kept."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[-1] != 3:
        image = np.moveaxis(image, 0, -1)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


class FrameRecordingWrapper(gymnasium.Wrapper):
    def __init__(self, env: gymnasium.Env, render: bool = False, recording: bool = True):
        super().__init__(env)
        self.recording = recording
        self.render_frames = render
        self.camera_keys = camera_keys(env.observation_space)
        self._clear()

    def _clear(self) -> None:
        self._observations, self._renders = [], []
        self._actions, self._rewards, self._terminated, self._truncated, self._successes = [], [], [], [], []

    def _keep_observation(self, obs) -> None:
        if not self.recording:
            return
        if isinstance(obs, dict):
            obs = {
                key: image_to_hwc_uint8(value) if key in self.camera_keys else np.array(value, copy=True)
                for key, value in obs.items()
            }
        else:
            obs = np.array(obs, copy=True)
        self._observations.append(obs)
        if self.render_frames:
            self._renders.append(image_to_hwc_uint8(self.env.render()))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._clear()
        self._keep_observation(obs)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not self.recording:
            return obs, reward, terminated, truncated, info
        self._actions.append(np.array(action, dtype=np.float32, copy=True))
        self._rewards.append(float(reward))
        self._terminated.append(bool(terminated))
        self._truncated.append(bool(truncated))
        self._successes.append(info.get("is_success") if isinstance(info, dict) else None)
        self._keep_observation(obs)
        return obs, reward, terminated, truncated, info

    def get_episode_frames(self) -> dict:
        """The current episode as arrays (see the module docstring)."""
        if not self._observations:
            raise RuntimeError("get_episode_frames() before reset(): no episode was recorded")
        first = self._observations[0]
        if isinstance(first, dict):
            observation = {key: np.stack([obs[key] for obs in self._observations]) for key in first}
        else:
            observation = np.stack(self._observations)
        action_shape = self.env.action_space.shape
        frames = {
            "observation": observation,
            "action": np.array(self._actions, dtype=np.float32).reshape(len(self._actions), *action_shape),
            "reward": np.array(self._rewards, dtype=np.float64),
            "terminated": np.array(self._terminated, dtype=bool),
            "truncated": np.array(self._truncated, dtype=bool),
        }
        if self._successes and all(s is not None for s in self._successes):
            frames["is_success"] = np.array(self._successes, dtype=bool)
        if self.render_frames:
            frames["render"] = np.stack(self._renders)
        return frames
