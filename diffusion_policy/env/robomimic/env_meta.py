"""Which robosuite environment a robomimic task runs in, and how to build it with robosuite 1.5.

`env_meta` is robomimic's description of an environment, stored as the JSON attribute `env_args`
of a dataset's `data` group: {"env_name": "Lift", "type": 1, "env_kwargs": {...}}. The robomimic
datasets were recorded with robosuite 1.2, whose controller configs are flat part configs
({"type": "OSC_POSE", "control_delta": true, ...}) that act in the world frame. robosuite 1.5 wants
a composite config whose arm part says `input_type` ("delta"/"absolute") and `input_ref_frame`;
`robosuite_controller_config` does that conversion and pins the world frame, so delta and absolute
actions mean what they meant when the data was recorded (Transport's second arm faces the first,
so its base frame differs from the world frame).

Without a dataset, `default_env_meta(task)` gives the same description built from robosuite's own
OSC_POSE defaults (the values robomimic's datasets use).
"""

import copy
import ctypes.util
import json
import logging
import os
import pathlib
import sys

import h5py

# robomimic task folder name -> robosuite environment name
TASK_ENV_NAMES = {
    "lift": "Lift",
    "can": "PickPlaceCan",
    "square": "NutAssemblySquare",
    "transport": "TwoArmTransport",
    "tool_hang": "ToolHang",
}
# robomimic's EnvType.ROBOSUITE_TYPE
ROBOSUITE_ENV_TYPE = 1
# cameras of the robomimic image datasets: (camera names, square image side)
TASK_CAMERAS = {
    "lift": (["agentview", "robot0_eye_in_hand"], 84),
    "can": (["agentview", "robot0_eye_in_hand"], 84),
    "square": (["agentview", "robot0_eye_in_hand"], 84),
    "transport": (["shouldercamera0", "shouldercamera1", "robot0_eye_in_hand", "robot1_eye_in_hand"], 84),
    "tool_hang": (["sideview", "robot0_eye_in_hand"], 240),
}
# env_kwargs this package sets itself (rendering, termination, physics loop); dataset values are ignored
_CONTROLLED_KWARGS = (
    "has_renderer",
    "has_offscreen_renderer",
    "use_camera_obs",
    "use_object_obs",
    "camera_names",
    "camera_heights",
    "camera_widths",
    "camera_depths",
    "render_gpu_device_id",
    "ignore_done",
    "hard_reset",
    "lite_physics",
    "renderer",
    "seed",
)


def configure_gl_backend() -> None:
    """Pick the headless OpenGL backend before robosuite is first imported (it fixes it at import).

    An explicit MUJOCO_GL is kept (osmesa also gets the matching PYOPENGL_PLATFORM). Otherwise EGL
    when libEGL is installed, else OSMesa when libOSMesa is. State-only envs never open a context.
    """
    if "robosuite" in sys.modules:
        return
    backend = os.environ.get("MUJOCO_GL")
    if backend is None:
        if ctypes.util.find_library("EGL") is None and ctypes.util.find_library("OSMesa") is not None:
            backend = "osmesa"
        else:
            backend = "egl"
        os.environ["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)


# robosuite messages that say nothing about our tasks: its import-time notes (no private macro file and
# how to make one; robots and IK of optional packages) and one INFO line per controller config it loads.
_ROBOSUITE_NOISE = ("No private macro file found", "private macro file", "setup_macros.py",
                    "Could not import robosuite_models", "Could not load the mink-based whole-body IK")


def _not_robosuite_noise(record: logging.LogRecord) -> bool:
    return not any(text in record.getMessage() for text in _ROBOSUITE_NOISE)


def import_robosuite():
    """robosuite, imported after `configure_gl_backend`, its console logging at WARNING (real warnings only)."""
    configure_gl_backend()
    robosuite_logger = logging.getLogger("robosuite_logs")  # the logger robosuite configures at import
    if _not_robosuite_noise not in robosuite_logger.filters:
        robosuite_logger.addFilter(_not_robosuite_noise)
    robosuite_logger.propagate = False  # robosuite prints through its own handler: not twice
    import robosuite

    robosuite_logger.setLevel(logging.WARNING)
    return robosuite


def infer_task_name(path: str | os.PathLike | None) -> str | None:
    """The robomimic task named by a path like data/robomimic/datasets/lift/ph/low_dim.hdf5."""
    if path is None:
        return None
    for part in reversed(pathlib.PurePath(path).parts):
        if part in TASK_ENV_NAMES:
            return part
    return None


def read_env_meta(dataset_path: str | os.PathLike) -> dict:
    """env_meta from the `env_args` attribute of a robomimic hdf5's `data` group."""
    try:
        with h5py.File(dataset_path, "r") as f:
            raw = f["data"].attrs["env_args"]
    except FileNotFoundError:
        raise FileNotFoundError(f"robomimic dataset not found: {dataset_path}") from None
    except (OSError, KeyError) as err:
        raise ValueError(
            f"cannot read data.attrs['env_args'] from {dataset_path} ({err}); re-download the robomimic hdf5"
        ) from None
    try:
        env_meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"data.attrs['env_args'] in {dataset_path} is not valid JSON ({err}); re-download the robomimic hdf5"
        ) from None
    if env_meta.get("type", ROBOSUITE_ENV_TYPE) != ROBOSUITE_ENV_TYPE:
        raise ValueError(
            f"{dataset_path} describes a non-robosuite env (type {env_meta['type']}); only robosuite tasks run here"
        )
    if "env_name" not in env_meta or "env_kwargs" not in env_meta:
        raise ValueError(f"env_args in {dataset_path} lacks env_name/env_kwargs; re-download the robomimic hdf5")
    return env_meta


