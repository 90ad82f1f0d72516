"""Multimodal block pushing: observation layout, seeding, control, reward/events, metrics, runner."""

import os

import numpy as np
import pytest
import torch

from diffusion_policy.env.block_pushing.block_pushing_multimodal import (
    EVENT_NAMES,
    OBS_DIM,
    WORKSPACE_BOUNDS,
    BlockPushMultimodal,
)
from diffusion_policy.env_runner.base_runner import EpisodeSpec
from diffusion_policy.env_runner.blockpush_lowdim_runner import BlockPushLowdimRunner, blockpush_metrics


@pytest.fixture(scope="module")
def env():
    env = BlockPushMultimodal()
    yield env
    env.close()


def test_reset_layout_and_distribution(env):
    obs, info = env.reset(seed=0)
    assert obs.shape == (OBS_DIM,) == (16,) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert info == dict.fromkeys(EVENT_NAMES, -1)
    block0, block1 = obs[0:2], obs[3:5]
    target0, target1 = obs[10:12], obs[13:15]
    np.testing.assert_allclose(obs[8:10], [0.3, -0.4])  # effector target starts at (0.3, -0.4)
    np.testing.assert_allclose(obs[6:8], [0.3, -0.4], atol=0.01)  # and the arm got there
    for block in (block0, block1):
        assert 0.3 <= block[0] <= 0.5 and -0.35 <= block[1] <= -0.05
    assert abs(block0[0] - block1[0]) > 0.1
    assert sorted([round(float(target0[0]), 1), round(float(target1[0]), 1)]) == [0.3, 0.5]
    np.testing.assert_allclose([target0[1], target1[1]], [0.2, 0.2], atol=0.008)
    assert np.all((obs[[2, 5, 12, 15]] >= 0) & (obs[[2, 5, 12, 15]] < np.pi))  # yaw mod pi
    # The state accessors agree with the observation.
    np.testing.assert_allclose(env.get_block_poses()[1][0][:2], block1, atol=1e-6)
    np.testing.assert_allclose(env.get_target_poses()[0][0][:2], target0, atol=1e-6)
    np.testing.assert_allclose(env.get_effector_target_translation(), obs[8:10])


def test_seed_reproducible(env):
    first, _ = env.reset(seed=7)
    other, _ = env.reset(seed=8)
    again, _ = env.reset(seed=7)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[:6], other[:6])


def test_delta_action_moves_target_and_clips_to_workspace(env):
    env.reset(seed=1)
    obs, reward, terminated, truncated, _ = env.step(np.array([0.02, 0.01]))
    np.testing.assert_allclose(obs[8:10], [0.32, -0.39], atol=1e-6)
    assert reward == 0.0 and not terminated and not truncated
    for _ in range(3):
        obs, *_ = env.step(np.array([-1.0, -1.0]))  # far outside: the target stops at the bounds
    np.testing.assert_allclose(obs[8:10], WORKSPACE_BOUNDS[0])


def test_abs_action():
    env = BlockPushMultimodal(abs_action=True)
    try:
        env.reset(seed=2)
        for _ in range(15):
            obs, *_ = env.step(np.array([0.35, -0.3]))
        np.testing.assert_allclose(obs[8:10], [0.35, -0.3])
        np.testing.assert_allclose(obs[6:8], [0.35, -0.3], atol=0.01)
    finally:
        env.close()


def test_random_episode(env):
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(30):
        obs, reward, _, truncated, info = env.step(rng.uniform(-0.03, 0.03, size=2))
        assert np.all(np.isfinite(obs)) and reward in (0.0, 0.49, 0.51) and not truncated
        assert set(info) == set(EVENT_NAMES)


def test_teleported_blocks_give_049_then_051(env):
    obs, _ = env.reset(seed=4)
    target0, target1 = obs[10:12].copy(), obs[13:15].copy()
    env.set_block_pose(0, target0)
    obs, reward, terminated, _, info = env.step(np.zeros(2))
    assert reward == pytest.approx(0.49) and not terminated
    assert info["TARGET_0_0"] == 1 and info["REACH_0"] == 1 and info["TARGET_1_1"] == -1
    obs, reward, *_ = env.step(np.zeros(2))
    assert reward == 0.0  # each block/target pair pays once
    env.set_block_pose(1, target1)
    obs, reward, terminated, _, info = env.step(np.zeros(2))
    assert reward == pytest.approx(0.51) and terminated
    assert info["TARGET_1_1"] == 3 and info["REACH_1"] == 3
    assert np.unique([0.0, 0.49, 0.0, 0.51]).sum() == pytest.approx(1.0)


