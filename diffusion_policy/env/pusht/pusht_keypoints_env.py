"""Push-T with a keypoint observation (the `pusht_lowdim` task).

Observation (float32, 20-d): the 9 T-block keypoints in world coordinates, flattened as
[x0, y0, ..., x8, y8] (18), then the agent position [x, y] (2). Keypoints are fixed points of the
block's local frame (`keypoints.BLOCK_LOCAL_KEYPOINTS`, the original's) moved by the block pose
(origin x, y, angle). With `agent_keypoints=True` the agent position is replaced by its 3 keypoints
(24-d obs).

`keypoint_visible_rate < 1` draws which keypoints are visible each step (from the env's RNG) into
`info["keypoint_visible"]` (N,) bool; the observation itself keeps every keypoint. The original
passed the same mask next to the observation as `obs_mask`, which the transformer policies ignore.

Action: target agent position Box(0, 512, (2,)). Reward: clip(coverage / 0.95, 0, 1); terminated
when coverage > 0.95; info has `coverage`, `is_success`, `block_pose`, `pos_agent`, ...
"""

import numpy as np
from gymnasium import spaces

from diffusion_policy.env.pusht.keypoints import AGENT_LOCAL_KEYPOINTS, BLOCK_LOCAL_KEYPOINTS, keypoints_to_world
from diffusion_policy.env.pusht.pusht_env import WINDOW_SIZE, PushTEnv


class PushTKeypointsEnv(PushTEnv):
    def __init__(
        self,
        legacy: bool = False,
        block_cog=None,
        damping=None,
        render_size: int = 96,
        keypoint_visible_rate: float = 1.0,
        agent_keypoints: bool = False,
    ):
        super().__init__("state", legacy=legacy, block_cog=block_cog, damping=damping, render_size=render_size)
        self.keypoint_visible_rate = keypoint_visible_rate
        self.agent_keypoints = agent_keypoints
        obs_dim = BLOCK_LOCAL_KEYPOINTS.size + (AGENT_LOCAL_KEYPOINTS.size if agent_keypoints else 2)
        self.observation_space = spaces.Box(0, WINDOW_SIZE, shape=(obs_dim,), dtype=np.float32)
        self._visible = np.ones(0, dtype=bool)

    def _convert_obs(self, state: np.ndarray) -> np.ndarray:
        """gym-pusht state [agent_x, agent_y, block_x, block_y, block_angle] -> keypoint obs (Do,)."""
        agent_xy, block_pose = state[:2], state[2:5]
        keypoints = keypoints_to_world(BLOCK_LOCAL_KEYPOINTS, *block_pose)  # (9, 2)
        if self.agent_keypoints:
            # The agent is a kinematic disc that never rotates.
            keypoints = np.concatenate([keypoints, keypoints_to_world(AGENT_LOCAL_KEYPOINTS, *agent_xy, 0.0)])
            obs = keypoints.reshape(-1)
        else:
            obs = np.concatenate([keypoints.reshape(-1), agent_xy])
        self._visible = self.np_random.random(len(keypoints)) < self.keypoint_visible_rate
        return obs.astype(np.float32)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        info["keypoint_visible"] = self._visible
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        info["keypoint_visible"] = self._visible
        return obs, reward, terminated, truncated, info
