import h5py
import numpy as np
import pytest
import torch

from diffusion_policy.common.replay_buffer import ReplayBuffer
from diffusion_policy.dataset.blockpush_lowdim_dataset import BlockPushLowdimDataset
from diffusion_policy.dataset.kitchen_lowdim_dataset import KitchenLowdimDataset
from diffusion_policy.dataset.pusht_dataset import PushTLowdimDataset
from diffusion_policy.dataset.pusht_image_dataset import PushTImageDataset
from diffusion_policy.dataset.robomimic_replay_image_dataset import RobomimicReplayImageDataset
from diffusion_policy.dataset.robomimic_replay_lowdim_dataset import RobomimicReplayLowdimDataset
from diffusion_policy.model.common.rotation_transformer import RotationTransformer

EPISODE_LENGTHS = (12, 9, 15, 10, 11)


def _episodes(seed: int, make_step_arrays) -> list:
    rng = np.random.default_rng(seed)
    return [make_step_arrays(rng, length) for length in EPISODE_LENGTHS]


def _write_zarr(path, episodes) -> str:
    buffer = ReplayBuffer.create_empty_numpy()
    for episode in episodes:
        buffer.add_episode(episode)
    buffer.save_to_path(str(path))
    return str(path)


def _limits(x: np.ndarray):
    """Expected per-dim 'limits' scale/offset (range_eps 1e-4) in numpy."""
    lo, hi = x.min(0), x.max(0)
    scale = 2 / (hi - lo)
    return scale, -1 - scale * lo


def _check_split(make_dataset):
    n_episodes = len(EPISODE_LENGTHS)
    full = make_dataset(val_ratio=0.0)
    train = make_dataset(val_ratio=0.4)
    val = train.get_validation_dataset()
    assert train.val_mask.sum() == round(n_episodes * 0.4)
    assert not np.any(train.train_mask & train.val_mask)
    assert len(train) + len(val) == len(full)
    assert val.replay_buffer is train.replay_buffer


# ----------------------------------------------------------------------------- Push-T
def _pusht_episode(rng, length):
    return {
        "keypoint": rng.uniform(0, 512, (length, 9, 2)).astype(np.float32),
        "state": rng.uniform(0, 512, (length, 5)).astype(np.float32),
        "action": rng.uniform(0, 512, (length, 2)).astype(np.float32),
        "n_contacts": np.zeros((length, 1), dtype=np.float32),  # extra keys are not loaded
    }


def test_pusht_lowdim_dataset(tmp_path):
    episodes = _episodes(0, _pusht_episode)
    path = _write_zarr(tmp_path / "pusht.zarr", episodes)
    dataset = PushTLowdimDataset(path, horizon=16, pad_before=1, pad_after=7)
    assert set(dataset.replay_buffer.keys()) == {"keypoint", "state", "action"}
    item = dataset[0]
    assert item["obs"].shape == (16, 20) and item["action"].shape == (16, 2)
    assert item["obs"].dtype == torch.float32
    first = episodes[0]
    expected_obs = np.concatenate([first["keypoint"].reshape(-1, 18), first["state"][:, :2]], axis=-1)
    # episode 0 has 12 steps: 1 step of front padding, the episode, then its last step repeated
    np.testing.assert_allclose(item["obs"][1:13].numpy(), expected_obs)
    np.testing.assert_allclose(item["obs"][0].numpy(), expected_obs[0])
    np.testing.assert_allclose(item["obs"][13:].numpy(), np.repeat(expected_obs[-1:], 3, axis=0))

    all_obs = np.concatenate(
        [np.concatenate([e["keypoint"].reshape(-1, 18), e["state"][:, :2]], axis=-1) for e in episodes]
    )
    normalizer = dataset.get_normalizer()
    scale, offset = _limits(all_obs)
    np.testing.assert_allclose(normalizer.params_dict["obs"]["scale"].numpy(), scale, rtol=1e-5)
    np.testing.assert_allclose(normalizer.params_dict["obs"]["offset"].numpy(), offset, rtol=1e-4, atol=1e-5)
    assert dataset.get_all_actions().shape == (sum(EPISODE_LENGTHS), 2)

    _check_split(lambda **kw: PushTLowdimDataset(path, horizon=16, pad_before=1, pad_after=7, **kw))
    capped = PushTLowdimDataset(path, horizon=4, max_train_episodes=2)
    assert capped.train_mask.sum() == 2