def test_both_blocks_in_one_target_is_not_success(env):
    obs, _ = env.reset(seed=5)
    target0 = obs[10:12]
    env.set_block_pose(0, target0 + [0.0, -0.022])
    _, reward, terminated, _, _ = env.step(np.zeros(2))
    assert reward == pytest.approx(0.49) and not terminated
    env.set_block_pose(1, target0 + [0.0, 0.022])
    _, reward, terminated, _, info = env.step(np.zeros(2))
    assert reward == pytest.approx(0.49) and not terminated
    assert info["TARGET_0_0"] == 1 and info["TARGET_1_0"] == 2


def test_two_entries_in_one_step_end_the_episode_like_the_original(env):
    # The original ends the episode whenever a step's reward is >= 0.5, so 2 x 0.49 does too.
    obs, _ = env.reset(seed=5)
    target0 = obs[10:12]
    env.set_block_pose(0, target0 + [0.0, -0.022])
    env.set_block_pose(1, target0 + [0.0, 0.022])
    _, reward, terminated, _, _ = env.step(np.zeros(2))
    assert reward == pytest.approx(0.98) and terminated


def test_render(env):
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8 and image.std() > 10


def test_metrics_on_hand_built_episodes():
    episodes = [EpisodeSpec("test/", seed, None, False) for seed in (100, 101, 102)]
    rewards = [np.array([0, 0.49, 0, 0.51]), np.array([0, 0, 0.49, 0.49]), np.zeros(5)]
    never = dict.fromkeys(EVENT_NAMES, -1)
    infos = [dict(never, REACH_0=3, TARGET_0_0=9), dict(never, REACH_0=2, REACH_1=5), never]
    metrics = blockpush_metrics("test/", rewards, infos, episodes)
    assert metrics["test/sim_max_reward_100"] == pytest.approx(1.0)
    assert metrics["test/sim_max_reward_101"] == pytest.approx(0.49)
    assert metrics["test/sim_max_reward_102"] == 0.0
    assert metrics["test/mean_score"] == pytest.approx(1.49 / 3)
    assert metrics["test/p1"] == pytest.approx(2 / 3) and metrics["test/p2"] == pytest.approx(1 / 3)
    assert metrics["test/REACH_0"] == pytest.approx(2 / 3)
    assert metrics["test/REACH_1"] == pytest.approx(1 / 3)
    assert metrics["test/TARGET_0_0"] == pytest.approx(1 / 3) and metrics["test/TARGET_1_1"] == 0.0


class ConstantPolicy(torch.nn.Module):
    """Fake policy: pushes +y; records the observations it was given."""

    def __init__(self, n_action_steps):
        super().__init__()
        self.n_action_steps = n_action_steps
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.seen_obs = []

    def reset(self):
        pass

    def predict_action(self, obs_dict):
        obs = obs_dict["obs"]  # (B, To, 16)
        self.seen_obs.append(obs.clone())
        action = torch.zeros(obs.shape[0], self.n_action_steps, 2)
        action[..., 1] = 0.01
        return {"action": action}


def test_runner_one_episode_each(tmp_path):
    runner = BlockPushLowdimRunner(str(tmp_path), n_train=1, n_train_vis=1, n_test=1, n_test_vis=0,
                                   max_steps=10, n_obs_steps=3, n_action_steps=4,
                                   obs_eef_target=False, n_envs=None)
    policy = ConstantPolicy(n_action_steps=4)
    try:
        results = runner.run(policy)
    finally:
        runner.close()
    assert len(policy.seen_obs) == 3  # ceil(10 / 4) chunks
    assert all(obs.shape == (2, 3, 16) for obs in policy.seen_obs)
    assert all(torch.all(obs[..., 8:10] == 0) for obs in policy.seen_obs)  # obs_eef_target=False
    assert [len(r) for r in results["episode_rewards"]] == [10, 10]
    for prefix, seed in (("train/", 0), ("test/", 10000)):
        assert results[f"{prefix}mean_score"] == results[f"{prefix}sim_max_reward_{seed}"] == 0.0
        assert results[f"{prefix}p1"] == 0.0 and f"{prefix}REACH_0" in results
    assert os.path.isfile(results["train/sim_video_0"])
    assert "test/sim_video_10000" not in results
    assert len(results["timing"]["predict_action_s"]) == 3


def test_runner_rejects_past_action(tmp_path):
    with pytest.raises(ValueError, match="past_action"):
        BlockPushLowdimRunner(str(tmp_path), past_action=True)
