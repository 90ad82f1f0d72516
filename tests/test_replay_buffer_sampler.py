import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import zarr
from imagecodecs.numcodecs import Jpeg2k, register_codecs

from diffusion_policy.common.replay_buffer import ReplayBuffer
from diffusion_policy.common.sampler import SequenceSampler, downsample_mask, get_val_mask


def _episode(start: int, length: int) -> dict:
    steps = np.arange(start, start + length, dtype=np.float32)
    return {"obs": np.stack([steps, -steps], axis=-1), "action": steps[:, None] * 10}


def _buffer(lengths=(3, 5), backend="numpy") -> ReplayBuffer:
    buffer = ReplayBuffer.create_empty_numpy() if backend == "numpy" else ReplayBuffer.create_empty_zarr()
    start = 0
    for length in lengths:
        buffer.add_episode(_episode(start, length))
        start += length
    return buffer


@pytest.mark.parametrize("backend", ["numpy", "zarr"])
def test_add_and_get_episode(backend):
    buffer = _buffer((3, 5, 2), backend)
    assert buffer.backend == backend
    assert buffer.n_episodes == 3 and buffer.n_steps == 10
    np.testing.assert_array_equal(buffer.episode_ends[:], [3, 8, 10])
    np.testing.assert_array_equal(buffer.episode_lengths, [3, 5, 2])
    np.testing.assert_array_equal(buffer["obs"][:, 0], np.arange(10))
    episode = buffer.get_episode(1)
    np.testing.assert_array_equal(episode["action"][:, 0], np.arange(3, 8) * 10)
    np.testing.assert_array_equal(buffer.get_episode(-1)["obs"][:, 0], [8, 9])
    assert set(buffer.keys()) == {"obs", "action"} and "obs" in buffer
    with pytest.raises(ValueError, match="same length"):
        buffer.add_episode({"obs": np.zeros((2, 2)), "action": np.zeros((3, 1))})
    with pytest.raises(ValueError, match="keys"):
        buffer.add_episode({"obs": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="step shape"):
        buffer.add_episode({"obs": np.zeros((2, 3)), "action": np.zeros((2, 1))})


def test_numpy_growth_keeps_earlier_views_valid():
    buffer = ReplayBuffer.create_empty_numpy()
    buffer.add_episode(_episode(0, 5))
    first_view = buffer.get_episode(0)["obs"]
    for i in range(1, 40):
        buffer.add_episode(_episode(5 * i, 5))
    np.testing.assert_array_equal(first_view[:, 0], np.arange(5))
    np.testing.assert_array_equal(buffer["obs"][:, 0], np.arange(200))
    assert len(buffer["obs"]) == buffer.n_steps == 200


@pytest.mark.parametrize("suffix", [".zarr", ".zarr.zip"])
def test_save_copy_and_open_from_path(tmp_path, suffix):
    path = str(tmp_path / f"buffer{suffix}")
    source = _buffer((4, 6))
    source.save_to_path(path)
    source.save_to_path(path)  # replacing an existing buffer works
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob("*.old-*"))

    loaded = ReplayBuffer.copy_from_path(path)
    assert loaded.backend == "numpy"
    np.testing.assert_array_equal(loaded["obs"], source["obs"])
    np.testing.assert_array_equal(loaded.episode_ends, [4, 10])

    only_action = ReplayBuffer.copy_from_path(path, keys=["action"], store=zarr.MemoryStore())
    assert only_action.backend == "zarr" and list(only_action.keys()) == ["action"]
    np.testing.assert_array_equal(only_action["action"][:], source["action"])

    if suffix == ".zarr":
        opened = ReplayBuffer.create_from_path(path)
        np.testing.assert_array_equal(opened.get_episode(1)["obs"], source.get_episode(1)["obs"])
    with pytest.raises(KeyError, match="no data keys"):
        ReplayBuffer.copy_from_path(path, keys=["img"])


def test_missing_or_invalid_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="replay buffer not found"):
        ReplayBuffer.copy_from_path(str(tmp_path / "nothing.zarr"))
    zarr.group(store=zarr.DirectoryStore(str(tmp_path / "bad.zarr")))
    with pytest.raises(ValueError, match="not a replay buffer"):
        ReplayBuffer.copy_from_path(str(tmp_path / "bad.zarr"))


def test_zarr_jpeg2k_images_round_trip(tmp_path):
    register_codecs()
    buffer = ReplayBuffer.create_empty_zarr()
    yy, xx = np.mgrid[0:16, 0:16]
    frames = np.stack([(xx * 8 + yy * 4 + t) % 256 for t in range(6)]).astype(np.uint8)
    images = np.repeat(frames[..., None], 3, axis=-1)  # (6, 16, 16, 3) smooth gradients
    buffer.add_episode(
        {"img": images, "action": np.zeros((6, 2), dtype=np.float32)},
        chunks={"img": (1, 16, 16, 3)},
        compressors={"img": Jpeg2k(level=50)},
    )
    assert buffer["img"].chunks == (1, 16, 16, 3)
    path = str(tmp_path / "images.zarr.zip")
    buffer.save_to_path(path)
    loaded = ReplayBuffer.copy_from_path(path)
    assert np.abs(loaded["img"].astype(int) - images).max() <= 4


