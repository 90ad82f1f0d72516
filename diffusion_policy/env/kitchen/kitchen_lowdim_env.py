"""Franka Kitchen (all 7 tasks) with the original Diffusion Policy / relay-policy-learning interface.

Simulation is gymnasium-robotics' `KitchenEnv` (FrankaKitchen-v1, MuJoCo 3, the relay-policy-learning
kitchen ported to the new bindings). This wrapper restores the original `KitchenAllV0` interface:

Observation (60,) float32 = [robot qpos (9), object qpos (21), goal (30, always zero: the original
masks the goal)], with uniform observation noise `robot_noise_ratio * amp * U(-1, 1)` on both qpos
parts, amp from `franka_config.xml` (robot joints 0.1; objects: config entries qpos9..qpos29, as
the original indexes them). gymnasium-robotics' own 59-d `observation` is [robot qpos 9, robot qvel 9,
object qpos 21, object qvel 20]; only its first 9 entries (robot qpos, noised by gymnasium-robotics
with the same amplitudes) are used.

Action (9,):
- delta (default): joint velocities in [-1, 1] (x2 rad/s), exactly gymnasium-robotics' action and
  the original `Robot_VelAct`;
- abs_action: absolute joint position targets (original `Robot_PosAct`), converted to the velocity
  (target - last observed qpos) / dt, clipped to the config's velocity bound (10 rad/s) like the
  original. The resulting position command equals the original's.

Reward: number of tasks newly completed this step (joint distance to goal < 0.3). Terminates when
all 7 are done. Info: `completed_tasks` (tasks done so far, in order) and `step_task_completions`.
Train episodes reset to a stored state via `reset(options={"init_state": concat(qpos (30,), qvel (29,))})`.
"""

from __future__ import annotations

import os

import gymnasium
import numpy as np

ALL_TASKS = ("microwave", "kettle", "bottom burner", "top burner", "light switch",
             "slide cabinet", "hinge cabinet")
N_ROBOT_QPOS = 9
N_OBJECT_QPOS = 21
GOAL_DIM = 30
OBS_DIM = N_ROBOT_QPOS + N_OBJECT_QPOS + GOAL_DIM  # 60
STATE_DIM = 30 + 29  # qpos + qvel of the MuJoCo model


def kitchen_spaces(abs_action: bool) -> tuple[gymnasium.spaces.Box, gymnasium.spaces.Box]:
    """(observation space (60,), action space (9,)) as the original declares them."""
    bound = 8.0 if abs_action else 1.0
    return (gymnasium.spaces.Box(-8.0, 8.0, shape=(OBS_DIM,), dtype=np.float32),
            gymnasium.spaces.Box(-bound, bound, shape=(N_ROBOT_QPOS,), dtype=np.float32))


def _object_pos_noise_amplitudes(config_path: str) -> np.ndarray:
    """Noise amplitudes the original applies to object qpos: config entries qpos9..qpos29, (21,)."""
    from gymnasium_robotics.envs.franka_kitchen.utils import read_config_from_xml

    return np.array([
        read_config_from_xml(config_path, f"qpos{i}", "pos_noise_amp", float)[0]
        for i in range(N_ROBOT_QPOS, N_ROBOT_QPOS + N_OBJECT_QPOS)
    ])


class KitchenLowdimEnv(gymnasium.Env):
    """60-d observation / 9-d action Franka Kitchen with all seven tasks to complete, in any order."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 12.5}

    def __init__(self, abs_action: bool = False, robot_noise_ratio: float = 0.1,
                 render_hw: tuple[int, int] = (240, 360), fast_render: bool = True,
                 render_mode: str = "rgb_array"):
        # MuJoCo picks its GL backend when first imported; default to headless EGL.
        os.environ.setdefault("MUJOCO_GL", "egl")
        from gymnasium_robotics.envs import franka_kitchen

        height, width = render_hw
        self.kitchen = franka_kitchen.KitchenEnv(
            tasks_to_complete=list(ALL_TASKS), robot_noise_ratio=robot_noise_ratio,
            object_noise_ratio=0.0,  # object noise is added here, with the original's amplitudes
            render_mode="rgb_array", width=width, height=height,
        )
        if fast_render:
            # No shadows / multisampling: ~40x faster frames with software EGL; video only.
            self.kitchen.model.vis.quality.offsamples = 0
            self.kitchen.model.vis.quality.shadowsize = 0
        self.robot = self.kitchen.robot_env
        self.abs_action = abs_action
        self.robot_noise_ratio = robot_noise_ratio
        self.render_mode = render_mode
        config_path = os.path.join(os.path.dirname(franka_kitchen.__file__),
                                   "../assets/kitchen_franka/franka_assets/franka_config.xml")
        self.object_noise_amp = _object_pos_noise_amplitudes(config_path)
        if abs_action:
            # Let a normalised action reach the full velocity bound, as the original PosAct does.
            self.velocity_limit = float(np.abs(self.robot.robot_vel_bound[:N_ROBOT_QPOS]).max())
            self.robot.act_rng = np.full(N_ROBOT_QPOS, self.velocity_limit)

        self.observation_space, self.action_space = kitchen_spaces(abs_action)
        self._last_robot_qpos = np.zeros(N_ROBOT_QPOS)

    @property
    def dt(self) -> float:
        return self.robot.dt  # 40 x 2 ms = 0.08 s (12.5 Hz)

    def get_state(self) -> np.ndarray:
        """Noise-free simulator state concat(qpos (30,), qvel (29,)), usable as `init_state`."""
        return np.concatenate([self.kitchen.data.qpos, self.kitchen.data.qvel]).copy()

    def _observe(self, gym_observation: np.ndarray) -> np.ndarray:
        self._last_robot_qpos = gym_observation[:N_ROBOT_QPOS].copy()
        object_qpos = self.kitchen.data.qpos[N_ROBOT_QPOS:N_ROBOT_QPOS + N_OBJECT_QPOS].copy()
        object_qpos += (self.robot_noise_ratio * self.object_noise_amp
                        * self.robot.np_random.uniform(-1.0, 1.0, size=N_OBJECT_QPOS))
        goal = np.zeros(GOAL_DIM)
        return np.concatenate([self._last_robot_qpos, object_qpos, goal]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        gym_obs, _ = self.kitchen.reset(seed=seed)
        init_state = (options or {}).get("init_state")
        if init_state is not None:
            init_state = np.asarray(init_state, dtype=np.float64)
            if init_state.shape != (STATE_DIM,):
                raise ValueError(f"kitchen init_state must be concat(qpos 30, qvel 29) of shape "
                                 f"({STATE_DIM},), got {init_state.shape}")
            self.robot.set_state(init_state[:30], init_state[30:])
            # Re-observe so the velocity -> position conversion starts from the new state.
            gym_obs = self.kitchen._get_obs(self.robot._get_obs())["observation"]
        else:
            gym_obs = gym_obs["observation"]
        return self._observe(gym_obs), {"completed_tasks": [], "step_task_completions": []}

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(N_ROBOT_QPOS)
        if self.abs_action:
            velocity = (action - self._last_robot_qpos) / self.dt
            action = velocity / self.velocity_limit  # the robot scales it back by act_rng
        gym_obs, reward, terminated, truncated, info = self.kitchen.step(action)
        info = {"completed_tasks": list(info["episode_task_completions"]),
                "step_task_completions": list(info["step_task_completions"])}
        return self._observe(gym_obs["observation"]), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray:
        """RGB (H, W, 3) uint8 from the original's camera (distance 2.2, azimuth 70, elevation -35)."""
        return self.kitchen.render()

    def close(self) -> None:
        self.kitchen.close()
