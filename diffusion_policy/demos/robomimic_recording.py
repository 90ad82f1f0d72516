"""Recording robosuite episodes the way robomimic's datasets store them.

`robomimic_env_meta(task, images)` is the env description written to `data.attrs['env_args']`: the
robosuite <= 1.4 layout robomimic uses (flat OSC_POSE controller config with `control_delta`), which
`diffusion_policy.env.robomimic.read_env_meta` and the runners read back. `RobosuiteRecorder` runs
that env through the project's gymnasium envs and hands back robomimic-named observations: low-dim
keys as float32 (D,), camera keys `<camera>_image` as upright uint8 (H, W, 3), plus the flat MuJoCo
state that `reset(options={"init_state": ...})` restores.
"""

import numpy as np

from diffusion_policy.env.robomimic.env_meta import (
    ROBOSUITE_ENV_TYPE,
    TASK_CAMERAS,
    TASK_ENV_NAMES,
    import_robosuite,
)
from diffusion_policy.env.robomimic.robosuite_env import RobomimicImageEnv, RobomimicLowdimEnv

# Low-dim observations of the robomimic single-arm datasets, with their sizes (robosuite 1.5 Lift).
SINGLE_ARM_LOWDIM_SHAPES = {
    "object": 10,
    "robot0_joint_pos": 7,
    "robot0_joint_pos_cos": 7,
    "robot0_joint_pos_sin": 7,
    "robot0_joint_vel": 7,
    "robot0_eef_pos": 3,
    "robot0_eef_quat": 4,
    "robot0_gripper_qpos": 2,
    "robot0_gripper_qvel": 2,
}


def legacy_osc_pose_config() -> dict:
    """robosuite's OSC_POSE defaults as a robosuite <= 1.4 part config (delta actions, world frame)."""
    robosuite = import_robosuite()
    config = dict(robosuite.load_part_controller_config(default_controller="OSC_POSE"))
    config.pop("input_type", None)
    config.pop("input_ref_frame", None)
    config["control_delta"] = True
    return config


def robomimic_env_meta(task: str, images: bool = False) -> dict:
    """env_meta as robomimic writes it for a single-arm robosuite task (Panda, OSC_POSE, 20 Hz)."""
    robosuite = import_robosuite()
    camera_names, side = TASK_CAMERAS[task]
    return {
        "env_name": TASK_ENV_NAMES[task],
        "env_version": robosuite.__version__,
        "type": ROBOSUITE_ENV_TYPE,
        "env_kwargs": {
            "has_renderer": False,
            "has_offscreen_renderer": images,
            "ignore_done": True,
            "use_object_obs": True,
            "use_camera_obs": images,
            "control_freq": 20,
            "controller_configs": legacy_osc_pose_config(),
            "robots": ["Panda"],
            "camera_names": camera_names,
            "camera_depths": False,
            "camera_heights": side,
            "camera_widths": side,
            "reward_shaping": False,
        },
    }


class RobosuiteRecorder:
    """A robomimic task env whose observations come back as {robomimic key: array}.

    lowdim_shapes: {key: size}; camera_names: cameras rendered as `<camera>_image` (side x side).
    """

    def __init__(self, env_meta: dict, lowdim_shapes: dict, camera_names=(), image_side: int = 84):
        self.lowdim_keys = list(lowdim_shapes)
        self.rgb_keys = [f"{camera}_image" for camera in camera_names]
        if self.rgb_keys:
            shape_meta = {
                "obs": {
                    **{key: {"shape": [3, image_side, image_side], "type": "rgb"} for key in self.rgb_keys},
                    **{key: {"shape": [size], "type": "low_dim"} for key, size in lowdim_shapes.items()},
                },
                "action": {"shape": [7]},
            }
            self.env = RobomimicImageEnv(env_meta, shape_meta, render_obs_key=self.rgb_keys[0])
        else:
            self.env = RobomimicLowdimEnv(env_meta, self.lowdim_keys)
        self._split_at = np.cumsum([lowdim_shapes[key] for key in self.lowdim_keys])[:-1]

    def _obs_dict(self, obs) -> dict:
        if not self.rgb_keys:
            return dict(zip(self.lowdim_keys, np.split(obs, self._split_at)))
        out = {key: obs[key] for key in self.lowdim_keys}
        for key in self.rgb_keys:  # (3, H, W) float in [0, 1] -> (H, W, 3) uint8, exactly
            out[key] = np.round(np.moveaxis(obs[key], 0, -1) * 255).astype(np.uint8)
        return out

    def reset(self, seed: int) -> dict:
        obs, _ = self.env.reset(seed=seed)
        return self._obs_dict(obs)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool]:
        """(obs, reward, success) after one action."""
        obs, reward, _, _, info = self.env.step(action)
        return self._obs_dict(obs), reward, bool(info["is_success"])

    def get_state(self) -> np.ndarray:
        return self.env.get_state()

    def model_xml(self) -> str:
        """MJCF of the loaded scene, stored by robomimic as the demo attribute `model_file`."""
        return self.env.env.sim.model.get_xml()

    def close(self) -> None:
        self.env.close()


def collect_robosuite_episode(recorder, expert, seed: int, max_steps: int = 200) -> dict | None:
    """One scripted-expert episode of a robosuite task from the scene of `seed`; None unless the task
    succeeds. The episode ends a few steps (drawn per episode) after the first success, as the
    robomimic demonstrations end shortly after success. Returns robomimic's per-demo arrays:
    obs {key: (T, ...)}, actions (T, 7), states (T, S) (state before each action), rewards (T,),
    dones (T,), and model_file (the scene's MJCF).
    """
    expert.reset(np.random.default_rng(seed))  # the episode depends on `seed` alone
    hold_steps = int(expert.rng.integers(3, 10))
    obs = recorder.reset(seed)
    model_file = recorder.model_xml()
    observations, actions, states, rewards = [], [], [], []
    success_steps = 0
    for _ in range(max_steps):
        action = expert.act(obs)
        observations.append(obs)
        states.append(recorder.get_state())
        actions.append(action)
        obs, reward, success = recorder.step(action)
        rewards.append(reward)
        success_steps = success_steps + 1 if success else 0
        if success_steps >= hold_steps:
            dones = np.zeros(len(actions), dtype=np.int64)
            dones[-1] = 1
            return {
                "obs": {key: np.stack([o[key] for o in observations]) for key in observations[0]},
                "actions": np.stack(actions).astype(np.float64),
                "states": np.stack(states),
                "rewards": np.asarray(rewards, dtype=np.float64),
                "dones": dones,
                "model_file": model_file,
            }
    return None
