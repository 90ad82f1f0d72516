"""Robomimic image dataset: per-key observations from `shape_meta` (rgb + low-dim) and actions.

Images are stored as Jpeg2k-compressed zarr chunks (one per frame) in memory and decoded when
sampled; with `use_cache` the converted buffer is saved next to the hdf5 as `<hdf5>.zarr.zip` and
reused by later runs.
"""

import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import numpy as np
import torch
import zarr
from filelock import FileLock
from imagecodecs.numcodecs import Jpeg2k, register_codecs

from diffusion_policy.common.normalize_util import (
    array_to_stats,
    get_identity_normalizer_from_stat,
    get_image_range_normalizer,
    get_max_abs_normalizer_from_stat,
    get_range_normalizer_from_stat,
    robomimic_abs_action_normalizer_from_stat,
)
from diffusion_policy.common.pytorch_util import dict_apply
from diffusion_policy.common.replay_buffer import ReplayBuffer
from diffusion_policy.dataset.base_dataset import BaseImageDataset, ReplaySequenceMixin
from diffusion_policy.dataset.robomimic_replay_lowdim_dataset import (
    convert_actions,
    open_robomimic_hdf5,
    robomimic_demos,
)
from diffusion_policy.model.common.normalizer import LinearNormalizer
from diffusion_policy.model.common.rotation_transformer import RotationTransformer

JPEG2K_LEVEL = 50


def split_shape_meta(shape_meta) -> tuple[list, list]:
    """(rgb_keys, lowdim_keys) in shape_meta['obs'] order; `type` defaults to low_dim."""
    rgb_keys, lowdim_keys = [], []
    for key, attr in shape_meta["obs"].items():
        obs_type = attr.get("type", "low_dim")
        if obs_type == "rgb":
            rgb_keys.append(key)
        elif obs_type == "low_dim":
            lowdim_keys.append(key)
        else:
            raise ValueError(f"shape_meta obs {key!r} has type {obs_type!r}; use 'rgb' or 'low_dim'")
    return rgb_keys, lowdim_keys


def _check_shape(name: str, actual: tuple, expected: tuple) -> None:
    if tuple(actual) != tuple(expected):
        raise ValueError(f"{name}: dataset has per-step shape {tuple(actual)}, shape_meta expects {tuple(expected)}")


def convert_robomimic_to_replay(
    store,
    shape_meta,
    dataset_path: str,
    abs_action: bool,
    rotation_transformer: RotationTransformer,
    n_workers: int | None = None,
) -> ReplayBuffer:
    """Write the robomimic hdf5's shape_meta keys and actions into a zarr replay buffer in `store`.

    Low-dim obs and actions are float32, uncompressed; rgb obs are (N, H, W, C) uint8, one
    Jpeg2k chunk per frame, encoded by `n_workers` threads (default: all CPUs).
    """
    register_codecs()
    rgb_keys, lowdim_keys = split_shape_meta(shape_meta)
    root = zarr.group(store=store)
    data_group = root.require_group("data")
    meta_group = root.require_group("meta")
    with open_robomimic_hdf5(dataset_path) as file:
        demos = robomimic_demos(file)
        episode_ends = np.cumsum([demo["actions"].shape[0] for demo in demos]).astype(np.int64)
        meta_group.array("episode_ends", episode_ends, compressor=None, overwrite=True)
        n_steps = int(episode_ends[-1])

        for key in lowdim_keys:
            values = np.concatenate([demo["obs"][key][:] for demo in demos]).astype(np.float32)
            _check_shape(f"obs {key}", values.shape[1:], shape_meta["obs"][key]["shape"])
            data_group.array(key, values, chunks=values.shape, compressor=None, overwrite=True)
        actions = np.concatenate(
            [convert_actions(demo["actions"][:], abs_action, rotation_transformer) for demo in demos]
        )
        _check_shape("action", actions.shape[1:], shape_meta["action"]["shape"])
        data_group.array("action", actions, chunks=actions.shape, compressor=None, overwrite=True)

        image_arrays = {}
        for key in rgb_keys:
            c, h, w = shape_meta["obs"][key]["shape"]
            image_arrays[key] = data_group.zeros(
                key, shape=(n_steps, h, w, c), chunks=(1, h, w, c), dtype=np.uint8,
                compressor=Jpeg2k(level=JPEG2K_LEVEL), overwrite=True,
            )  # fmt: skip
        n_workers = n_workers or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            pending = set()
            for demo, end in zip(demos, episode_ends, strict=True):
                start = end - demo["actions"].shape[0]
                for key, array in image_arrays.items():
                    images = demo["obs"][key][:]  # (T, H, W, C) uint8; h5py reads stay in this thread
                    _check_shape(f"obs {key} (HWC)", images.shape[1:], array.shape[1:])
                    if len(pending) >= 4 * n_workers:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            future.result()
                    pending.add(pool.submit(array.__setitem__, slice(start, end), images))
            for future in pending:
                future.result()
    return ReplayBuffer(root)


