"""Franka Kitchen: 60-d observation, action conversion, task completion, metrics, runner."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest
import torch

from diffusion_policy.env.kitchen.kitchen_lowdim_env import (
    ALL_TASKS,
    OBS_DIM,
    KitchenLowdimEnv,
    kitchen_spaces,
)
from diffusion_policy.env_runner.base_runner import EpisodeSpec
from diffusion_policy.env_runner.kitchen_lowdim_runner import (
    KitchenLowdimRunner,
    _SpacesOnlyEnv,
    kitchen_metrics,
    load_init_states,
)

MICROWAVE_QPOS = 22  # qpos index of the microwave door hinge (goal -0.75)


@pytest.fixture(scope="module")
def env():
    env = KitchenLowdimEnv()
    yield env
    env.close()


def test_reset_observation_layout(env):
    obs, info = env.reset(seed=0)
    assert obs.shape == (OBS_DIM,) == (60,) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert info == {"completed_tasks": [], "step_task_completions": []}
    assert set(env.kitchen.tasks_to_complete) == set(ALL_TASKS) and len(ALL_TASKS) == 7
    state = env.get_state()
    assert state.shape == (59,)
    # Robot qpos 0:9 and object qpos 9:30 are the simulator's qpos plus noise of at most
    # 0.1 * amplitude (robot 0.1 -> 0.01; objects <= 0.01); the goal part is zero.
    assert np.abs(obs[:30] - state[:30]).max() <= 0.0101
    assert np.any(obs[:9] != state[:9].astype(np.float32))  # noise is on
    np.testing.assert_array_equal(obs[30:], 0.0)


def test_random_episode(env):
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(10):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, size=9))
        assert np.all(np.isfinite(obs)) and obs.shape == (60,)
        assert reward == 0.0 and not terminated and not truncated
        assert info["completed_tasks"] == []


def test_microwave_at_goal_completes_once(env):
    env.reset(seed=2)
    state = env.get_state()
    state[MICROWAVE_QPOS] = -0.75
    obs, _ = env.reset(seed=2, options={"init_state": state})
    assert obs[MICROWAVE_QPOS] == pytest.approx(-0.75, abs=0.011)
    _, reward, terminated, _, info = env.step(np.zeros(9))
    assert reward == 1.0 and not terminated
    assert info["completed_tasks"] == ["microwave"] == info["step_task_completions"]
    _, reward, _, _, info = env.step(np.zeros(9))
    assert reward == 0.0 and info["completed_tasks"] == ["microwave"]


def test_bad_init_state_is_rejected(env):
    with pytest.raises(ValueError, match="init_state"):
        env.reset(options={"init_state": np.zeros(30)})


def test_abs_action_matches_velocity_action():
    """An absolute joint target q* equals the velocity action (q* - last observed qpos) / dt / 2."""
    velocity_env, abs_env = KitchenLowdimEnv(), KitchenLowdimEnv(abs_action=True)
    try:
        velocity_obs, _ = velocity_env.reset(seed=3)
        abs_obs, _ = abs_env.reset(seed=3)
        np.testing.assert_array_equal(velocity_obs, abs_obs)
        rng = np.random.default_rng(1)
        for _ in range(5):
            action = rng.uniform(-1, 1, size=9)  # x2 rad/s
            target = abs_env._last_robot_qpos + 2.0 * action * abs_env.dt
            velocity_obs, *_ = velocity_env.step(action)
            abs_obs, *_ = abs_env.step(target)
        np.testing.assert_allclose(abs_env.get_state(), velocity_env.get_state(), atol=1e-6)
        np.testing.assert_allclose(abs_obs, velocity_obs, atol=1e-5)
    finally:
        velocity_env.close()
        abs_env.close()


def test_render(env):
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (240, 360, 3) and image.dtype == np.uint8 and image.std() > 10


def test_metrics_on_hand_built_episodes():
    episodes = [EpisodeSpec("test/", seed, None, False) for seed in (0, 1, 2)]
    rewards = [np.array([0, 1, 0, 2]), np.array([0, 0, 1]), np.zeros(4)]
    infos = [{"completed_tasks": ["microwave", "kettle", "light switch"]},
             {"completed_tasks": ["kettle"]}, {"completed_tasks": []}]
    metrics = kitchen_metrics("test/", rewards, infos, episodes)
    assert metrics["test/mean_score"] == pytest.approx((3 / 7 + 1 / 7) / 3)
    assert metrics["test/p_1"] == pytest.approx(2 / 3)
    assert metrics["test/p_2"] == metrics["test/p_3"] == pytest.approx(1 / 3)
    assert all(metrics[f"test/p_{n}"] == 0.0 for n in range(4, 8))
    assert not any("sim_max_reward" in key for key in metrics)


def test_spaces_of_dummy_match_env(env):
    for abs_action in (False, True):
        dummy = _SpacesOnlyEnv(*kitchen_spaces(abs_action))
        assert dummy.observation_space == env.observation_space
    assert _SpacesOnlyEnv(*kitchen_spaces(False)).action_space == env.action_space


def test_init_state_files(tmp_path, env):
    assert load_init_states(tmp_path) is None
    np.save(tmp_path / "all_init_qpos.npy", np.zeros((2, 30)))
    np.save(tmp_path / "all_init_qvel.npy", np.zeros((2, 28)))
    with pytest.raises(ValueError, match="all_init_qpos"):
        load_init_states(tmp_path)
    (tmp_path / "all_init_qvel.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="re-download"):
        load_init_states(tmp_path)


class ZeroPolicy(torch.nn.Module):
    def __init__(self, n_action_steps):
        super().__init__()
        self.n_action_steps = n_action_steps
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def reset(self):
        pass

    def predict_action(self, obs_dict):
        obs = obs_dict["obs"]  # (B, To, 60)
        assert obs.shape[1:] == (2, 60)
        return {"action": torch.zeros(obs.shape[0], self.n_action_steps, 9)}


def test_runner_train_state_and_test_episode(tmp_path, env):
    env.reset(seed=0)
    state = env.get_state()
    state[MICROWAVE_QPOS] = -0.75  # the stored train state already has the microwave open
    np.save(tmp_path / "all_init_qpos.npy", state[None, :30])
    np.save(tmp_path / "all_init_qvel.npy", state[None, 30:])
    runner = KitchenLowdimRunner(str(tmp_path / "out"), dataset_dir=str(tmp_path), n_train=2,
                                 n_train_vis=1, n_test=1, n_test_vis=0, max_steps=4,
                                 n_obs_steps=2, n_action_steps=2, n_envs=1)
    try:
        results = runner.run(ZeroPolicy(n_action_steps=2))
    finally:
        runner.close()
    # train 0 starts from the stored state; train 1 (no stored state left) from the default one.
    assert [list(r) for r in results["episode_rewards"]] == [[1, 0, 0, 0], [0] * 4, [0] * 4]
    assert results["train/mean_score"] == pytest.approx(0.5 / 7)
    assert results["train/p_1"] == 0.5 and results["train/p_2"] == 0.0
    assert results["test/mean_score"] == 0.0 and results["test/p_1"] == 0.0
    assert os.path.isfile(results["train/sim_video_0"])


def test_runner_without_init_states_runs_test_only(tmp_path, caplog):
    with caplog.at_level("WARNING"):
        runner = KitchenLowdimRunner(str(tmp_path), dataset_dir=str(tmp_path), n_train=3, n_test=2)
    assert [spec.prefix for spec in runner.episodes] == ["test/", "test/"]
    assert "skipping the 3 train episodes" in caplog.text
