"""Gymnasium envs for the robomimic tasks, driven through robosuite 1.5 directly.

- `RobomimicLowdimEnv`: obs = float32 concat of `obs_keys` ("object" is robosuite's
  "object-state"); e.g. lift with object, robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos -> 19-d.
- `RobomimicImageEnv`: obs = dict per shape_meta key; rgb keys `<camera>_image` are (3, H, W)
  float32 in [0, 1], low-dim keys float32 (D,).

Both: reward 1.0 on the steps where the task succeeds (`_check_success`), else 0.0;
info["is_success"]; with `terminate_on_success` an episode ends at its first success (its score,
the max reward, is then known), otherwise the runner stops it at max_steps. `reset(seed=s)` reseeds the
robosuite env's RNG (object placement, robot init noise) so a test seed always gives the same
scene; `reset(options={"init_state": flat_state})` restores a recorded MuJoCo state (time, qpos,
qvel), as robomimic's `reset_to` does.

Images: MuJoCo renders bottom-up (robosuite's "opengl" convention); robomimic stores and feeds
images flipped upright, so images and video frames are flipped here the same way.
"""

from typing import ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from diffusion_policy.env.robomimic.env_meta import make_robosuite_env

ROBOSUITE_OBS_NAMES = {"object": "object-state"}  # robomimic obs key -> robosuite observable


def _upright(image: np.ndarray, rendered_convention: str) -> np.ndarray:
    """(H, W, 3) image in robosuite's convention -> top row first (robomimic's stored images)."""
    return image[::-1] if rendered_convention == "opengl" else image


def _rgb_key_to_camera(key: str) -> str:
    if not key.endswith("_image"):
        raise ValueError(f"rgb obs key {key!r} must be '<camera>_image' (e.g. agentview_image)")
    return key[: -len("_image")]


class _RobosuiteEnv(gymnasium.Env):
    """Reset/step/seed/state plumbing shared by the lowdim and image envs."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, env_meta: dict, abs_action: bool = False, terminate_on_success: bool = False, **make_kwargs):
        self.env = make_robosuite_env(env_meta, abs_action=abs_action, **make_kwargs)
        self.terminate_on_success = terminate_on_success
        self.env_meta = env_meta
        self.abs_action = abs_action
        self.render_mode = "rgb_array"
        low, high = self.env.action_spec
        if abs_action:  # absolute poses are not limited to [-1, 1]
            low, high = np.full_like(low, -np.inf), np.full_like(high, np.inf)
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self._raw_obs = self.env._get_observations(force_update=True)

    # ----- robosuite access -----
    def _reseed(self, seed: int) -> None:
        # robosuite's placement samplers and robots hold a reference to env.rng: reseed it in place
        self.env.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state

    def get_state(self) -> np.ndarray:
        """Flat MuJoCo state [time, qpos, qvel], as stored in robomimic's data/demo_i/states."""
        return np.array(self.env.sim.get_state().flatten())

    def set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        expected = 1 + self.env.sim.model.nq + self.env.sim.model.nv
        if state.shape != (expected,):
            raise ValueError(
                f"init_state has shape {state.shape}, but {self.env_meta['env_name']} has flat states of "
                f"({expected},); is the dataset for another task?"
            )
        self.env.sim.set_state_from_flattened(state)
        self.env.sim.forward()
        self._raw_obs = self.env._get_observations(force_update=True)

    def is_success(self) -> bool:
        return bool(self.env._check_success())

    # ----- gymnasium API -----
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._reseed(seed)
        self._raw_obs = self.env.reset()
        init_state = (options or {}).get("init_state")
        if init_state is not None:
            self.set_state(init_state)
        return self._obs(self._raw_obs), {"is_success": self.is_success()}

    def step(self, action: np.ndarray):
        self._raw_obs, _, _, _ = self.env.step(np.asarray(action, dtype=np.float64))
        success = self.is_success()
        terminated = success and self.terminate_on_success
        return self._obs(self._raw_obs), float(success), terminated, False, {"is_success": success}

    def close(self):
        self.env.close()

    def _obs(self, raw_obs: dict):
        raise NotImplementedError


