"""robomimic tasks on robosuite 1.5: envs, env_meta handling, abs actions and the runners (CPU)."""

import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import h5py
import numpy as np
import pytest
import torch

pytest.importorskip("robosuite")

from diffusion_policy.env.robomimic import (
    RobomimicImageEnv,
    RobomimicLowdimEnv,
    default_env_meta,
    infer_task_name,
    read_env_meta,
    robosuite_controller_config,
    transform_action,
    undo_transform_action,
)
from diffusion_policy.env_runner.base_runner import EpisodeSpec
from diffusion_policy.env_runner.robomimic_image_runner import RobomimicImageRunner
from diffusion_policy.env_runner.robomimic_lowdim_runner import RobomimicLowdimRunner
from diffusion_policy.model.common.rotation_transformer import RotationTransformer

LIFT_OBS_KEYS = ["object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"]
LIFT_IMAGE_SHAPE_META = {
    "obs": {
        "agentview_image": {"shape": [3, 84, 84], "type": "rgb"},
        "robot0_eye_in_hand_image": {"shape": [3, 84, 84], "type": "rgb"},
        "robot0_eef_pos": {"shape": [3]},
        "robot0_eef_quat": {"shape": [4]},
        "robot0_gripper_qpos": {"shape": [2]},
    },
    "action": {"shape": [7]},
}
# A controller config as robomimic's datasets store it (robosuite <= 1.4 format).
LEGACY_OSC_POSE = {
    "type": "OSC_POSE",
    "input_max": 1,
    "input_min": -1,
    "output_max": [0.05, 0.05, 0.05, 0.5, 0.5, 0.5],
    "output_min": [-0.05, -0.05, -0.05, -0.5, -0.5, -0.5],
    "kp": 150,
    "damping_ratio": 1,
    "impedance_mode": "fixed",
    "kp_limits": [0, 300],
    "damping_ratio_limits": [0, 10],
    "position_limits": None,
    "orientation_limits": None,
    "uncouple_pos_ori": True,
    "control_delta": True,
    "interpolation": None,
    "ramp_ratio": 0.2,
}
LEGACY_LIFT_ENV_ARGS = {
    "env_name": "Lift",
    "env_version": "1.2.0",
    "type": 1,
    "env_kwargs": {
        "has_renderer": False,
        "has_offscreen_renderer": False,
        "ignore_done": True,
        "use_object_obs": True,
        "use_camera_obs": False,
        "control_freq": 20,
        "controller_configs": LEGACY_OSC_POSE,
        "robots": ["Panda"],
        "camera_depths": False,
        "camera_heights": 84,
        "camera_widths": 84,
        "reward_shaping": False,
    },
}


@pytest.fixture(scope="module")
def lift_env():
    env = RobomimicLowdimEnv(default_env_meta("lift"), LIFT_OBS_KEYS)
    yield env
    env.close()


def write_robomimic_hdf5(path, env_args: dict, demo_states: list[np.ndarray]) -> None:
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps(env_args)
        for i, states in enumerate(demo_states):
            data.create_dataset(f"demo_{i}/states", data=states)


class ZeroPolicy(torch.nn.Module):
    """Stands in for a diffusion policy: always the zero action chunk."""

    def __init__(self, n_action_steps: int, action_dim: int):
        super().__init__()
        self.n_action_steps, self.action_dim = n_action_steps, action_dim
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.seen_obs_shapes = []

    def reset(self):
        pass

    def predict_action(self, obs_dict):
        self.seen_obs_shapes.append({key: tuple(value.shape) for key, value in obs_dict.items()})
        batch = next(iter(obs_dict.values())).shape[0]
        action = torch.zeros(batch, self.n_action_steps, self.action_dim)
        return {"action": action, "action_pred": action}


# ----- lowdim env -----
def test_lift_lowdim_shapes_and_random_episode(lift_env):
    obs, info = lift_env.reset(seed=0)
    assert obs.shape == (19,) and obs.dtype == np.float32
    assert lift_env.observation_space.shape == (19,) and lift_env.action_space.shape == (7,)
    assert info == {"is_success": False}
    for _ in range(10):
        obs, reward, terminated, truncated, info = lift_env.step(lift_env.action_space.sample())
        assert obs.shape == (19,) and np.all(np.isfinite(obs))
        assert reward in (0.0, 1.0) and reward == float(info["is_success"])
        assert not terminated and not truncated
    np.testing.assert_allclose(obs[10:13], lift_env.env._get_observations()["robot0_eef_pos"], rtol=1e-6)


