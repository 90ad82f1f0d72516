"""Rollouts of a lowdim policy on a robomimic task (robosuite 1.5).

Score: success rate, the mean over episodes of the max per-step reward (sparse 0/1), logged as
`{train,test}/mean_score` with `{prefix}sim_max_reward_{seed}` per episode (train: demo index).

Latency (as in the original): the env keeps n_obs_steps + n_latency_steps observations, the
policy sees the oldest n_obs_steps of them, and the first n_latency_steps actions of each
predicted chunk are dropped.

`terminate_on_success` (default True; the original ran every episode to max_steps) ends an
episode at its first success. The score is unchanged -- the max reward is already 1 -- and
evaluation gets much faster; pass False to reproduce the original videos' length.
"""

import functools
import os

import numpy as np

from diffusion_policy.env.robomimic.abs_action import undo_transform_action
from diffusion_policy.env.robomimic.robosuite_env import RobomimicLowdimEnv
from diffusion_policy.env.robomimic.runner_setup import resolve_env_meta, robomimic_episodes
from diffusion_policy.env_runner.base_runner import EnvRunner, max_reward_metric


class RobomimicLowdimRunner(EnvRunner):
    def __init__(
        self,
        output_dir,
        dataset_path,
        obs_keys,
        n_train=10,
        n_train_vis=3,
        train_start_idx=0,
        n_test=22,
        n_test_vis=6,
        test_start_seed=10000,
        max_steps=400,
        n_obs_steps=2,
        n_action_steps=8,
        n_latency_steps=0,
        render_hw=(256, 256),
        render_camera_name="agentview",
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
        env_fn = functools.partial(
            RobomimicLowdimEnv,
            env_meta=env_meta,
            obs_keys=list(obs_keys),
            abs_action=abs_action,
            render_hw=tuple(render_hw),
            render_camera_name=render_camera_name,
            terminate_on_success=terminate_on_success,
        )
        self.env_meta = env_meta
        self.abs_action = abs_action
        super().__init__(
            output_dir,
            env_fn,
            episodes,
            max_reward_metric,
            n_obs_steps=n_obs_steps,
            n_latency_steps=n_latency_steps,
            n_action_steps=n_action_steps,
            max_steps=max_steps,
            n_envs=n_envs,
            fps=fps,
            crf=crf,
            skip_video=skip_video,
            name=f"{env_meta['env_name']}Lowdim",
            tqdm_interval_sec=tqdm_interval_sec,
        )

    def env_action(self, action_dict: dict) -> np.ndarray:
        action = super().env_action(action_dict)  # (B, Ta, Da)
        return self.undo_transform_action(action) if self.abs_action else action

    def undo_transform_action(self, action: np.ndarray) -> np.ndarray:
        """(..., 10) pos + rotation_6d + gripper -> (..., 7) axis-angle; two arms 20 -> 14."""
        return undo_transform_action(action)