def test_pusht_image_dataset(tmp_path):
    def episode(rng, length):
        return {"img": rng.integers(0, 256, (length, 96, 96, 3), dtype=np.uint8),
                "state": rng.uniform(0, 512, (length, 5)).astype(np.float32),
                "action": rng.uniform(0, 512, (length, 2)).astype(np.float32)}

    episodes = _episodes(0, episode)
    path = _write_zarr(tmp_path / "pusht_image.zarr", episodes)
    dataset = PushTImageDataset(path, horizon=4, pad_before=1, pad_after=3)
    item = dataset[1]  # window starting at step 0 of episode 0
    assert item["obs"]["image"].shape == (4, 3, 96, 96) and item["obs"]["agent_pos"].shape == (4, 2)
    first = episodes[0]
    np.testing.assert_allclose(item["obs"]["image"][0].numpy(), np.moveaxis(first["img"][0], -1, 0) / 255.0,
                               rtol=1e-6)
    np.testing.assert_allclose(item["obs"]["agent_pos"].numpy(), first["state"][:4, :2])
    np.testing.assert_allclose(item["action"].numpy(), first["action"][:4])
    normalizer = dataset.get_normalizer()
    image = normalizer["image"].normalize(torch.tensor([0.0, 1.0]))
    np.testing.assert_allclose(image.numpy(), [-1.0, 1.0])
    all_pos = np.concatenate([e["state"][:, :2] for e in episodes])
    scale, _ = _limits(all_pos)
    np.testing.assert_allclose(normalizer.params_dict["agent_pos"]["scale"].numpy(), scale, rtol=1e-5)


# ----------------------------------------------------------------------------- block pushing
def _blockpush_episode(rng, length):
    return {
        "obs": rng.normal(size=(length, 16)).astype(np.float32),
        "action": rng.normal(size=(length, 2)).astype(np.float32) * 0.05,
    }


def test_blockpush_lowdim_dataset(tmp_path):
    episodes = _episodes(1, _blockpush_episode)
    path = _write_zarr(tmp_path / "blockpush.zarr", episodes)
    dataset = BlockPushLowdimDataset(path, horizon=5, pad_before=2, pad_after=0)
    item = dataset[len(dataset) - 1]
    assert item["obs"].shape == (5, 16) and item["action"].shape == (5, 2)
    np.testing.assert_allclose(item["obs"].numpy(), episodes[-1]["obs"][-5:])

    all_obs = np.concatenate([e["obs"] for e in episodes])
    scale, _ = _limits(all_obs)
    np.testing.assert_allclose(dataset.get_normalizer().params_dict["obs"]["scale"].numpy(), scale, rtol=1e-5)

    hidden = BlockPushLowdimDataset(path, horizon=5, obs_eef_target=False)
    assert torch.all(hidden[0]["obs"][:, 8:10] == 0)
    assert np.any(hidden.replay_buffer["obs"][:, 8:10] != 0)  # the buffer itself is untouched
    manual = BlockPushLowdimDataset(path, horizon=5, use_manual_normalizer=True)
    obs_normalizer = manual.get_normalizer()["obs"]
    x_dims = [0, 3, 6, 8, 10, 13]
    x_scale = 2 / (all_obs[:, x_dims].max() - all_obs[:, x_dims].min())
    np.testing.assert_allclose(obs_normalizer.params_dict["scale"].numpy()[x_dims], x_scale, rtol=1e-5)
    normalized = obs_normalizer.normalize(all_obs).numpy()
    assert normalized[:, x_dims].min() == pytest.approx(-1, abs=1e-5)
    assert normalized[:, x_dims].max() == pytest.approx(1, abs=1e-5)
    _check_split(lambda **kw: BlockPushLowdimDataset(path, horizon=5, pad_before=2, **kw))