def test_seeded_reset_is_reproducible(lift_env):
    lift_env.reset(seed=10000)
    first = lift_env.get_state()
    lift_env.step(np.ones(7, dtype=np.float32))
    lift_env.reset(seed=10000)
    np.testing.assert_array_equal(lift_env.get_state(), first)
    lift_env.reset(seed=10001)
    assert not np.allclose(lift_env.get_state()[1:], first[1:])


def test_init_state_reset_round_trip(lift_env):
    lift_env.reset(seed=3)
    for _ in range(5):
        obs_at_state, *_ = lift_env.step(np.array([0.5, 0, -0.5, 0, 0, 0.2, 1], dtype=np.float32))
    state = lift_env.get_state()
    lift_env.reset(seed=4)
    obs, _ = lift_env.reset(options={"init_state": state})
    np.testing.assert_array_equal(lift_env.get_state(), state)
    # step() observes positions from before the last substep's integration; a restored state is
    # observed after mj_forward, so the two agree only to about one substep of motion
    np.testing.assert_allclose(obs, obs_at_state, atol=1e-3)
    lift_env.reset(seed=5)
    lift_env.step(np.ones(7, dtype=np.float32))
    obs_again, _ = lift_env.reset(options={"init_state": state})
    np.testing.assert_array_equal(obs_again, obs)
    with pytest.raises(ValueError, match="init_state has shape"):
        lift_env.reset(options={"init_state": state[:-1]})


def test_can_state_only_env_without_gl_context():
    env = RobomimicLowdimEnv(default_env_meta("can"), LIFT_OBS_KEYS)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (23,)  # object 14 + eef pos 3 + eef quat 4 + gripper 2
    obs, reward, *_ = env.step(np.zeros(7, dtype=np.float32))
    assert obs.shape == (23,) and reward == 0.0
    assert env.env.sim._render_context_offscreen is None  # state-only: no OpenGL context
    with pytest.raises(KeyError, match="not observations"):
        RobomimicLowdimEnv(default_env_meta("can"), ["object", "cube_pos_typo"])
    env.close()


def test_transport_arms_act_in_world_frame():
    """robosuite <= 1.4 read OSC deltas in the world frame; Transport's arms face each other."""
    env = RobomimicLowdimEnv(default_env_meta("transport"), ["robot0_eef_pos", "robot1_eef_pos"])
    obs, _ = env.reset(seed=0)
    action = np.zeros(14, dtype=np.float32)
    action[[0, 7]] = 1.0  # +x for both arms
    for _ in range(5):
        moved, *_ = env.step(action)
    delta = (moved - obs).reshape(2, 3)
    assert np.all(delta[:, 0] > 0.02) and np.all(np.abs(delta[:, 1:]) < 0.01)
    env.close()


def test_absolute_actions_are_world_frame_poses():
    env = RobomimicLowdimEnv(default_env_meta("lift"), LIFT_OBS_KEYS, abs_action=True)
    obs, _ = env.reset(seed=0)
    arm = env.env.robots[0].composite_controller.part_controllers["right"]
    start_pos = np.array(arm.ref_pos)
    start_rot = RotationTransformer("matrix", "axis_angle").forward(np.array(arm.ref_ori_mat))
    target = start_pos + np.array([0.05, 0.0, 0.0])
    # the policy-side 10-d action, converted back the way the runner does
    action = undo_transform_action(transform_action(np.concatenate([target, start_rot, [-1.0]])))
    for _ in range(30):
        obs, *_ = env.step(action)
    np.testing.assert_allclose(obs[10:13], target, atol=0.01)
    env.close()


# ----- env_meta -----
def test_legacy_controller_config_is_converted():
    config = robosuite_controller_config(LEGACY_OSC_POSE, ["Panda"])
    arm = config["body_parts"]["right"]
    assert arm["type"] == "OSC_POSE" and arm["input_type"] == "delta" and arm["input_ref_frame"] == "world"
    assert arm["gripper"] == {"type": "GRIP"} and "control_delta" not in arm
    assert (
        robosuite_controller_config(LEGACY_OSC_POSE, ["Panda"], abs_action=True)["body_parts"]["right"]["input_type"]
        == "absolute"
    )
    absolute = dict(LEGACY_OSC_POSE, control_delta=False)
    assert robosuite_controller_config(absolute, "Panda")["body_parts"]["right"]["input_type"] == "absolute"
    assert LEGACY_OSC_POSE["control_delta"] is True  # input not modified