def load_cached_replay(cache_path: str, keys: list) -> ReplayBuffer:
    """Copy a `.zarr.zip` cache into memory (chunks stay compressed)."""
    register_codecs()
    try:
        return ReplayBuffer.copy_from_path(cache_path, keys=keys, store=zarr.MemoryStore())
    except (KeyError, ValueError, OSError) as error:
        raise ValueError(f"dataset cache {cache_path} is unusable ({error}); delete it to rebuild") from error


class RobomimicReplayImageDataset(ReplaySequenceMixin, BaseImageDataset):
    """Reads `data/demo_<i>/{obs/<key> (T, H, W, C) uint8 or (T, D), actions}` of a robomimic image hdf5.

    With `n_obs_steps` set, only the first n_obs_steps steps of each observation are decoded and
    returned (obs tensors are (n_obs_steps, ...)); actions always cover the whole horizon.
    """

    def __init__(
        self,
        shape_meta: dict,
        dataset_path: str,
        horizon: int = 1,
        pad_before: int = 0,
        pad_after: int = 0,
        n_obs_steps: int | None = None,
        abs_action: bool = False,
        rotation_rep: str = "rotation_6d",
        use_legacy_normalizer: bool = False,
        use_cache: bool = False,
        seed: int = 42,
        val_ratio: float = 0.0,
    ):
        super().__init__()
        rotation_transformer = RotationTransformer(from_rep="axis_angle", to_rep=rotation_rep)
        rgb_keys, lowdim_keys = split_shape_meta(shape_meta)
        dataset_path = os.path.expanduser(str(dataset_path))
        convert_args = (shape_meta, dataset_path, abs_action, rotation_transformer)
        if use_cache:
            cache_path = dataset_path + ".zarr.zip"
            with FileLock(cache_path + ".lock"):
                if not os.path.exists(cache_path):
                    replay_buffer = convert_robomimic_to_replay(zarr.MemoryStore(), *convert_args)
                    replay_buffer.save_to_path(cache_path)  # temp file + os.replace
                else:
                    replay_buffer = load_cached_replay(cache_path, rgb_keys + lowdim_keys + ["action"])
        else:
            replay_buffer = convert_robomimic_to_replay(zarr.MemoryStore(), *convert_args)

        self.shape_meta = shape_meta
        self.rgb_keys = rgb_keys
        self.lowdim_keys = lowdim_keys
        self.abs_action = abs_action
        self.use_legacy_normalizer = use_legacy_normalizer
        self.n_obs_steps = n_obs_steps
        key_first_k = None if n_obs_steps is None else {key: n_obs_steps for key in rgb_keys + lowdim_keys}
        self._init_sequences(replay_buffer, horizon, pad_before, pad_after, seed, val_ratio, key_first_k=key_first_k)

    def get_normalizer(self, **kwargs) -> LinearNormalizer:
        """action: identity (delta) or pos range / rotation+gripper identity (absolute);
        `*pos` keys (incl. `*qpos`) range -> [-1, 1]; `*quat` identity; images [0, 1] -> [-1, 1]."""
        normalizer = LinearNormalizer()
        action_stat = array_to_stats(self.replay_buffer["action"])
        if not self.abs_action:
            normalizer["action"] = get_identity_normalizer_from_stat(action_stat)
        elif self.use_legacy_normalizer:
            normalizer["action"] = get_max_abs_normalizer_from_stat(action_stat)
        else:
            normalizer["action"] = robomimic_abs_action_normalizer_from_stat(action_stat)
        for key in self.lowdim_keys:
            stat = array_to_stats(self.replay_buffer[key])
            if key.endswith("pos"):
                normalizer[key] = get_range_normalizer_from_stat(stat)
            elif key.endswith("quat"):
                normalizer[key] = get_identity_normalizer_from_stat(stat)  # already in [-1, 1]
            else:
                raise ValueError(f"no normalizer rule for low-dim obs {key!r}: names must end in 'pos' or 'quat'")
        for key in self.rgb_keys:
            normalizer[key] = get_image_range_normalizer()
        return normalizer

    def get_all_actions(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.replay_buffer["action"]))

    def __getitem__(self, idx: int) -> dict:
        data = self.sampler.sample_sequence(idx)
        obs_steps = slice(self.n_obs_steps)
        obs = {}
        for key in self.rgb_keys:  # (To, H, W, C) uint8 -> (To, C, H, W) float in [0, 1]
            obs[key] = np.moveaxis(data[key][obs_steps], -1, 1).astype(np.float32) / 255.0
        for key in self.lowdim_keys:
            obs[key] = data[key][obs_steps].astype(np.float32)
        return {
            "obs": dict_apply(obs, torch.from_numpy),
            "action": torch.from_numpy(data["action"].astype(np.float32)),
        }
