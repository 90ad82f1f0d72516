"""robomimic tasks (Lift, Can, Square, Transport, Tool Hang) on robosuite 1.5."""

from diffusion_policy.env.robomimic.abs_action import transform_action, undo_transform_action
from diffusion_policy.env.robomimic.env_meta import (
    TASK_ENV_NAMES,
    default_env_meta,
    infer_task_name,
    read_env_meta,
    robosuite_controller_config,
)
from diffusion_policy.env.robomimic.robosuite_env import RobomimicImageEnv, RobomimicLowdimEnv

__all__ = [
    "TASK_ENV_NAMES",
    "RobomimicImageEnv",
    "RobomimicLowdimEnv",
    "default_env_meta",
    "infer_task_name",
    "read_env_meta",
    "robosuite_controller_config",
    "transform_action",
    "undo_transform_action",
]