def test_env_from_hdf5_env_args(tmp_path, lift_env):
    lift_env.reset(seed=7)
    start = lift_env.get_state()
    path = tmp_path / "lift" / "ph" / "low_dim.hdf5"
    path.parent.mkdir(parents=True)
    write_robomimic_hdf5(path, LEGACY_LIFT_ENV_ARGS, [np.stack([start, start])])
    env_meta = read_env_meta(path)
    assert env_meta["env_name"] == "Lift"
    env = RobomimicLowdimEnv(env_meta, LIFT_OBS_KEYS)
    obs, _ = env.reset(options={"init_state": start})
    np.testing.assert_array_equal(env.get_state(), start)
    assert obs.shape == (19,)
    env.close()


def test_read_env_meta_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_env_meta(tmp_path / "missing.hdf5")
    with h5py.File(tmp_path / "no_attr.hdf5", "w") as f:
        f.create_group("data")
    with pytest.raises(ValueError, match="env_args"):
        read_env_meta(tmp_path / "no_attr.hdf5")
    (tmp_path / "corrupt.hdf5").write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="re-download"):
        read_env_meta(tmp_path / "corrupt.hdf5")


def test_infer_task_name():
    assert infer_task_name("data/robomimic/datasets/lift/ph/low_dim.hdf5") == "lift"
    assert infer_task_name("data/robomimic/datasets/tool_hang/ph/image_abs.hdf5") == "tool_hang"
    assert infer_task_name("data/elsewhere/demo.hdf5") is None
    with pytest.raises(ValueError, match="unknown robomimic task"):
        default_env_meta("stack")


# ----- abs actions -----
def test_abs_action_rotation_round_trip():
    rng = np.random.default_rng(0)
    axis = rng.normal(size=(5, 3))
    axis_angle = axis / np.linalg.norm(axis, axis=-1, keepdims=True) * rng.uniform(0.1, 3.0, size=(5, 1))
    single = np.concatenate([rng.normal(size=(5, 3)), axis_angle, rng.uniform(-1, 1, size=(5, 1))], axis=-1)  # (5, 7)
    policy_action = transform_action(single)
    assert policy_action.shape == (5, 10)
    np.testing.assert_allclose(undo_transform_action(policy_action), single, atol=1e-6)
    dual = np.concatenate([single, single[::-1]], axis=-1)  # (5, 14)
    dual_policy = transform_action(dual)
    assert dual_policy.shape == (5, 20)
    np.testing.assert_allclose(undo_transform_action(dual_policy[None]), dual[None], atol=1e-6)
    with pytest.raises(ValueError, match="expected actions"):
        undo_transform_action(np.zeros((2, 9)))


# ----- image env -----
def test_lift_image_env_84x84():
    env = RobomimicImageEnv(default_env_meta("lift"), LIFT_IMAGE_SHAPE_META)
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        obs, *_ = env.step(np.zeros(7, dtype=np.float32))
    assert env.observation_space.contains(obs)
    for key in ("agentview_image", "robot0_eye_in_hand_image"):
        assert obs[key].shape == (3, 84, 84) and obs[key].dtype == np.float32
        assert 0.0 <= obs[key].min() and obs[key].max() <= 1.0 and obs[key].std() > 0.01
    frame = env.render()
    assert frame.shape == (84, 84, 3) and frame.dtype == np.uint8
    np.testing.assert_allclose(frame / 255.0, np.moveaxis(obs["agentview_image"], 0, -1), atol=1e-6)
    # Upright like robomimic's images: agentview has the robot at the top, the bright table below.
    assert frame[-20:].mean() > frame[:20].mean() + 30
    env.close()


