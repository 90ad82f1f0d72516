"""Push-T envs (keypoints / image) and their runners."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import av
import numpy as np
import pytest
import torch

from diffusion_policy.env.pusht.keypoints import AGENT_LOCAL_KEYPOINTS, BLOCK_LOCAL_KEYPOINTS, derive_local_keypoints
from diffusion_policy.env.pusht.pusht_env import sample_initial_state
from diffusion_policy.env.pusht.pusht_image_env import PushTImageEnv
from diffusion_policy.env.pusht.pusht_keypoints_env import PushTKeypointsEnv
from diffusion_policy.env_runner.base_runner import EpisodeSpec, max_reward_metric
from diffusion_policy.env_runner.pusht_image_runner import PushTImageRunner
from diffusion_policy.env_runner.pusht_keypoints_runner import PushTKeypointsRunner

GOAL_STATE = np.array([100.0, 100.0, 256.0, 256.0, np.pi / 4])  # block exactly on the goal pose


def block_keypoints_from_sim(env) -> np.ndarray:
    block = env.unwrapped.block
    return np.array([block.local_to_world(tuple(kp)) for kp in BLOCK_LOCAL_KEYPOINTS])


def test_stored_keypoints_match_the_original_derivation():
    derived = derive_local_keypoints()
    np.testing.assert_allclose(derived["block"], BLOCK_LOCAL_KEYPOINTS, atol=1e-6)
    np.testing.assert_allclose(derived["agent"], AGENT_LOCAL_KEYPOINTS, atol=1e-6)


def test_keypoints_env_shapes_and_definition():
    env = PushTKeypointsEnv(legacy=True)
    obs, info = env.reset(seed=100000)
    assert obs.shape == (20,) and obs.dtype == np.float32 and env.observation_space.shape == (20,)
    assert env.action_space.shape == (2,) and env.action_space.high.tolist() == [512, 512]
    np.testing.assert_allclose(obs[: 2 * 9].reshape(9, 2), block_keypoints_from_sim(env), atol=1e-3)
    np.testing.assert_allclose(obs[-2:], sample_initial_state(100000)[:2], atol=1e-3)  # agent (x, y)
    assert info["keypoint_visible"].all()
    env = PushTKeypointsEnv(agent_keypoints=True)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (24,)


def test_keypoints_move_with_the_block():
    env = PushTKeypointsEnv()
    # agent just left of the block's stem, block at angle 0 -> pushing right moves and turns it
    obs0, _ = env.reset(options={"init_state": [200.0, 350.0, 256.0, 300.0, 0.0]})
    for _ in range(10):
        obs, *_ = env.step(np.array([330.0, 350.0]))
    keypoints0, keypoints = obs0[:18].reshape(9, 2), obs[:18].reshape(9, 2)
    assert np.abs(keypoints - keypoints0).max() > 5.0  # the block moved
    np.testing.assert_allclose(keypoints, block_keypoints_from_sim(env), atol=1e-3)

    # rigid motion: pairwise distances unchanged
    def pairwise(k):
        return np.linalg.norm(k[:, None] - k[None], axis=-1)

    np.testing.assert_allclose(pairwise(keypoints), pairwise(keypoints0), atol=1e-2)


def test_seeded_reset_reproduces_the_original_initial_state():
    state = sample_initial_state(10000)
    legacy, modern = PushTKeypointsEnv(legacy=True), PushTKeypointsEnv(legacy=False)
    legacy.reset(seed=10000)
    modern.reset(seed=10000)
    np.testing.assert_allclose(modern.unwrapped.block.position, state[2:4], atol=1e-6)  # angle first: origin on state
    assert modern.unwrapped.block.angle == pytest.approx(state[4])
    assert legacy.unwrapped.block.angle == pytest.approx(state[4])
    assert np.linalg.norm(np.array(legacy.unwrapped.block.position) - state[2:4]) > 1.0
    # same seed, same episode
    obs_a, _ = PushTKeypointsEnv().reset(seed=7)
    obs_b, _ = PushTKeypointsEnv().reset(seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)


def test_bad_init_state_is_rejected():
    with pytest.raises(ValueError, match="init_state"):
        PushTKeypointsEnv().reset(options={"init_state": [1.0, 2.0]})


def test_block_on_goal_gives_full_reward_and_terminates():
    env = PushTKeypointsEnv(legacy=False)
    env.reset(options={"init_state": GOAL_STATE})
    _, reward, terminated, truncated, info = env.step(GOAL_STATE[:2])
    assert reward == pytest.approx(1.0) and terminated and not truncated
    assert info["is_success"] and info["coverage"] > 0.95


def test_short_random_episode():
    env = PushTKeypointsEnv()
    env.reset(seed=3)
    env.action_space.seed(0)
    for _ in range(30):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert 0.0 <= reward <= 1.0 and 0.0 <= info["coverage"] <= 1.0 and not truncated
        assert np.isfinite(obs).all()
    frame = env.render()
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8


def test_image_env_shapes():
    env = PushTImageEnv(render_size=96)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (3, 96, 96) and obs["image"].dtype == np.float32
    assert 0.0 <= obs["image"].min() and obs["image"].max() <= 1.0
    assert obs["agent_pos"].shape == (2,) and obs["agent_pos"].dtype == np.float32
    obs, reward, *_ = env.step(np.array([256.0, 256.0]))
    assert env.observation_space.contains(obs) and 0.0 <= reward <= 1.0
    assert env.render().shape == (96, 96, 3)


def test_max_reward_metric_on_push_t_reward_sequences():
    episodes = [EpisodeSpec("test/", 10000 + i, None, False) for i in range(2)]
    rewards = [np.array([0.0, 0.2, 0.7, 0.5]), np.array([0.1, 1.0])]
    metrics = max_reward_metric("test/", rewards, [{}, {}], episodes)
    assert metrics["test/sim_max_reward_10000"] == pytest.approx(0.7)
    assert metrics["test/sim_max_reward_10001"] == pytest.approx(1.0)
    assert metrics["test/mean_score"] == pytest.approx(0.85)


class ZeroPolicy(torch.nn.Module):
    """Fake policy: every action is (0, 0); checks the observation it gets."""

    def __init__(self, n_action_steps: int, expected_obs: dict):
        super().__init__()
        self.n_action_steps, self.expected_obs, self.calls = n_action_steps, expected_obs, 0
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def reset(self):
        pass

    def predict_action(self, obs_dict):
        assert {key: tuple(value.shape[1:]) for key, value in obs_dict.items()} == self.expected_obs
        self.calls += 1
        batch = next(iter(obs_dict.values())).shape[0]
        action = torch.zeros(batch, self.n_action_steps, 2)
        return {"action": action, "action_pred": action}


def test_keypoints_runner_one_episode_with_video(tmp_path):
    runner = PushTKeypointsRunner(
        str(tmp_path),
        n_train=0,
        n_test=1,
        n_test_vis=1,
        test_start_seed=100000,
        legacy_test=True,
        max_steps=16,
        n_obs_steps=2,
        n_action_steps=8,
    )
    policy = ZeroPolicy(8, {"obs": (2, 20)})
    result = runner.run(policy)
    runner.close()
    assert policy.calls == 2
    assert len(result["episode_rewards"][0]) == 16
    assert result["test/mean_score"] == result["test/sim_max_reward_100000"]
    assert 0.0 <= result["test/mean_score"] <= 1.0
    with av.open(result["test/sim_video_100000"]) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 16 and frames[0].width == 96


def test_keypoints_runner_latency_and_skip_video(tmp_path):
    runner = PushTKeypointsRunner(
        str(tmp_path),
        n_train=1,
        n_train_vis=1,
        n_test=2,
        n_test_vis=1,
        max_steps=6,
        n_obs_steps=2,
        n_action_steps=4,
        n_latency_steps=1,
        n_envs=2,
        skip_video=True,
    )
    policy = ZeroPolicy(4, {"obs": (2, 20)})  # env keeps 3 obs, policy sees 2
    result = runner.run(policy)
    runner.close()
    assert policy.calls == 2 * 2  # 2 chunks of envs x ceil(6 / 3 executed actions)
    assert [len(r) for r in result["episode_rewards"]] == [6, 6, 6]
    assert {"train/mean_score", "test/mean_score", "train/sim_max_reward_0", "test/sim_max_reward_10001"} <= set(result)
    assert not any("sim_video" in key for key in result)


def test_image_runner_one_episode(tmp_path):
    runner = PushTImageRunner(
        str(tmp_path), n_train=0, n_test=1, n_test_vis=0, max_steps=8, n_obs_steps=2, n_action_steps=8
    )
    policy = ZeroPolicy(8, {"image": (2, 3, 96, 96), "agent_pos": (2, 2)})
    result = runner.run(policy)
    runner.close()
    assert policy.calls == 1 and "test/mean_score" in result


def test_past_action_is_refused(tmp_path):
    with pytest.raises(ValueError, match="past_action"):
        PushTKeypointsRunner(str(tmp_path), past_action=True)