# ----------------------------------------------------------------------------- kitchen
def _write_kitchen(directory, t_max=16):
    rng = np.random.default_rng(2)
    n = len(EPISODE_LENGTHS)
    observations = rng.normal(size=(n, t_max, 60))
    observations[..., 5] = 0.3 + 0.01 * rng.random((n, t_max))  # a dim that barely moves
    actions = rng.normal(size=(n, t_max, 9))
    mask = np.zeros((n, t_max))
    for i, length in enumerate(EPISODE_LENGTHS):
        mask[i, :length] = 1
    np.save(directory / "observations_seq.npy", observations)
    np.save(directory / "actions_seq.npy", actions)
    np.save(directory / "existence_mask.npy", mask)
    return observations, actions


def test_kitchen_lowdim_dataset(tmp_path):
    observations, actions = _write_kitchen(tmp_path)
    dataset = KitchenLowdimDataset(str(tmp_path), horizon=16, pad_before=3, pad_after=7)
    np.testing.assert_array_equal(dataset.replay_buffer.episode_lengths, EPISODE_LENGTHS)
    item = dataset[3]
    assert item["obs"].shape == (16, 60) and item["action"].shape == (16, 9)
    np.testing.assert_allclose(item["obs"][0].numpy(), observations[0, 0], rtol=1e-6)

    valid_obs = np.concatenate([observations[i, :length] for i, length in enumerate(EPISODE_LENGTHS)])
    obs_params = dataset.get_normalizer().params_dict["obs"]
    scale, _ = _limits(valid_obs.astype(np.float32))
    moving = np.arange(60) != 5
    np.testing.assert_allclose(obs_params["scale"].numpy()[moving], scale[moving], rtol=1e-5)
    assert obs_params["scale"][5].item() == 1.0  # range < 5e-2: shifted, not scaled
    assert dataset.get_all_actions().shape == (sum(EPISODE_LENGTHS), 9)
    _check_split(lambda **kw: KitchenLowdimDataset(str(tmp_path), horizon=16, pad_before=3, pad_after=7, **kw))

    (tmp_path / "existence_mask.npy").unlink()
    with pytest.raises(FileNotFoundError, match="existence_mask.npy"):
        KitchenLowdimDataset(str(tmp_path))


# ----------------------------------------------------------------------------- robomimic
def _random_axis_angle(rng, n):
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return axis * rng.uniform(0.1, 3.0, size=(n, 1))


def _write_robomimic(path, n_arms=1, image_hw=None):
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as file:
        data = file.create_group("data")
        for i, length in enumerate(EPISODE_LENGTHS):
            demo = data.create_group(f"demo_{i}")
            arms = [
                np.concatenate(
                    [
                        rng.normal(size=(length, 3)),
                        _random_axis_angle(rng, length),
                        rng.choice([-1.0, 1.0], (length, 1)),
                    ],
                    axis=-1,
                )
                for _ in range(n_arms)
            ]
            demo["actions"] = np.concatenate(arms, axis=-1)
            obs = demo.create_group("obs")
            obs["object"] = rng.normal(size=(length, 10)) * 3
            obs["robot0_eef_pos"] = rng.normal(size=(length, 3))
            obs["robot0_eef_quat"] = rng.uniform(-1, 1, size=(length, 4))
            obs["robot0_gripper_qpos"] = rng.uniform(0, 0.04, size=(length, 2))
            if image_hw is not None:
                h, w = image_hw
                yy, xx = np.mgrid[0:h, 0:w]
                base = [(xx * 6 + yy * 3 + 5 * t) % 200 for t in range(length)]
                image = np.stack(base).astype(np.uint8)[..., None].repeat(3, axis=-1)
                obs["agentview_image"] = image
                obs["robot0_eye_in_hand_image"] = 255 - image
    return str(path)


