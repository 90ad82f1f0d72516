"""The one rollout loop shared by every simulated task.

A task runner describes its episodes (`EpisodeSpec`: prefix, seed, reset options, video or not),
gives a factory for one raw gymnasium env and a metric function, and `EnvRunner.run(policy)` does
the rest:

- builds a vector env of `n_envs` copies of
  `MultiStepWrapper(VideoRecordingWrapper(FrameRecordingWrapper(env_fn())))` (AsyncVectorEnv with
  fork when there are >= 2 CPUs and > 1 env, else SyncVectorEnv; autoreset off);
- runs the episodes in chunks of `n_envs` (the last chunk is padded with repeats of its first
  episode, whose results are dropped), each episode reset with its own seed and reset options;
- loop: obs history (B, To, ...) -> `obs_to_policy` -> `policy.predict_action` (timed) ->
  action chunk (B, Ta, Da) -> env, until every env of the chunk is done (terminated, or
  `max_steps` env steps);
- calls `metric_fn(prefix, rewards, infos, episodes)` once per prefix ('train/', 'test/').

`run(policy, episodes=None, record_frames=False, render_frames=False)` runs the runner's own episodes
or the given ones, and returns {metrics..., f"{prefix}sim_video_{seed}": mp4 path (recorded
episodes), "episode_rewards": [per-step reward array per episode, in episode order],
"timing": {"predict_action_s": [seconds per predict_action call]}}, and with `record_frames=True`
"episode_frames": [every env step of each episode, in episode order] (see FrameRecordingWrapper;
`render_frames=True` adds an `env.render()` frame per step). The options are arguments of the run:
nothing is set on the runner from outside.
"""

import os
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import gymnasium
import numpy as np
import torch
import tqdm
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from diffusion_policy.common.pytorch_util import host_to_device
from diffusion_policy.gym_util.frame_recording_wrapper import FrameRecordingWrapper
from diffusion_policy.gym_util.multistep_wrapper import MultiStepWrapper
from diffusion_policy.gym_util.video_recording_wrapper import VideoRecordingWrapper


@dataclass
class EpisodeSpec:
    prefix: str  # 'train/' or 'test/'
    seed: int  # env seed (test: test_start_seed + i; train: i)
    reset_options: dict | None  # e.g. {"init_state": np.ndarray}
    record_video: bool


# metric_fn(prefix, per-episode reward arrays (T_i,), per-episode final info dicts, the episodes'
# specs (same order; gives the seeds)) -> {f"{prefix}mean_score": ..., ...}
MetricFn = Callable[[str, list[np.ndarray], list[dict], list[EpisodeSpec]], dict]


def seeded_episodes(
    n_train: int, n_train_vis: int, train_start_seed: int, n_test: int, n_test_vis: int, test_start_seed: int
) -> list[EpisodeSpec]:
    """Train episodes (seeds train_start_seed + i) then test episodes (test_start_seed + i); the
    first `n_*_vis` of each are recorded."""
    train = [EpisodeSpec("train/", train_start_seed + i, None, i < n_train_vis) for i in range(n_train)]
    test = [EpisodeSpec("test/", test_start_seed + i, None, i < n_test_vis) for i in range(n_test)]
    return train + test


def max_reward_metric(prefix: str, rewards: list[np.ndarray], infos: list[dict], episodes: list[EpisodeSpec]) -> dict:
    """Push-T / robomimic score: mean over episodes of the max per-step reward."""
    max_rewards = [float(np.max(r)) if len(r) > 0 else 0.0 for r in rewards]
    metrics = {f"{prefix}sim_max_reward_{spec.seed}": value for spec, value in zip(episodes, max_rewards)}
    metrics[f"{prefix}mean_score"] = float(np.mean(max_rewards))
    return metrics


def default_obs_to_policy(obs: np.ndarray | dict) -> dict:
    """Lowdim array obs (B, To, Do) -> {'obs': ...}; dict obs -> one entry per key (B, To, ...)."""
    if isinstance(obs, dict):
        return dict(obs)
    return {"obs": obs}


class _ParentAwareEnvFn:
    """Env factory for AsyncVectorEnv that builds `dummy_fn` when called in the parent process.

    AsyncVectorEnv calls its first env_fn in the parent only to read the spaces; a cheap dummy
    (e.g. without an OpenGL context) keeps the forked workers free of the parent's GL state.
    """

    def __init__(self, real_fn: Callable, dummy_fn: Callable, parent_pid: int):
        self.real_fn, self.dummy_fn, self.parent_pid = real_fn, dummy_fn, parent_pid

    def __call__(self):
        return self.dummy_fn() if os.getpid() == self.parent_pid else self.real_fn()


class _NoAutoresetSyncVectorEnv(SyncVectorEnv):
    """SyncVectorEnv that keeps stepping finished sub-envs (MultiStepWrapper makes those steps no-ops).

    With autoreset disabled, AsyncVectorEnv allows this, but SyncVectorEnv asserts that a finished
    sub-env is reset first; its flag is cleared here so both behave the same.
    """

    def step(self, actions):
        self._autoreset_envs[:] = False
        return super().step(actions)