# ----- runner -----
def test_runner_metric_on_hand_built_rewards(tmp_path):
    runner = RobomimicLowdimRunner(
        tmp_path, "data/robomimic/datasets/lift/ph/low_dim.hdf5", LIFT_OBS_KEYS, n_train=0, n_test=3
    )
    episodes = [EpisodeSpec("test/", seed, None, False) for seed in (10000, 10001, 10002)]
    rewards = [np.array([0.0, 0.0, 1.0, 0.0]), np.zeros(4), np.array([1.0, 1.0, 1.0, 1.0])]
    metrics = runner.metric_fn("test/", rewards, [{}] * 3, episodes)
    assert metrics["test/mean_score"] == pytest.approx(2 / 3)
    assert metrics["test/sim_max_reward_10000"] == 1.0 and metrics["test/sim_max_reward_10001"] == 0.0


def test_lowdim_runner_zero_policy_with_dataset(tmp_path, lift_env):
    lift_env.reset(seed=11)
    start = lift_env.get_state()
    dataset = tmp_path / "low_dim.hdf5"
    write_robomimic_hdf5(dataset, LEGACY_LIFT_ENV_ARGS, [start[None]])
    runner = RobomimicLowdimRunner(
        tmp_path / "out", dataset, LIFT_OBS_KEYS, n_train=1, n_train_vis=1, n_test=1, n_test_vis=0,
        max_steps=16, n_action_steps=8, n_envs=1, render_hw=(64, 64), fps=10,
    )  # fmt: skip
    policy = ZeroPolicy(n_action_steps=8, action_dim=7)
    results = runner.run(policy)
    runner.close()
    assert results["train/mean_score"] == 0.0 and results["test/mean_score"] == 0.0
    assert "train/sim_max_reward_0" in results and "test/sim_max_reward_10000" in results
    assert [len(r) for r in results["episode_rewards"]] == [16, 16]
    assert len(results["timing"]["predict_action_s"]) == 4  # 2 episodes x 16 steps / 8 per chunk
    assert all(shapes == {"obs": (1, 2, 19)} for shapes in policy.seen_obs_shapes)
    assert os.path.getsize(results["train/sim_video_0"]) > 0


def test_lowdim_runner_without_dataset(tmp_path, caplog):
    missing = tmp_path / "robomimic" / "datasets" / "lift" / "ph" / "low_dim.hdf5"
    with caplog.at_level("INFO", logger="diffusion_policy"):  # one info line, not a warning
        runner = RobomimicLowdimRunner(
            tmp_path / "out", missing, LIFT_OBS_KEYS, n_train=2, n_test=1, max_steps=8, n_envs=1, skip_video=True
        )
    notes = [r for r in caplog.records if "test episodes only" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelname == "INFO"
    assert [spec.prefix for spec in runner.episodes] == ["test/"]
    with pytest.raises(FileNotFoundError, match="task_name"):
        RobomimicLowdimRunner(tmp_path / "out", tmp_path / "nowhere.hdf5", LIFT_OBS_KEYS)


def test_image_runner_zero_policy(tmp_path):
    runner = RobomimicImageRunner(
        tmp_path / "out", "data/robomimic/datasets/lift/ph/image.hdf5", LIFT_IMAGE_SHAPE_META,
        n_train=0, n_test=1, n_test_vis=1, max_steps=4, n_obs_steps=2, n_action_steps=2, n_envs=1, fps=20,
    )  # fmt: skip
    policy = ZeroPolicy(n_action_steps=2, action_dim=7)
    results = runner.run(policy)
    runner.close()
    assert results["test/mean_score"] == 0.0
    assert policy.seen_obs_shapes[0]["agentview_image"] == (1, 2, 3, 84, 84)
    assert policy.seen_obs_shapes[0]["robot0_eef_quat"] == (1, 2, 4)
    assert os.path.getsize(results["test/sim_video_10000"]) > 0


@pytest.mark.parametrize("terminate", [False, True])
def test_terminate_on_success_ends_the_episode_only_when_asked(terminate):
    env = RobomimicLowdimEnv(default_env_meta("lift"), LIFT_OBS_KEYS, terminate_on_success=terminate)
    try:
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(np.zeros(7))
        assert reward == 0.0 and not terminated and not info["is_success"]
        env.is_success = lambda: True  # the cube is up: as if _check_success() held
        _, reward, terminated, _, info = env.step(np.zeros(7))
        assert reward == 1.0 and info["is_success"] and terminated == terminate
    finally:
        env.close()
