"""Rollouts of an image (hybrid) policy on a robomimic task (robosuite 1.5).

Observations follow shape_meta: rgb keys `<camera>_image` (3, H, W) in [0, 1] rendered by
robosuite's cameras, low-dim keys from its proprioception (object state only when shape_meta has
"object"; the original never asks for it).
The video shows `render_obs_key`, the policy's own camera view. Score as in the lowdim runner.

Rendering happens only in the vector env's workers: the parent process gets a spaces-only stand-in
(`dummy_env_fn`), so no OpenGL context is created before the workers fork.

`terminate_on_success` (default True; the original ran every episode to max_steps) ends an
episode at its first success. The score is unchanged -- the max reward is already 1 -- and
evaluation gets much faster; pass False to reproduce the original videos' length.
"""

import functools
import os

import numpy as np
from gymnasium import spaces

from diffusion_policy.env.robomimic.abs_action import undo_transform_action
from diffusion_policy.env.robomimic.env_meta import make_robosuite_env
from diffusion_policy.env.robomimic.robosuite_env import RobomimicImageEnv, SpacesOnlyEnv, image_observation_space
from diffusion_policy.env.robomimic.runner_setup import resolve_env_meta, robomimic_episodes
from diffusion_policy.env_runner.base_runner import EnvRunner, max_reward_metric


def plain_shape_meta(shape_meta) -> dict:
    """shape_meta (dict or OmegaConf) as plain dicts/lists, cheap to send to worker processes."""
    obs = {
        key: {"shape": list(attr["shape"]), "type": attr.get("type", "low_dim")}
        for key, attr in shape_meta["obs"].items()
    }
    return {"obs": obs, "action": {"shape": list(shape_meta["action"]["shape"])}}


def spaces_only_image_env(env_meta: dict, shape_meta: dict, abs_action: bool) -> SpacesOnlyEnv:
    """The image env's spaces, from shape_meta and a state-only robosuite env (no OpenGL)."""
    env = make_robosuite_env(env_meta, abs_action=abs_action, use_object_obs=False)
    action_dim = env.action_spec[0].shape[0]
    env.close()
    bound = np.inf if abs_action else 1.0
    action_space = spaces.Box(-bound, bound, (action_dim,), dtype=np.float32)
    return SpacesOnlyEnv(image_observation_space(shape_meta), action_space)


class RobomimicImageRunner(EnvRunner):
    def __init__(
        self,
        output_dir,
        dataset_path,
        shape_meta: dict,
        n_train=10,
        n_train_vis=3,
        train_start_idx=0,
        n_test=22,
        n_test_vis=6,
        test_start_seed=10000,
        max_steps=400,
        n_obs_steps=2,
        n_action_steps=8,
        render_obs_key="agentview_image",
        fps=10,
        crf=22,
        past_action=False,
        abs_action=False,
        tqdm_interval_sec=5.0,
        n_envs=None,
        skip_video=False,
        task_name=None,
        terminate_on_success=True,
    ):
        if past_action:
            raise ValueError(
                "past_action=True is not supported (no Diffusion Policy config uses it); set past_action: False"
            )
        dataset_path = os.path.expanduser(str(dataset_path))
        env_meta, has_dataset, n_train = resolve_env_meta(dataset_path, task_name, n_train)
        episodes = robomimic_episodes(
            dataset_path if has_dataset else None,
            n_train, n_train_vis, train_start_idx, n_test, n_test_vis, test_start_seed,
        )  # fmt: skip
        shape_meta = plain_shape_meta(shape_meta)
        env_fn = functools.partial(
            RobomimicImageEnv,
            env_meta=env_meta,
            shape_meta=shape_meta,
            abs_action=abs_action,
            render_obs_key=render_obs_key,
            terminate_on_success=terminate_on_success,
        )
        dummy_env_fn = functools.partial(spaces_only_image_env, env_meta, shape_meta, abs_action)
        self.env_meta = env_meta
        self.shape_meta = shape_meta
        self.abs_action = abs_action
        super().__init__(
            output_dir,
            env_fn,
            episodes,
            max_reward_metric,
            n_obs_steps=n_obs_steps,
            n_action_steps=n_action_steps,
            max_steps=max_steps,
            n_envs=n_envs,
            fps=fps,
            crf=crf,
            skip_video=skip_video,
            name=f"{env_meta['env_name']}Image",
            tqdm_interval_sec=tqdm_interval_sec,
            dummy_env_fn=dummy_env_fn,
        )

    def env_action(self, action_dict: dict) -> np.ndarray:
        action = super().env_action(action_dict)  # (B, Ta, Da)
        return self.undo_transform_action(action) if self.abs_action else action

    def undo_transform_action(self, action: np.ndarray) -> np.ndarray:
        """(..., 10) pos + rotation_6d + gripper -> (..., 7) axis-angle; two arms 20 -> 14."""
        return undo_transform_action(action)
