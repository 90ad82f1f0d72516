"""Push-T with an image observation (the `pusht_image` task).

Observation: {'image': (3, render_size, render_size) float32 in [0, 1] (channel-first RGB of the
scene, no action marker), 'agent_pos': (2,) float32}. `render()` returns the same view as uint8
(render_size, render_size, 3) with the last action drawn as a red cross, as the original's videos.
Action, reward and termination as in `PushTKeypointsEnv`.
"""

import numpy as np
from gymnasium import spaces

from diffusion_policy.env.pusht.pusht_env import WINDOW_SIZE, PushTEnv


class PushTImageEnv(PushTEnv):
    def __init__(self, legacy: bool = False, block_cog=None, damping=None, render_size: int = 96):
        super().__init__(
            "pixels_agent_pos", legacy=legacy, block_cog=block_cog, damping=damping, render_size=render_size
        )
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 1, shape=(3, render_size, render_size), dtype=np.float32),
                "agent_pos": spaces.Box(0, WINDOW_SIZE, shape=(2,), dtype=np.float32),
            }
        )

    def _convert_obs(self, raw_obs: dict) -> dict:
        image = np.moveaxis(raw_obs["pixels"], -1, 0).astype(np.float32) / 255.0  # (3, H, W)
        return {"image": image, "agent_pos": np.asarray(raw_obs["agent_pos"], dtype=np.float32)}
