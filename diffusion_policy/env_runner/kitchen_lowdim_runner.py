"""Evaluate a lowdim policy on Franka Kitchen, all 7 tasks (original `KitchenLowdimRunner` kwargs)."""

from __future__ import annotations

import logging
import pathlib

import gymnasium
import numpy as np

from diffusion_policy.env_runner.base_runner import EnvRunner, EpisodeSpec

logger = logging.getLogger(__name__)

CONTROL_HZ = 12.5
N_TASKS = 7


def kitchen_metrics(prefix: str, rewards: list[np.ndarray], infos: list[dict],
                    episodes: list[EpisodeSpec]) -> dict:
    """Original kitchen metrics: mean_score = mean over episodes of (tasks completed) / 7, from the
    rewards; p_n = fraction of episodes that completed >= n tasks, from info['completed_tasks']."""
    scores = [float(np.sum(r)) / N_TASKS for r in rewards]
    n_completed = np.array([len(info.get("completed_tasks", ())) for info in infos])
    metrics = {f"{prefix}mean_score": float(np.mean(scores))}
    for n in range(1, N_TASKS + 1):
        metrics[f"{prefix}p_{n}"] = float(np.mean(n_completed >= n))
    return metrics


def load_init_states(dataset_dir) -> np.ndarray | None:
    """Train-episode initial states concat(qpos, qvel) (N, 59) from all_init_qpos/qvel.npy, or None
    if the files are absent."""
    qpos_path = pathlib.Path(dataset_dir) / "all_init_qpos.npy"
    qvel_path = pathlib.Path(dataset_dir) / "all_init_qvel.npy"
    if not (qpos_path.is_file() and qvel_path.is_file()):
        return None
    try:
        qpos, qvel = np.load(qpos_path), np.load(qvel_path)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {qpos_path} / {qvel_path} ({error}); re-download the kitchen "
                         "data into dataset_dir") from error
    if qpos.ndim != 2 or qvel.ndim != 2 or qpos.shape[1] != 30 or qvel.shape[1] != 29 \
            or len(qpos) != len(qvel):
        raise ValueError(f"{qpos_path} / {qvel_path} must hold (N, 30) qpos and (N, 29) qvel, got "
                         f"{qpos.shape} and {qvel.shape}; re-download the kitchen data")
    return np.concatenate([qpos, qvel], axis=1)


class _SpacesOnlyEnv(gymnasium.Env):
    """Carries the kitchen spaces for the vector env's parent process; never stepped."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}
    render_mode = "rgb_array"

    def __init__(self, observation_space, action_space):
        self.observation_space = observation_space
        self.action_space = action_space


class KitchenLowdimRunner(EnvRunner):
    def __init__(self, output_dir, dataset_dir, n_train=10, n_train_vis=3, train_start_seed=0,
                 n_test=22, n_test_vis=6, test_start_seed=10000, max_steps=280, n_obs_steps=2,
                 n_action_steps=8, render_hw=(240, 360), fps=12.5, crf=22, past_action=False,
                 tqdm_interval_sec=5.0, abs_action=False, robot_noise_ratio=0.1, n_envs=None,
                 skip_video=False):
        if past_action:
            raise ValueError("past_action=True is not supported (no shipped config uses it); "
                             "set past_action_visible: False")
        render_hw = tuple(render_hw)

        def env_fn():
            from diffusion_policy.env.kitchen.kitchen_lowdim_env import KitchenLowdimEnv

            return KitchenLowdimEnv(abs_action=abs_action, robot_noise_ratio=robot_noise_ratio,
                                    render_hw=render_hw)

        def dummy_env_fn():
            # Spaces only: keeps MuJoCo out of the parent process of the forked workers.
            from diffusion_policy.env.kitchen.kitchen_lowdim_env import kitchen_spaces

            return _SpacesOnlyEnv(*kitchen_spaces(abs_action))

        episodes = []
        init_states = load_init_states(dataset_dir) if n_train > 0 else None
        if n_train > 0 and init_states is None:
            logger.warning("kitchen: no all_init_qpos.npy / all_init_qvel.npy in %s; skipping the "
                           "%d train episodes", dataset_dir, n_train)
        elif n_train > 0:
            for i in range(n_train):
                # Like the original, episodes beyond the stored states start from the default state.
                options = {"init_state": init_states[i]} if i < len(init_states) else None
                episodes.append(EpisodeSpec("train/", train_start_seed + i, options, i < n_train_vis))
        episodes += [EpisodeSpec("test/", test_start_seed + i, None, i < n_test_vis)
                     for i in range(n_test)]

        super().__init__(
            output_dir, env_fn, episodes, kitchen_metrics, n_obs_steps=n_obs_steps,
            n_action_steps=n_action_steps, max_steps=max_steps, n_envs=n_envs, fps=fps, crf=crf,
            skip_video=skip_video, name="KitchenLowdimRunner",
            steps_per_render=max(int(CONTROL_HZ // fps), 1), tqdm_interval_sec=tqdm_interval_sec,
            dummy_env_fn=dummy_env_fn,
        )

