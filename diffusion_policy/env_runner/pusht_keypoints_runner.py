"""Rollouts of a lowdim policy on Push-T with keypoint observations (`pusht_lowdim` task)."""

import functools


from diffusion_policy.env.pusht.pusht_keypoints_env import PushTKeypointsEnv
from diffusion_policy.env_runner.base_runner import EnvRunner, max_reward_metric, seeded_episodes


def check_no_past_action(past_action: bool) -> None:
    if past_action:
        raise ValueError(
            "past_action=True is not supported (the transformer policies take no past actions); "
            "set past_action_visible=False"
        )


class PushTKeypointsRunner(EnvRunner):
    """Original kwargs. Episodes: train seeds train_start_seed + i, test seeds test_start_seed + i
    (both use `legacy_test` placement). Score: mean over episodes of the max per-step reward.

    n_latency_steps: the env keeps n_obs_steps + n_latency_steps observations and the policy sees
    the oldest n_obs_steps of them; the first n_latency_steps actions of each chunk are dropped.
    """

    def __init__(
        self,
        output_dir,
        keypoint_visible_rate=1.0,
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
        n_latency_steps=0,
        fps=10,
        crf=22,
        agent_keypoints=False,
        past_action=False,
        tqdm_interval_sec=5.0,
        n_envs=None,
        skip_video=False,
    ):
        check_no_past_action(past_action)
        env_fn = functools.partial(
            PushTKeypointsEnv,
            legacy=legacy_test,
            keypoint_visible_rate=keypoint_visible_rate,
            agent_keypoints=agent_keypoints,
        )
        super().__init__(
            output_dir,
            env_fn=env_fn,
            episodes=seeded_episodes(n_train, n_train_vis, train_start_seed, n_test, n_test_vis, test_start_seed),
            metric_fn=max_reward_metric,
            n_obs_steps=n_obs_steps,
            n_latency_steps=n_latency_steps,
            n_action_steps=n_action_steps,
            max_steps=max_steps,
            n_envs=n_envs,
            fps=fps,
            crf=crf,
            skip_video=skip_video,
            name="PushTKeypointsRunner",
            steps_per_render=max(int(10 // fps), 1),  # Push-T runs at 10 Hz
            tqdm_interval_sec=tqdm_interval_sec,
        )
