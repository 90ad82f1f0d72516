"""Rollouts of an image policy on Push-T (`pusht_image` task)."""

import functools

from diffusion_policy.env.pusht.pusht_image_env import PushTImageEnv
from diffusion_policy.env_runner.base_runner import EnvRunner, max_reward_metric, seeded_episodes
from diffusion_policy.env_runner.pusht_keypoints_runner import check_no_past_action


class PushTImageRunner(EnvRunner):
    """Original kwargs. Policy obs: {'image': (B, To, 3, H, W) in [0, 1], 'agent_pos': (B, To, 2)}.
    Episodes and score as `PushTKeypointsRunner`."""

    def __init__(
        self,
        output_dir,
        n_train=10,
        n_train_vis=3,
        train_start_seed=0,
        n_test=22,
        n_test_vis=6,
        legacy_test=False,
        test_start_seed=10000,
        max_steps=200,
        n_obs_steps=8,
        n_action_steps=8,
        fps=10,
        crf=22,
        render_size=96,
        past_action=False,
        tqdm_interval_sec=5.0,
        n_envs=None,
        skip_video=False,
    ):
        check_no_past_action(past_action)
        super().__init__(
            output_dir,
            env_fn=functools.partial(PushTImageEnv, legacy=legacy_test, render_size=render_size),
            episodes=seeded_episodes(n_train, n_train_vis, train_start_seed, n_test, n_test_vis, test_start_seed),
            metric_fn=max_reward_metric,
            n_obs_steps=n_obs_steps,
            n_action_steps=n_action_steps,
            max_steps=max_steps,
            n_envs=n_envs,
            fps=fps,
            crf=crf,
            skip_video=skip_video,
            name="PushTImageRunner",
            steps_per_render=max(int(10 // fps), 1),  # Push-T runs at 10 Hz
            tqdm_interval_sec=tqdm_interval_sec,
        )