class RobomimicLowdimEnv(_RobosuiteEnv):
    """State observations only; no OpenGL context unless `render()` is called."""

    def __init__(
        self,
        env_meta: dict,
        obs_keys: list[str],
        abs_action: bool = False,
        render_hw: tuple[int, int] = (256, 256),
        render_camera_name: str = "agentview",
        terminate_on_success: bool = False,
    ):
        super().__init__(env_meta, abs_action=abs_action, terminate_on_success=terminate_on_success,
                         use_object_obs=True)
        self.obs_keys = list(obs_keys)
        self.render_hw = tuple(render_hw)
        self.render_camera_name = render_camera_name
        missing = [k for k in self.obs_keys if ROBOSUITE_OBS_NAMES.get(k, k) not in self._raw_obs]
        if missing:
            raise KeyError(
                f"obs_keys {missing} are not observations of {env_meta['env_name']}; available: {sorted(self._raw_obs)}"
            )
        dim = self._obs(self._raw_obs).shape[0]
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)

    def _obs(self, raw_obs: dict) -> np.ndarray:
        parts = [np.atleast_1d(raw_obs[ROBOSUITE_OBS_NAMES.get(k, k)]) for k in self.obs_keys]
        return np.concatenate(parts).astype(np.float32)  # (Do,)

    def render(self) -> np.ndarray:
        """(H, W, 3) uint8 frame of `render_camera_name`, upright."""
        sim = self.env.sim
        if sim._render_context_offscreen is None:
            self._create_render_context()
        height, width = self.render_hw
        frame = sim.render(width=width, height=height, camera_name=self.render_camera_name)
        return np.ascontiguousarray(frame[::-1])  # sim.render is always bottom-up

    def _create_render_context(self) -> None:
        from robosuite.utils.binding_utils import MjRenderContextOffscreen

        try:
            context = MjRenderContextOffscreen(self.env.sim, device_id=-1)
        except Exception as err:  # noqa: BLE001 - any GL failure gets the same advice
            raise RuntimeError(
                f"cannot create an offscreen OpenGL context for rendering ({type(err).__name__}: {err}); "
                "install Mesa EGL (libegl1) or use MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa with libosmesa6"
            ) from None
        context.vopt.geomgroup[0] = 0  # hide collision meshes
        context.vopt.geomgroup[1] = 1  # show visual meshes


def rgb_and_lowdim_keys(shape_meta: dict) -> tuple[list[str], list[str]]:
    """shape_meta['obs'] keys split by type ('rgb' vs 'low_dim', the default)."""
    rgb, lowdim = [], []
    for key, attr in shape_meta["obs"].items():
        (rgb if attr.get("type", "low_dim") == "rgb" else lowdim).append(key)
    return rgb, lowdim


class RobomimicImageEnv(_RobosuiteEnv):
    """Camera images + proprioception, as described by shape_meta; `render()` shows `render_obs_key`."""

    def __init__(
        self,
        env_meta: dict,
        shape_meta: dict,
        abs_action: bool = False,
        render_obs_key: str = "agentview_image",
        terminate_on_success: bool = False,
    ):
        import robosuite.macros

        rgb_keys, lowdim_keys = rgb_and_lowdim_keys(shape_meta)
        if render_obs_key not in rgb_keys:
            raise ValueError(f"render_obs_key {render_obs_key!r} is not an rgb key of shape_meta: {rgb_keys}")
        camera_sizes = [tuple(shape_meta["obs"][k]["shape"][1:]) for k in rgb_keys]  # (H, W) from (3, H, W)
        super().__init__(
            env_meta,
            abs_action=abs_action,
            terminate_on_success=terminate_on_success,
            camera_names=[_rgb_key_to_camera(k) for k in rgb_keys],
            camera_sizes=camera_sizes,
            use_object_obs="object" in lowdim_keys,
        )
        self.rgb_keys, self.lowdim_keys = rgb_keys, lowdim_keys
        self.render_obs_key = render_obs_key
        self._convention = robosuite.macros.IMAGE_CONVENTION
        self.observation_space = image_observation_space(shape_meta)
        for key in lowdim_keys:
            got = np.atleast_1d(self._raw_obs[ROBOSUITE_OBS_NAMES.get(key, key)]).shape
            if got != tuple(shape_meta["obs"][key]["shape"]):
                raise ValueError(
                    f"shape_meta says {key} is {tuple(shape_meta['obs'][key]['shape'])}, robosuite gives {got}"
                )

    def _image_hwc(self, raw_obs: dict, key: str) -> np.ndarray:
        return _upright(raw_obs[key], self._convention)  # (H, W, 3) uint8

    def _obs(self, raw_obs: dict) -> dict:
        obs = {}
        for key in self.rgb_keys:
            obs[key] = np.moveaxis(self._image_hwc(raw_obs, key), -1, 0).astype(np.float32) / 255.0  # (3, H, W)
        for key in self.lowdim_keys:
            obs[key] = np.atleast_1d(raw_obs[ROBOSUITE_OBS_NAMES.get(key, key)]).astype(np.float32)
        return obs

    def render(self) -> np.ndarray:
        """(H, W, 3) uint8: the latest `render_obs_key` observation."""
        return np.ascontiguousarray(self._image_hwc(self._raw_obs, self.render_obs_key))


def image_observation_space(shape_meta: dict) -> spaces.Dict:
    rgb_keys, _ = rgb_and_lowdim_keys(shape_meta)
    obs_spaces = {}
    for key in shape_meta["obs"]:
        shape = tuple(shape_meta["obs"][key]["shape"])
        low, high = (0.0, 1.0) if key in rgb_keys else (-np.inf, np.inf)
        obs_spaces[key] = spaces.Box(low, high, shape, dtype=np.float32)
    return spaces.Dict(obs_spaces)


class SpacesOnlyEnv(gymnasium.Env):
    """Stands in for an env in the parent process of a vector env, which only reads the spaces."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space = observation_space
        self.action_space = action_space
        self.render_mode = "rgb_array"

    def reset(self, *, seed=None, options=None):
        raise RuntimeError("SpacesOnlyEnv only describes spaces; it cannot be reset")

    def step(self, action):
        raise RuntimeError("SpacesOnlyEnv only describes spaces; it cannot be stepped")