def test_rotation_6d_round_trip():
    rng = np.random.default_rng(4)
    axis_angle = _random_axis_angle(rng, 100).astype(np.float32)
    transformer = RotationTransformer(from_rep="axis_angle", to_rep="rotation_6d")
    d6 = transformer.forward(axis_angle)
    assert d6.shape == (100, 6) and d6.dtype == np.float32
    np.testing.assert_allclose(transformer.inverse(d6), axis_angle, atol=1e-5)
    # 6d = first two rows of the rotation matrix; rows are orthonormal
    rows = d6.reshape(100, 2, 3)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=-1), 1, atol=1e-5)
    np.testing.assert_allclose(np.sum(rows[:, 0] * rows[:, 1], -1), 0, atol=1e-5)
    as_tensor = transformer.forward(torch.from_numpy(axis_angle))
    assert isinstance(as_tensor, torch.Tensor)
    np.testing.assert_allclose(as_tensor.numpy(), d6, atol=1e-6)
    quaternion = RotationTransformer("axis_angle", "quaternion").forward(axis_angle[:1].astype(np.float64))
    angle = np.linalg.norm(axis_angle[0])
    np.testing.assert_allclose(quaternion[0, 0], np.cos(angle / 2), atol=1e-6)
    with pytest.raises(ValueError, match="unknown rotation representation"):
        RotationTransformer("euler", "matrix")