def default_env_meta(task: str) -> dict:
    """env_meta for a robomimic task without its dataset: Panda(s), OSC_POSE delta control at 20 Hz."""
    if task not in TASK_ENV_NAMES:
        raise ValueError(f"unknown robomimic task {task!r}; use one of {sorted(TASK_ENV_NAMES)}")
    robosuite = import_robosuite()
    camera_names, side = TASK_CAMERAS[task]
    env_kwargs = {
        "robots": ["Panda", "Panda"] if task == "transport" else ["Panda"],
        "controller_configs": robosuite.load_part_controller_config(default_controller="OSC_POSE"),
        "control_freq": 20,
        "reward_shaping": False,
        "camera_names": camera_names,
        "camera_heights": side,
        "camera_widths": side,
    }
    if task == "transport":
        env_kwargs["env_configuration"] = "single-arm-opposed"
    return {"env_name": TASK_ENV_NAMES[task], "type": ROBOSUITE_ENV_TYPE, "env_kwargs": env_kwargs}


def robosuite_controller_config(controller_config: dict, robots, abs_action: bool = False) -> dict:
    """A robosuite-1.5 composite controller config from a robomimic (robosuite <= 1.4) one.

    Flat part configs are converted: `control_delta` becomes `input_type`, actions are read in the
    world frame (robosuite <= 1.4 semantics), and `refactor_composite_controller_config` nests the
    result under each arm of the robot. `abs_action` switches the arms to absolute poses.
    """
    import_robosuite()  # its logging set up first
    from robosuite.controllers.composite.composite_controller_factory import refactor_composite_controller_config
    from robosuite.robots import REGISTERED_ROBOTS

    robot = robots[0] if isinstance(robots, (list, tuple)) else robots
    config = copy.deepcopy(dict(controller_config))
    if "body_parts" in config:  # already a robosuite >= 1.5 composite config
        if abs_action:
            for part in config["body_parts"].values():
                if part.get("type", "").startswith("OSC"):
                    part["input_type"] = "absolute"
        return config
    control_delta = config.pop("control_delta", config.get("input_type", "delta") == "delta")
    config["input_type"] = "delta" if (control_delta and not abs_action) else "absolute"
    config["input_ref_frame"] = "world"
    return refactor_composite_controller_config(config, robot, list(REGISTERED_ROBOTS[robot].arms))


def robosuite_make_kwargs(
    env_meta: dict,
    abs_action: bool = False,
    camera_names: list[str] = (),
    camera_sizes: list[tuple[int, int]] = (),
    use_object_obs: bool = True,
) -> dict:
    """Keyword arguments for `robosuite.make` (env_name included) from env_meta.

    camera_names / camera_sizes ((H, W) each): cameras rendered into the observation; none means a
    state-only env with no OpenGL context.
    """
    kwargs = {k: v for k, v in copy.deepcopy(env_meta["env_kwargs"]).items() if k not in _CONTROLLED_KWARGS}
    kwargs["controller_configs"] = robosuite_controller_config(
        kwargs["controller_configs"], kwargs["robots"], abs_action
    )
    use_cameras = len(camera_names) > 0
    kwargs.update(
        env_name=env_meta["env_name"],
        has_renderer=False,
        has_offscreen_renderer=use_cameras,
        use_camera_obs=use_cameras,
        use_object_obs=use_object_obs,
        ignore_done=True,  # the runner decides when an episode ends
        hard_reset=False,  # keep one MjSim per env (robomimic image evaluation does the same)
        lite_physics=False,  # forward() before every substep, as robosuite <= 1.4 did
        renderer="mujoco",  # no interactive viewer machinery
        # The model's own randomisation (e.g. Lift's cube size, drawn once when the model is built)
        # uses the env's RNG at construction; unseeded, two processes built different cubes and the
        # same episode seed gave observations 7e-4 apart. reset(seed) reseeds placements per episode.
        seed=0,
    )
    if use_cameras:
        kwargs.update(
            camera_names=list(camera_names),
            camera_heights=[h for h, _ in camera_sizes],
            camera_widths=[w for _, w in camera_sizes],
            camera_depths=False,
        )
    return kwargs


def make_robosuite_env(env_meta: dict, **kwargs):
    """A raw robosuite env; kwargs as in `robosuite_make_kwargs`."""
    robosuite = import_robosuite()
    return robosuite.make(**robosuite_make_kwargs(env_meta, **kwargs))
