"""Robomimic low-dim dataset: obs = concatenated obs keys, actions optionally absolute with
rotation converted from axis-angle to `rotation_rep` (pos 3 | rot | gripper 1 per arm)."""

import os

import h5py
import numpy as np
import torch
from tqdm import tqdm

from diffusion_policy.common.normalize_util import (
    array_to_stats,
    get_identity_normalizer_from_stat,
    get_max_abs_normalizer_from_stat,
    robomimic_abs_action_normalizer_from_stat,
)
from diffusion_policy.common.pytorch_util import dict_apply
from diffusion_policy.common.replay_buffer import ReplayBuffer
from diffusion_policy.dataset.base_dataset import BaseLowdimDataset, ReplaySequenceMixin
from diffusion_policy.model.common.normalizer import LinearNormalizer
from diffusion_policy.model.common.rotation_transformer import RotationTransformer

DEFAULT_OBS_KEYS = ("object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")


def open_robomimic_hdf5(dataset_path: str) -> h5py.File:
    """Open a robomimic hdf5 (groups data/demo_<i>) for reading, with a clear error if it isn't one."""
    path = os.path.expanduser(str(dataset_path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"robomimic dataset not found: {path} (download it or fix dataset_path)")
    file = h5py.File(path, "r")
    if "data" not in file or "demo_0" not in file["data"]:
        file.close()
        raise ValueError(f"{path} is not a robomimic dataset: expected groups data/demo_0, data/demo_1, ...")
    return file


def robomimic_demos(file: h5py.File) -> list:
    """The demo groups in index order demo_0, demo_1, ... (the order the original code loads)."""
    demos = file["data"]
    return [demos[f"demo_{i}"] for i in range(len(demos))]


def convert_actions(raw_actions: np.ndarray, abs_action: bool, rotation_transformer: RotationTransformer) -> np.ndarray:
    """(T, 7 or 14) robomimic actions -> float32; absolute ones become (T, 10 or 20) with the
    axis-angle rotation of each arm converted by `rotation_transformer`."""
    actions = raw_actions.astype(np.float32)
    if not abs_action:
        return actions
    if actions.shape[-1] not in (7, 14):
        raise ValueError(f"absolute robomimic actions must be 7-d or 14-d (two arms), got {actions.shape[-1]}")
    n_arms = actions.shape[-1] // 7
    per_arm = actions.reshape(len(actions), n_arms, 7)
    pos, rot, gripper = per_arm[..., :3], per_arm[..., 3:6], per_arm[..., 6:]
    rot = rotation_transformer.forward(rot)
    converted = np.concatenate([pos, rot, gripper], axis=-1).astype(np.float32)
    return converted.reshape(len(actions), -1)


class RobomimicReplayLowdimDataset(ReplaySequenceMixin, BaseLowdimDataset):
    """Reads `data/demo_<i>/{obs/<key>, actions}` of a robomimic low_dim hdf5."""

    def __init__(
        self,
        dataset_path: str,
        horizon: int = 1,
        pad_before: int = 0,
        pad_after: int = 0,
        obs_keys=DEFAULT_OBS_KEYS,
        abs_action: bool = False,
        rotation_rep: str = "rotation_6d",
        use_legacy_normalizer: bool = False,
        seed: int = 42,
        val_ratio: float = 0.0,
        max_train_episodes: int | None = None,
    ):
        super().__init__()
        obs_keys = list(obs_keys)
        rotation_transformer = RotationTransformer(from_rep="axis_angle", to_rep=rotation_rep)
        replay_buffer = ReplayBuffer.create_empty_numpy()
        with open_robomimic_hdf5(dataset_path) as file:
            for demo in tqdm(robomimic_demos(file), desc="Loading hdf5 to ReplayBuffer", leave=False):
                missing = [key for key in obs_keys if key not in demo["obs"]]
                if missing:
                    raise KeyError(f"{dataset_path} {demo.name} has no obs keys {missing}; check obs_keys")
                obs = np.concatenate([demo["obs"][key][:] for key in obs_keys], axis=-1)
                actions = convert_actions(demo["actions"][:], abs_action, rotation_transformer)
                replay_buffer.add_episode({"obs": obs.astype(np.float32), "action": actions})
        self.abs_action = abs_action
        self.use_legacy_normalizer = use_legacy_normalizer
        self._init_sequences(replay_buffer, horizon, pad_before, pad_after, seed, val_ratio, max_train_episodes)

    def get_normalizer(self, mode: str = "limits", **kwargs) -> LinearNormalizer:
        """action: identity (delta actions are already in [-1, 1]) or, for absolute actions,
        position range -> [-1, 1] with rotation/gripper untouched; obs: global 1 / max|x| scale."""
        normalizer = LinearNormalizer()
        action_stat = array_to_stats(self.replay_buffer["action"])
        if not self.abs_action:
            normalizer["action"] = get_identity_normalizer_from_stat(action_stat)
        elif self.use_legacy_normalizer:
            normalizer["action"] = get_max_abs_normalizer_from_stat(action_stat)
        else:
            normalizer["action"] = robomimic_abs_action_normalizer_from_stat(action_stat)
        normalizer["obs"] = get_max_abs_normalizer_from_stat(array_to_stats(self.replay_buffer["obs"]))
        return normalizer

    def get_all_actions(self) -> torch.Tensor:
        return torch.from_numpy(self.replay_buffer["action"])

    def __getitem__(self, idx: int) -> dict:
        return dict_apply(self.sampler.sample_sequence(idx), torch.from_numpy)