def test_robomimic_lowdim_dataset_delta(tmp_path):
    path = _write_robomimic(tmp_path / "low_dim.hdf5")
    dataset = RobomimicReplayLowdimDataset(path, horizon=10, pad_before=1, pad_after=7)
    item = dataset[0]
    assert item["obs"].shape == (10, 19) and item["action"].shape == (10, 7)
    with h5py.File(path) as file:
        demo = file["data/demo_0"]
        keys = ("object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
        expected = np.concatenate([demo["obs"][k][:] for k in keys], axis=-1)
        np.testing.assert_allclose(item["obs"][1:].numpy(), expected[:9], rtol=1e-6)
        np.testing.assert_allclose(item["action"][1:].numpy(), demo["actions"][:9], rtol=1e-6)
    normalizer = dataset.get_normalizer()
    all_obs = dataset.replay_buffer["obs"]
    np.testing.assert_allclose(normalizer["obs"].params_dict["scale"].numpy(), 1 / np.abs(all_obs).max(), rtol=1e-6)
    assert torch.all(normalizer["obs"].params_dict["offset"] == 0)
    x = torch.randn(3, 7)
    torch.testing.assert_close(normalizer["action"].normalize(x), x)  # delta actions: identity
    _check_split(lambda **kw: RobomimicReplayLowdimDataset(path, horizon=10, **kw))
    with pytest.raises(KeyError, match="no obs keys"):
        RobomimicReplayLowdimDataset(path, obs_keys=["object", "robot1_eef_pos"])
    with pytest.raises(FileNotFoundError, match="robomimic dataset not found"):
        RobomimicReplayLowdimDataset(str(tmp_path / "missing.hdf5"))


@pytest.mark.parametrize("n_arms", [1, 2])
def test_robomimic_lowdim_dataset_abs_action(tmp_path, n_arms):
    path = _write_robomimic(tmp_path / "low_dim_abs.hdf5", n_arms=n_arms)
    dataset = RobomimicReplayLowdimDataset(path, horizon=4, abs_action=True)
    actions = dataset.get_all_actions().numpy()
    assert actions.shape == (sum(EPISODE_LENGTHS), 10 * n_arms)
    with h5py.File(path) as file:
        raw = np.concatenate([file[f"data/demo_{i}/actions"][:] for i in range(len(EPISODE_LENGTHS))])
    transformer = RotationTransformer("axis_angle", "rotation_6d")
    for arm in range(n_arms):
        block = actions[:, 10 * arm : 10 * arm + 10]
        raw_arm = raw[:, 7 * arm : 7 * arm + 7]
        np.testing.assert_allclose(block[:, :3], raw_arm[:, :3], rtol=1e-6)
        np.testing.assert_allclose(transformer.inverse(block[:, 3:9]), raw_arm[:, 3:6], atol=1e-4)
        np.testing.assert_allclose(block[:, 9], raw_arm[:, 6])
    normalized = dataset.get_normalizer()["action"].normalize(actions).numpy()
    for arm in range(n_arms):
        pos = slice(10 * arm, 10 * arm + 3)
        rest = slice(10 * arm + 3, 10 * arm + 10)
        np.testing.assert_allclose(normalized[:, pos].min(0), -1, atol=1e-5)
        np.testing.assert_allclose(normalized[:, pos].max(0), 1, atol=1e-5)
        np.testing.assert_allclose(normalized[:, rest], actions[:, rest])


SHAPE_META = {
    "obs": {
        "agentview_image": {"shape": [3, 16, 16], "type": "rgb"},
        "robot0_eye_in_hand_image": {"shape": [3, 16, 16], "type": "rgb"},
        "robot0_eef_pos": {"shape": [3]},
        "robot0_eef_quat": {"shape": [4]},
        "robot0_gripper_qpos": {"shape": [2]},
    },
    "action": {"shape": [10]},
}


def test_robomimic_image_dataset(tmp_path):
    path = _write_robomimic(tmp_path / "image_abs.hdf5", image_hw=(16, 16))
    kwargs = dict(shape_meta=SHAPE_META, dataset_path=path, horizon=10, pad_before=1, pad_after=7, n_obs_steps=2)
    dataset = RobomimicReplayImageDataset(abs_action=True, use_cache=True, **kwargs)
    assert (tmp_path / "image_abs.hdf5.zarr.zip").is_file()
    item = dataset[1]  # sequence starting at step 0 of demo 0
    obs = item["obs"]
    assert obs["agentview_image"].shape == (2, 3, 16, 16)
    assert obs["robot0_eef_pos"].shape == (2, 3) and obs["robot0_gripper_qpos"].shape == (2, 2)
    assert item["action"].shape == (10, 10)
    with h5py.File(path) as file:
        demo = file["data/demo_0"]
        images = np.moveaxis(demo["obs/agentview_image"][:2], -1, 1) / 255.0
        np.testing.assert_allclose(obs["agentview_image"].numpy(), images, atol=4 / 255)  # Jpeg2k is lossy
        np.testing.assert_allclose(obs["robot0_eef_pos"].numpy(), demo["obs/robot0_eef_pos"][:2], rtol=1e-6)
    assert 0.0 <= obs["robot0_eye_in_hand_image"].min() and obs["robot0_eye_in_hand_image"].max() <= 1.0

    normalizer = dataset.get_normalizer()
    image = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(normalizer["agentview_image"].normalize(image), image * 2 - 1)
    quat = torch.rand(5, 4)
    torch.testing.assert_close(normalizer["robot0_eef_quat"].normalize(quat), quat)
    eef_pos = np.asarray(dataset.replay_buffer["robot0_eef_pos"])
    normalized_pos = normalizer["robot0_eef_pos"].normalize(eef_pos).numpy()
    np.testing.assert_allclose(normalized_pos.min(0), -1, atol=1e-5)
    np.testing.assert_allclose(normalized_pos.max(0), 1, atol=1e-5)
    assert set(normalizer.params_dict.keys()) == set(SHAPE_META["obs"]) | {"action"}

    cached = RobomimicReplayImageDataset(abs_action=True, use_cache=True, **kwargs)  # reads the zip
    for key, value in cached[1]["obs"].items():
        torch.testing.assert_close(value, obs[key])
    no_cache_delta = RobomimicReplayImageDataset(
        **{**kwargs, "shape_meta": {**SHAPE_META, "action": {"shape": [7]}}, "n_obs_steps": None}
    )
    assert no_cache_delta[0]["obs"]["agentview_image"].shape == (10, 3, 16, 16)
    assert no_cache_delta[0]["action"].shape == (10, 7)
    with pytest.raises(ValueError, match="shape_meta expects"):
        RobomimicReplayImageDataset(**kwargs)  # delta actions are 7-d, shape_meta says 10