def _sequences(sampler):
    return [sampler.sample_sequence(i) for i in range(len(sampler))]


def test_sampler_pads_both_episode_edges():
    # episodes: [0, 1, 2] and [3, 4, 5, 6, 7]; obs[:, 0] is the global step index
    sampler = SequenceSampler(_buffer((3, 5)), sequence_length=4, pad_before=2, pad_after=1)
    expected = [
        [0, 0, 0, 1],  # starts 2 steps before episode 0: first frame repeated
        [0, 0, 1, 2],
        [0, 1, 2, 2],  # runs 1 step past the end: last frame repeated
        [3, 3, 3, 4],
        [3, 3, 4, 5],
        [3, 4, 5, 6],
        [4, 5, 6, 7],
        [5, 6, 7, 7],
    ]
    got = [seq["obs"][:, 0].astype(int).tolist() for seq in _sequences(sampler)]
    assert got == expected
    for seq in _sequences(sampler):
        np.testing.assert_array_equal(seq["action"][:, 0], seq["obs"][:, 0] * 10)
        assert seq["obs"].shape == (4, 2) and seq["obs"].dtype == np.float32


def test_sampler_without_padding_mask_and_keys():
    buffer = _buffer((3, 5))
    no_pad = SequenceSampler(buffer, sequence_length=3)
    assert [seq["obs"][0, 0] for seq in _sequences(no_pad)] == [0, 3, 4, 5]
    # padding is clipped to sequence_length - 1
    clipped = SequenceSampler(buffer, sequence_length=2, pad_before=5, pad_after=5)
    assert len(clipped) == (3 + 1) + (5 + 1)
    masked = SequenceSampler(buffer, sequence_length=3, episode_mask=np.array([False, True]), keys=["action"])
    assert len(masked) == 3 and list(masked.sample_sequence(0)) == ["action"]
    empty = SequenceSampler(buffer, sequence_length=3, episode_mask=np.array([False, False]))
    assert len(empty) == 0


def test_sampler_key_first_k():
    sampler = SequenceSampler(_buffer((6,)), sequence_length=4, pad_before=1, key_first_k={"obs": 2})
    first = sampler.sample_sequence(0)  # starts 1 step before the episode: reads steps 0..2
    np.testing.assert_array_equal(first["obs"][:3, 0], [0, 0, 1])  # padding + the 2 loaded steps
    assert np.isnan(first["obs"][3:]).all()  # the rest is never read
    np.testing.assert_array_equal(first["action"][:, 0], [0, 0, 10, 20])


def test_val_mask_and_downsample():
    mask = get_val_mask(n_episodes=50, val_ratio=0.1, seed=42)
    assert mask.dtype == bool and mask.sum() == 5
    np.testing.assert_array_equal(mask, get_val_mask(50, 0.1, seed=42))
    assert not np.array_equal(mask, get_val_mask(50, 0.1, seed=0))
    assert get_val_mask(10, 0.0).sum() == 0
    assert get_val_mask(10, 0.01).sum() == 1  # at least one validation episode
    assert get_val_mask(2, 0.9).sum() == 1  # and at least one training episode
    train = ~mask
    small = downsample_mask(train, max_n=10, seed=42)
    assert small.sum() == 10 and not np.any(small & mask)
    assert downsample_mask(train, max_n=None) is train
    assert downsample_mask(train, max_n=100).sum() == train.sum()


def test_numba_jit_time_is_small(tmp_path):
    code = (
        "import time, numpy as np; t = time.perf_counter();"
        "from diffusion_policy.common.sampler import create_indices;"
        "create_indices(np.array([3, 8]), 4, np.ones(2, dtype=bool), 1, 1);"
        "print(time.perf_counter() - t)"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}  # empty cache: measure a cold compile
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    seconds = float(out.stdout.strip().splitlines()[-1])
    assert seconds < 20, f"import + JIT of create_indices took {seconds:.1f} s"


def test_create_from_path_modes_and_pickle(tmp_path):
    path = str(tmp_path / "live.zarr")
    writer = ReplayBuffer.create_from_path(path, mode="w")
    writer.add_episode(_episode(0, 4))
    appender = ReplayBuffer.create_from_path(path, mode="a")
    appender.add_episode(_episode(4, 3))
    reader = ReplayBuffer.create_from_path(path)
    np.testing.assert_array_equal(reader.episode_ends[:], [4, 7])
    np.testing.assert_array_equal(reader["obs"][:, 0], np.arange(7))
    assert ReplayBuffer.create_from_path(path, mode="w").n_episodes == 0
    with pytest.raises(ValueError, match="mode must be"):
        ReplayBuffer.create_from_path(path, mode="x")

    buffer = _buffer((3, 5))
    clone = pickle.loads(pickle.dumps(buffer))
    clone.add_episode(_episode(8, 2))
    assert clone.n_steps == 10 and buffer.n_steps == 8
    np.testing.assert_array_equal(clone["obs"][:8], buffer["obs"])
