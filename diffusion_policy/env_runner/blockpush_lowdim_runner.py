"""Evaluate a lowdim policy on multimodal block pushing (original `BlockPushLowdimRunner` kwargs)."""

from __future__ import annotations

import numpy as np

from diffusion_policy.env_runner.base_runner import EnvRunner, EpisodeSpec

CONTROL_HZ = 10
EEF_TARGET_SLICE = slice(8, 10)  # effector_target_translation in the 16-d observation


def blockpush_metrics(prefix: str, rewards: list[np.ndarray], infos: list[dict],
                      episodes: list[EpisodeSpec]) -> dict:
    """Original block-pushing metrics.

    total reward of an episode = sum of its unique per-step rewards (0, 0.49, 0.51 -> 0 / 0.49 / 1.0);
    mean_score = mean total; p1 / p2 = fraction of episodes with one / both blocks in a target;
    sim_max_reward_<seed> = the episode's total; <event> = fraction of episodes where the info
    event (REACH_b, TARGET_b_t) happened (its step > 0).
    """
    totals = np.array([np.unique(r).sum() for r in rewards])
    metrics = {f"{prefix}sim_max_reward_{spec.seed}": float(total)
               for spec, total in zip(episodes, totals)}
    metrics[f"{prefix}mean_score"] = float(totals.mean())
    metrics[f"{prefix}p1"] = float(np.mean(totals > 0.4))
    metrics[f"{prefix}p2"] = float(np.mean(totals > 0.9))
    event_names = dict.fromkeys(name for info in infos for name in info)
    for name in event_names:
        metrics[prefix + name] = float(np.mean([info.get(name, -1) > 0 for info in infos]))
    return metrics


class BlockPushLowdimRunner(EnvRunner):
    def __init__(self, output_dir, n_train=10, n_train_vis=3, train_start_seed=0, n_test=22,
                 n_test_vis=6, test_start_seed=10000, max_steps=200, n_obs_steps=8,
                 n_action_steps=8, fps=5, crf=22, past_action=False, abs_action=False,
                 obs_eef_target=True, tqdm_interval_sec=5.0, n_envs=None, skip_video=False):
        if past_action:
            raise ValueError("past_action=True is not supported (no shipped config uses it); "
                             "set past_action_visible: False")
        from diffusion_policy.env.block_pushing.block_pushing_multimodal import BlockPushMultimodal

        def env_fn():
            return BlockPushMultimodal(control_frequency=CONTROL_HZ, abs_action=abs_action)

        episodes = [EpisodeSpec("train/", train_start_seed + i, None, i < n_train_vis)
                    for i in range(n_train)]
        episodes += [EpisodeSpec("test/", test_start_seed + i, None, i < n_test_vis)
                     for i in range(n_test)]

        def obs_to_policy(obs: np.ndarray) -> dict:
            obs = np.asarray(obs, dtype=np.float32)  # (B, To, 16)
            if not obs_eef_target:
                obs = obs.copy()
                obs[..., EEF_TARGET_SLICE] = 0
            return {"obs": obs}

        super().__init__(
            output_dir, env_fn, episodes, blockpush_metrics, n_obs_steps=n_obs_steps,
            n_action_steps=n_action_steps, max_steps=max_steps, n_envs=n_envs, fps=fps, crf=crf,
            skip_video=skip_video, obs_to_policy=obs_to_policy, name="BlockPushLowdimRunner",
            steps_per_render=max(int(CONTROL_HZ // fps), 1), tqdm_interval_sec=tqdm_interval_sec,
        )
