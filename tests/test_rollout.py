"""Wrapper stack and the shared rollout loop, on a tiny counting env and a fake policy."""

import os

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

from diffusion_policy.env_runner.base_runner import EnvRunner, EpisodeSpec, max_reward_metric
from diffusion_policy.gym_util.multistep_wrapper import MultiStepWrapper
from diffusion_policy.gym_util.video_recording_wrapper import VideoRecordingWrapper


class CounterEnv(gymnasium.Env):
    """obs = [t, seed offset]; reward = action[0]; terminates when the action sum reaches `goal`.

    `options={"offset": x}` shifts the observation's second entry, to check per-env reset options.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, goal: float = np.inf, dict_obs: bool = False):
        self.goal = goal
        self.dict_obs = dict_obs
        self.render_mode = "rgb_array"
        box = spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)
        self.observation_space = (
            spaces.Dict({"state": box, "image": spaces.Box(0, 1, (3, 4, 4), np.float32)}) if dict_obs else box
        )
        self.action_space = spaces.Box(-10, 10, (1,), dtype=np.float32)

    def _obs(self):
        state = np.array([self.t, self.offset], dtype=np.float32)
        if self.dict_obs:
            return {"state": state, "image": np.full((3, 4, 4), self.t / 100, dtype=np.float32)}
        return state

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.total = 0, 0.0
        self.offset = float((options or {}).get("offset", seed if seed is not None else 0))
        return self._obs(), {"seed": seed}

    def step(self, action):
        self.t += 1
        self.total += float(action[0])
        return self._obs(), float(action[0]), self.total >= self.goal, False, {"t": self.t}

    def render(self):
        return np.full((16, 16, 3), (self.t * 20) % 255, dtype=np.uint8)


def test_history_padding_and_chunk_execution():
    env = MultiStepWrapper(CounterEnv(), n_obs_steps=3, n_action_steps=2)
    obs, _ = env.reset(seed=5)
    assert obs.shape == (3, 2) and env.observation_space.shape == (3, 2)
    np.testing.assert_array_equal(obs[:, 0], [0, 0, 0])  # first obs repeated
    obs, reward, terminated, truncated, info = env.step(np.array([[1.0], [2.0]]))
    np.testing.assert_array_equal(obs[:, 0], [0, 1, 2])
    assert reward == 2.0 and not terminated and not truncated and info == {"t": 2}
    obs, *_ = env.step(np.array([[0.5], [0.5]]))
    np.testing.assert_array_equal(obs[:, 0], [2, 3, 4])
    assert env.get_rewards() == [1.0, 2.0, 0.5, 0.5]


def test_reward_aggregation_options():
    env = MultiStepWrapper(CounterEnv(), 1, 3, reward_agg="sum")
    env.reset()
    assert env.step(np.array([[1.0], [2.0], [3.0]]))[1] == 6.0
    with pytest.raises(ValueError, match="reward_agg"):
        MultiStepWrapper(CounterEnv(), 1, 3, reward_agg="median")


def test_early_stop_on_terminated_then_noop():
    env = MultiStepWrapper(CounterEnv(goal=3.0), n_obs_steps=2, n_action_steps=4)
    env.reset()
    obs, reward, terminated, truncated, _ = env.step(np.array([[1.0], [2.0], [5.0], [5.0]]))
    assert terminated and not truncated
    assert env.get_rewards() == [1.0, 2.0]  # stopped after the 2nd action
    np.testing.assert_array_equal(obs[:, 0], [1, 2])
    obs2, reward2, terminated2, _, _ = env.step(np.array([[1.0]] * 4))
    assert terminated2 and reward2 == 0.0 and env.get_rewards() == [1.0, 2.0]
    np.testing.assert_array_equal(obs2, obs)


def test_max_episode_steps_truncates_mid_chunk():
    env = MultiStepWrapper(CounterEnv(), n_obs_steps=1, n_action_steps=4, max_episode_steps=6)
    env.reset()
    assert not env.step(np.zeros((4, 1)))[3]
    _, _, terminated, truncated, info = env.step(np.zeros((4, 1)))
    assert truncated and not terminated and info["t"] == 6 and len(env.get_rewards()) == 6


def test_dict_obs_are_stacked_per_key():
    env = MultiStepWrapper(CounterEnv(dict_obs=True), n_obs_steps=2, n_action_steps=1)
    obs, _ = env.reset()
    assert obs["state"].shape == (2, 2) and obs["image"].shape == (2, 3, 4, 4)
    assert env.observation_space["image"].shape == (2, 3, 4, 4)
    obs, *_ = env.step(np.ones((1, 1)))
    np.testing.assert_allclose(obs["image"][:, 0, 0, 0], [0.0, 0.01])
    assert env.observation_space.contains(obs)


def test_reset_options_fall_back_to_episode_reset_options():
    env = MultiStepWrapper(CounterEnv(), 1, 1)
    env.episode_reset_options = {"offset": 42}
    assert env.reset(seed=1)[0][0, 1] == 42
    assert env.reset(seed=1, options={"offset": 7})[0][0, 1] == 7


def test_video_recording_writes_mp4_atomically(tmp_path):
    import av

    path = str(tmp_path / "media" / "ep.mp4")
    env = VideoRecordingWrapper(CounterEnv(), video_path=path, fps=10, steps_per_render=2)
    env.reset()
    for _ in range(7):
        env.step(np.zeros(1))
    assert not os.path.exists(path)  # still being written to a temp file
    assert env.finish_video() == path
    assert os.listdir(tmp_path / "media") == ["ep.mp4"]
    with av.open(path) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 4  # steps 1, 3, 5, 7
    assert frames[0].width == 16 and frames[0].height == 16
    env.video_path = None
    env.reset()
    env.step(np.zeros(1))
    assert env.finish_video() is None


class FakePolicy(torch.nn.Module):
    """Returns action = 1 + (number of predict calls so far) for every env; records its inputs."""

    n_obs_steps, n_action_steps = 2, 3

    def __init__(self):
        super().__init__()
        self.calls, self.resets, self.batch_obs = 0, 0, []

    @property
    def device(self):
        return torch.device("cpu")

    @property
    def dtype(self):
        return torch.float32

    def reset(self):
        self.resets += 1

    def predict_action(self, obs_dict):
        obs = obs_dict["obs"]
        assert obs.dtype == torch.float32 and obs.shape[1:] == (2, 2)
        self.batch_obs.append(obs.clone())
        self.calls += 1
        action = torch.ones(obs.shape[0], 3, 1)
        return {"action": action, "action_pred": action}


def sum_metric(prefix, rewards, infos, episodes):
    return {
        f"{prefix}mean_score": float(np.mean([r.sum() for r in rewards])),
        f"{prefix}n": len(rewards),
        f"{prefix}seeds": [spec.seed for spec in episodes],
        f"{prefix}last_t": [info["t"] for info in infos],
    }


def make_counter_env():
    return CounterEnv(goal=4.0)


@pytest.mark.parametrize("n_envs", [1, 2])  # 1: SyncVectorEnv, 2: AsyncVectorEnv (fork)
def test_env_runner_chunks_and_drops_padding(tmp_path, n_envs):
    episodes = [EpisodeSpec("train/", i, {"offset": 100 + i}, record_video=(i == 0)) for i in range(2)]
    episodes.append(EpisodeSpec("test/", 1000, None, record_video=True))
    runner = EnvRunner(
        str(tmp_path),
        make_counter_env,
        episodes,
        sum_metric,
        n_obs_steps=2,
        n_action_steps=3,
        max_steps=10,
        n_envs=n_envs,
        fps=10,
        steps_per_render=1,
        name="counter",
    )
    policy = FakePolicy()
    try:
        result = runner.run(policy)
    finally:
        runner.close()
    n_chunks = 3 // n_envs + (3 % n_envs > 0)
    assert policy.resets == n_chunks
    # goal 4 with reward 1 per step: terminates after 4 env steps = 2 chunks of 3 actions
    assert policy.calls == 2 * n_chunks
    assert all(obs.shape[0] == n_envs for obs in policy.batch_obs)
    # per-episode reset options reach the right sub-env (obs[:, :, 1] is the offset)
    assert policy.batch_obs[0][0, 0, 1] == 100
    assert result["train/n"] == 2 and result["test/n"] == 1  # padded dummy dropped
    assert result["train/seeds"] == [0, 1] and result["test/seeds"] == [1000]
    assert result["train/last_t"] == [4, 4] and result["test/mean_score"] == 4.0
    assert [len(r) for r in result["episode_rewards"]] == [4, 4, 4]
    assert len(result["timing"]["predict_action_s"]) == policy.calls
    assert sorted(k for k in result if "sim_video" in k) == ["test/sim_video_1000", "train/sim_video_0"]
    assert all(os.path.getsize(result[k]) > 0 for k in ("test/sim_video_1000", "train/sim_video_0"))
    assert len(os.listdir(tmp_path / "media")) == 2


def test_env_runner_stops_at_max_steps_and_skip_video(tmp_path):
    episodes = [EpisodeSpec("test/", s, None, record_video=True) for s in range(3)]
    runner = EnvRunner(
        str(tmp_path),
        CounterEnv,
        episodes,
        max_reward_metric,
        n_obs_steps=2,
        n_action_steps=3,
        max_steps=7,
        n_envs=None,
        skip_video=True,
    )
    policy = FakePolicy()
    result = runner.run(policy)
    runner.close()
    assert policy.calls == 3  # ceil(7 / 3)
    assert [len(r) for r in result["episode_rewards"]] == [7, 7, 7]
    assert result["test/mean_score"] == 1.0 and result["test/sim_max_reward_2"] == 1.0
    assert not any("sim_video" in k for k in result) and not (tmp_path / "media").exists()


def test_max_reward_metric_on_hand_built_rewards():
    episodes = [EpisodeSpec("test/", 100 + i, None, False) for i in range(3)]
    rewards = [np.array([0.1, 0.9, 0.3]), np.array([0.0, 0.0]), np.array([1.0])]
    metrics = max_reward_metric("test/", rewards, [{}] * 3, episodes)
    assert metrics == pytest.approx(
        {
            "test/sim_max_reward_100": 0.9,
            "test/sim_max_reward_101": 0.0,
            "test/sim_max_reward_102": 1.0,
            "test/mean_score": (0.9 + 0.0 + 1.0) / 3,
        }
    )


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="AsyncVectorEnv is used only with >= 2 CPUs")
def test_async_runner_builds_dummy_env_in_parent_only(tmp_path):
    built_in_this_process = []

    def real_env():
        built_in_this_process.append("real")
        return CounterEnv(goal=2.0)

    def dummy_env():
        built_in_this_process.append("dummy")
        return CounterEnv()

    episodes = [EpisodeSpec("test/", s, None, False) for s in range(2)]
    runner = EnvRunner(
        str(tmp_path),
        real_env,
        episodes,
        max_reward_metric,
        n_obs_steps=2,
        n_action_steps=3,
        max_steps=5,
        n_envs=2,
        dummy_env_fn=dummy_env,
    )
    result = runner.run(FakePolicy())
    runner.close()
    assert built_in_this_process == ["dummy"]  # real envs only in the forked workers
    assert [len(r) for r in result["episode_rewards"]] == [2, 2]


def test_runner_rejects_empty_episode_list(tmp_path):
    with pytest.raises(ValueError, match="no episodes"):
        EnvRunner(str(tmp_path), CounterEnv, [], max_reward_metric, 2, 3, 5)