class EnvRunner:
    """Runs `episodes` of `env_fn()` with a policy; see the module docstring.

    Beyond the shared API: `n_latency_steps` (the env keeps n_obs_steps + n_latency_steps
    observations, the policy sees the oldest n_obs_steps, and the first n_latency_steps actions of
    each chunk are dropped, as in the original), `steps_per_render` (default max(20 // fps, 1)),
    `tqdm_interval_sec`, and `dummy_env_fn`, a cheap env (same spaces) that AsyncVectorEnv builds in the parent process
    to read the spaces instead of a full `env_fn()`. Subclasses may override `env_action`.
    The vector env is built on the first `run` and kept until `close()`.
    """

    def __init__(
        self,
        output_dir: str,
        env_fn: Callable[[], gymnasium.Env],
        episodes: list[EpisodeSpec],
        metric_fn: MetricFn,
        n_obs_steps: int,
        n_action_steps: int,
        max_steps: int,
        n_envs: int | None = None,
        fps: float = 10,
        crf: int = 22,
        skip_video: bool = False,
        obs_to_policy: Callable | None = None,
        name: str = "rollout",
        steps_per_render: int | None = None,
        tqdm_interval_sec: float = 5.0,
        dummy_env_fn: Callable[[], gymnasium.Env] | None = None,
        n_latency_steps: int = 0,
    ):
        if not episodes:
            raise ValueError(f"{name}: no episodes to run; set n_train and/or n_test > 0")
        self.output_dir = output_dir
        self.env_fn = env_fn
        self.dummy_env_fn = dummy_env_fn
        self.episodes = list(episodes)
        self.metric_fn = metric_fn
        self.n_obs_steps = n_obs_steps  # what the policy sees
        self.n_latency_steps = n_latency_steps
        self.n_action_steps = n_action_steps
        self.max_steps = max_steps
        self.n_envs = min(n_envs or len(self.episodes), len(self.episodes))
        self.fps = fps
        self.crf = crf
        # Digest rule (robomimic, 20 Hz control): render every 20 // fps steps.
        self.steps_per_render = steps_per_render or max(int(20 // fps), 1)
        self.skip_video = skip_video
        self.obs_to_policy = obs_to_policy or default_obs_to_policy
        self.name = name
        self.tqdm_interval_sec = tqdm_interval_sec
        self._vector_env: gymnasium.vector.VectorEnv | None = None

    # ----- environments -----
    def _wrap(self, env: gymnasium.Env) -> gymnasium.Env:
        env = FrameRecordingWrapper(env, recording=False)  # switched on per run (run(record_frames=True))
        env = VideoRecordingWrapper(env, fps=self.fps, crf=self.crf, steps_per_render=self.steps_per_render)
        return MultiStepWrapper(env, self.n_obs_steps + self.n_latency_steps, self.n_action_steps,
                                max_episode_steps=self.max_steps)

    def _make_env(self) -> gymnasium.Env:
        return self._wrap(self.env_fn())

    def _make_dummy_env(self) -> gymnasium.Env:
        return self._wrap(self.dummy_env_fn())

    @property
    def env_worker_processes(self) -> int:
        """Env processes that run beside the policy (0: the envs step in this process)."""
        return self.n_envs if self.n_envs > 1 and (os.cpu_count() or 1) >= 2 else 0

    def vector_env(self) -> gymnasium.vector.VectorEnv:
        """The vector env, built on first use and kept until `close()`."""
        if self._vector_env is None:
            if self.env_worker_processes:
                env_fns = [self._make_env] * self.n_envs
                if self.dummy_env_fn is not None:
                    env_fns[0] = _ParentAwareEnvFn(self._make_env, self._make_dummy_env, os.getpid())
                self._vector_env = AsyncVectorEnv(env_fns, context="fork", autoreset_mode=AutoresetMode.DISABLED)
            else:
                self._vector_env = _NoAutoresetSyncVectorEnv(
                    [self._make_env] * self.n_envs, autoreset_mode=AutoresetMode.DISABLED
                )
        return self._vector_env

    def close(self) -> None:
        if self._vector_env is not None:
            self._vector_env.close()
            self._vector_env = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ----- policy I/O (subclasses may override) -----
    def env_action(self, action_dict: dict) -> np.ndarray:
        """The (B, Ta, Da) chunk to execute from `policy.predict_action`'s output."""
        return action_dict["action"].detach().to("cpu").numpy()[:, self.n_latency_steps :]

    def policy_input(self, obs: np.ndarray | dict) -> dict:
        """Batched env history (B, To + latency, ...) -> the policy's obs_dict (oldest To steps)."""
        To = self.n_obs_steps
        if isinstance(obs, dict):
            return self.obs_to_policy({key: value[:, :To] for key, value in obs.items()})
        return self.obs_to_policy(obs[:, :To])

    def _video_path(self, spec: EpisodeSpec) -> str | None:
        if self.skip_video or not spec.record_video:
            return None
        tag = spec.prefix.strip("/").replace("/", "_") or "episode"
        return os.path.join(self.output_dir, "media", f"{tag}_{spec.seed}_{uuid.uuid4().hex[:8]}.mp4")

    def first_observation(self, spec: EpisodeSpec | None = None) -> dict[str, np.ndarray]:
        """Policy input (batch of 1) at the start of one episode, default the first test episode.

        BAC calibrates its schedules on this observation (with a fixed sampling seed).
        """
        if spec is None:
            spec = next((s for s in self.episodes if s.prefix == "test/"), self.episodes[0])
        env = MultiStepWrapper(self.env_fn(), self.n_obs_steps + self.n_latency_steps, self.n_action_steps,
                               max_episode_steps=self.max_steps)
        try:
            obs, _ = env.reset(seed=spec.seed, options=spec.reset_options)
        finally:
            env.close()
        if isinstance(obs, dict):
            return self.policy_input({key: np.asarray(value)[None] for key, value in obs.items()})
        return self.policy_input(np.asarray(obs)[None])  # (1, To, ...)

    # ----- rollout -----
    def run(self, policy, episodes: list[EpisodeSpec] | None = None, record_frames: bool = False,
            render_frames: bool = False) -> dict:
        """Roll `policy` out on `episodes` (default: the runner's), see the module docstring."""
        episodes = list(self.episodes if episodes is None else episodes)
        if not episodes:
            raise ValueError(f"{self.name}: no episodes to run")
        envs = self.vector_env()
        envs.set_attr("recording", [record_frames] * self.n_envs)
        envs.set_attr("render_frames", [render_frames] * self.n_envs)
        device = getattr(policy, "device", torch.device("cpu"))
        dtype = getattr(policy, "dtype", torch.float32)
        n_chunks = -(-len(episodes) // self.n_envs)
        rewards, infos, videos, timings, frames = [], [], [], [], []
        # One bar for the run: episodes done (ends at 100 % even when episodes end early), with the
        # env step of the running chunk; tqdm's estimate of the remaining time comes with it.
        pbar = tqdm.tqdm(total=len(episodes), unit="episode", desc=f"Eval {self.name}", leave=False,
                         mininterval=self.tqdm_interval_sec)
        for chunk_idx in range(n_chunks):
            specs = episodes[chunk_idx * self.n_envs : (chunk_idx + 1) * self.n_envs]
            n_real = len(specs)
            dummies = [EpisodeSpec(specs[0].prefix, specs[0].seed, specs[0].reset_options, False)]
            specs = specs + dummies * (self.n_envs - n_real)

            envs.set_attr("episode_reset_options", [spec.reset_options for spec in specs])
            envs.set_attr("video_path", [self._video_path(spec) for spec in specs])
            obs, _ = envs.reset(seed=[spec.seed for spec in specs])
            policy.reset()
            done = np.zeros(self.n_envs, dtype=bool)
            counted = np.zeros(n_real, dtype=bool)  # episodes of this chunk already on the bar
            first = chunk_idx * self.n_envs + 1
            step = 0
            while not done.all():
                obs_dict = {  # pinned, non-blocking copies to a CUDA device
                    key: host_to_device(value, device, dtype) for key, value in self.policy_input(obs).items()
                }
                with torch.no_grad():
                    start = time.perf_counter()
                    action_dict = policy.predict_action(obs_dict)
                    if torch.device(device).type == "cuda":
                        torch.cuda.synchronize(device)
                    timings.append(time.perf_counter() - start)
                action = self.env_action(action_dict)  # (B, Ta, Da)
                if not np.all(np.isfinite(action)):
                    raise RuntimeError(f"{self.name}: the policy returned NaN/inf actions")
                obs, _, terminated, truncated, _ = envs.step(action)
                done = terminated | truncated
                step = min(step + action.shape[1], self.max_steps)
                finished = done[:n_real] & ~counted
                counted |= finished
                pbar.set_postfix_str(f"episodes {first}-{first + n_real - 1}: env step {step}/{self.max_steps}",
                                     refresh=False)
                pbar.update(int(finished.sum()))

            rewards += [np.asarray(r, dtype=np.float64) for r in envs.call("get_rewards")[:n_real]]
            infos += list(envs.call("get_last_info")[:n_real])
            videos += list(envs.call("finish_video")[:n_real])
            if record_frames:
                frames += list(envs.call("get_episode_frames")[:n_real])
        pbar.close()

        results = {}
        for prefix in dict.fromkeys(spec.prefix for spec in episodes):
            idx = [i for i, spec in enumerate(episodes) if spec.prefix == prefix]
            results.update(self.metric_fn(prefix, [rewards[i] for i in idx], [infos[i] for i in idx],
                                          [episodes[i] for i in idx]))
        for spec, video in zip(episodes, videos):
            if video is not None:
                results[f"{spec.prefix}sim_video_{spec.seed}"] = video
        results["episode_rewards"] = rewards
        results["timing"] = {"predict_action_s": timings}
        if record_frames:
            results["episode_frames"] = frames
        return results
