"""Push-T on gym-pusht with the original Diffusion Policy reset semantics.

gym-pusht (`gym_pusht/PushT-v0`) has the same physics, rendering, reward
(clip(coverage / 0.95, 0, 1)) and termination (coverage > 0.95) as the original Push-T, but samples
its initial state differently. `PushTEnv` restores the original rules so that a seed gives the same
episode as in the original code:

- initial state [agent_x, agent_y, block_x, block_y, block_angle] from
  `np.random.RandomState(seed)`: randint(50, 450) x2, randint(100, 400) x2, randn() * 2pi - pi;
- `legacy=True` places the block by setting its position then its angle (the order the dataset was
  recorded with, and gym-pusht's order); `legacy=False` sets the angle first, so the block's
  origin lands exactly on (block_x, block_y);
- `reset(options={"init_state": state})` starts from a given 5-d state instead of the seed's.

Subclasses turn gym-pusht's observation into theirs with `_convert_obs(raw_obs)`.
"""

import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
import gymnasium
import numpy as np

WINDOW_SIZE = 512  # side of the simulated square, in pymunk units (= pixels of the 512 canvas)
TEE_CENTER_OF_GRAVITY = np.array([0.0, 45.0])  # in the block's local frame (gym-pusht add_tee)


def sample_initial_state(seed: int) -> np.ndarray:
    """The original Push-T initial state for `seed`: [agent_x, agent_y, block_x, block_y, block_angle]."""
    rs = np.random.RandomState(seed=seed)
    return np.array(
        [
            rs.randint(50, 450),
            rs.randint(50, 450),
            rs.randint(100, 400),
            rs.randint(100, 400),
            rs.randn() * 2 * np.pi - np.pi,
        ],
        dtype=np.float64,
    )


def rotation(angle: float) -> np.ndarray:
    """2-D rotation matrix (2, 2)."""
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[cos, -sin], [sin, cos]])


class PushTEnv(gymnasium.Wrapper):
    """gym-pusht env with the original seeding/legacy reset; renders `render_size` square frames."""

    def __init__(self, obs_type: str, legacy: bool = False, block_cog=None, damping=None, render_size: int = 96):
        env = gymnasium.make(
            "gym_pusht/PushT-v0",
            obs_type=obs_type,
            render_mode="rgb_array",
            block_cog=block_cog,
            damping=damping,
            observation_width=render_size,
            observation_height=render_size,
            visualization_width=render_size,
            visualization_height=render_size,
            max_episode_steps=-1,  # no TimeLimit: the rollout runner caps episode length
            disable_env_checker=True,
        )
        super().__init__(env)
        self.legacy = legacy
        self.render_size = render_size
        self.center_of_gravity = (
            np.asarray(block_cog, dtype=np.float64) if block_cog is not None else TEE_CENTER_OF_GRAVITY
        )

    def _convert_obs(self, raw_obs):
        raise NotImplementedError

    def _gym_pusht_state(self, state: np.ndarray) -> np.ndarray:
        """State to hand to gym-pusht (which always sets position then angle) to get `state`'s placement."""
        state = np.asarray(state, dtype=np.float64).copy()
        if not self.legacy:
            # Angle-first placement puts the block origin at `pos`. Position-first from angle 0 puts
            # it at pos + cog - R(angle) cog, so shift the position by the inverse of that offset.
            cog = self.center_of_gravity
            state[2:4] = state[2:4] - cog + rotation(state[4]) @ cog
        return state

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = options or {}
        if seed is None and options.get("init_state") is None:
            # Continue the env's random stream (seeded by the last seeded reset).
            seed = int(self.np_random.integers(0, 25536))
        state = options.get("init_state")
        if state is None:
            state = sample_initial_state(seed)
        elif np.shape(state) != (5,):
            raise ValueError(
                "Push-T init_state must be [agent_x, agent_y, block_x, block_y, block_angle], "
                f"got shape {np.shape(state)}"
            )
        raw_obs, info = self.env.reset(seed=seed, options={"reset_to_state": self._gym_pusht_state(state)})
        return self._convert_obs(raw_obs), info

    def step(self, action):
        raw_obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float64))
        return self._convert_obs(raw_obs), float(reward), terminated, truncated, info
