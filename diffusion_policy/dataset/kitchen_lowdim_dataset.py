"""Franka-kitchen dataset from the BET relay-kitchen arrays: obs (60,), action (9,)."""

import pathlib

import numpy as np
import torch

from diffusion_policy.common.pytorch_util import dict_apply
from diffusion_policy.common.replay_buffer import ReplayBuffer
from diffusion_policy.dataset.base_dataset import BaseLowdimDataset, ReplaySequenceMixin
from diffusion_policy.model.common.normalizer import LinearNormalizer

KITCHEN_FILES = ("observations_seq.npy", "actions_seq.npy", "existence_mask.npy")
KITCHEN_RANGE_EPS = 5e-2  # dims that barely move are shifted, not blown up to [-1, 1]


class KitchenLowdimDataset(ReplaySequenceMixin, BaseLowdimDataset):
    """Reads `dataset_dir/{observations_seq (E, T, 60), actions_seq (E, T, 9), existence_mask (E, T)}.npy`;
    episode i is the first sum(existence_mask[i]) steps of row i."""

    def __init__(
        self,
        dataset_dir: str,
        horizon: int = 1,
        pad_before: int = 0,
        pad_after: int = 0,
        seed: int = 42,
        val_ratio: float = 0.0,
    ):
        super().__init__()
        directory = pathlib.Path(dataset_dir).expanduser()
        missing = [name for name in KITCHEN_FILES if not (directory / name).is_file()]
        if missing:
            raise FileNotFoundError(f"kitchen dataset dir {directory} lacks {missing} (download data/kitchen)")
        observations, actions, masks = (np.load(directory / name) for name in KITCHEN_FILES)
        replay_buffer = ReplayBuffer.create_empty_numpy()
        for i in range(len(masks)):
            length = int(masks[i].sum())
            replay_buffer.add_episode(
                {
                    "obs": observations[i, :length].astype(np.float32),
                    "action": actions[i, :length].astype(np.float32),
                }
            )
        self._init_sequences(replay_buffer, horizon, pad_before, pad_after, seed, val_ratio)

    def get_normalizer(self, mode: str = "limits", **kwargs) -> LinearNormalizer:
        data = {"obs": self.replay_buffer["obs"], "action": self.replay_buffer["action"]}
        kwargs.setdefault("range_eps", KITCHEN_RANGE_EPS)
        normalizer = LinearNormalizer()
        normalizer.fit(data=data, last_n_dims=1, mode=mode, **kwargs)
        return normalizer

    def get_all_actions(self) -> torch.Tensor:
        return torch.from_numpy(self.replay_buffer["action"])

    def __getitem__(self, idx: int) -> dict:
        return dict_apply(self.sampler.sample_sequence(idx), torch.from_numpy)
