"""Build a checkpoint's env runner from its cfg, with command-line overrides."""

from __future__ import annotations

import inspect
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf


def make_env_runner(cfg: DictConfig, output_dir: str, **overrides: Any):
    """Instantiate `cfg.task.env_runner` (original `_target_` paths) into `output_dir`.

    Overrides whose value is None are ignored; the rest must be constructor arguments of the
    runner class (e.g. n_test, n_train, n_envs, max_steps, skip_video, test_start_seed).
    """
    if "task" not in cfg or "env_runner" not in cfg.task:
        raise ValueError("the checkpoint's cfg has no task.env_runner; it cannot be evaluated in simulation")
    runner_cfg = OmegaConf.to_container(cfg.task.env_runner, resolve=True)
    runner_cls = hydra.utils.get_class(runner_cfg["_target_"])
    accepted = inspect.signature(runner_cls.__init__).parameters
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in accepted:
            raise ValueError(f"{runner_cls.__name__} has no option '{key}'")
        runner_cfg[key] = value
    if "task_name" in accepted and runner_cfg.get("task_name") is None and cfg.task.get("task_name"):
        # Lets a robomimic runner build its task from built-in defaults when the checkpoint's
        # dataset file is absent (original task configs name the task in task.task_name).
        runner_cfg["task_name"] = str(cfg.task.task_name)
    runner_cfg["output_dir"] = str(output_dir)
    return hydra.utils.instantiate(runner_cfg)
