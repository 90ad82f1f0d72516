"""Dataset interfaces the training loop reads, and the replay-buffer sequence logic they share.

Lowdim items:  {'obs': (T, Do), 'action': (T, Da)} float32 tensors.
Image items:   {'obs': {key: (T, 3, H, W) in [0, 1] or (T, D)}, 'action': (T, Da)}.
"""

import copy

import numpy as np
import torch
from torch.utils.data import Dataset

from diffusion_policy.common.replay_buffer import ReplayBuffer
from diffusion_policy.common.sampler import SequenceSampler, downsample_mask, get_val_mask
from diffusion_policy.model.common.normalizer import LinearNormalizer


class BaseDataset(Dataset):
    """Interface of every training dataset: samples, normalizer, validation split."""

    def get_validation_dataset(self) -> "BaseDataset":
        raise NotImplementedError

    def get_normalizer(self, mode: str = "limits", **kwargs) -> LinearNormalizer:
        raise NotImplementedError

    def get_all_actions(self) -> torch.Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, idx: int) -> dict:
        raise NotImplementedError


class BaseLowdimDataset(BaseDataset):
    """Low-dimensional (state) datasets: items {'obs': (T, Do), 'action': (T, Da)}."""


class BaseImageDataset(BaseDataset):
    """Image (+ low-dim) datasets: items {'obs': {key: (T, ...)}, 'action': (T, Da)}."""


class ReplaySequenceMixin:
    """Train/validation episode split of a ReplayBuffer, and a SequenceSampler over the train part.

    Call `_init_sequences(...)` once the replay buffer is loaded; `get_validation_dataset` returns
    a shallow copy that samples the validation episodes of the same buffer.
    """

    replay_buffer: ReplayBuffer
    sampler: SequenceSampler

    def _init_sequences(
        self,
        replay_buffer: ReplayBuffer,
        horizon: int,
        pad_before: int,
        pad_after: int,
        seed: int,
        val_ratio: float,
        max_train_episodes: int | None = None,
        key_first_k: dict | None = None,
    ) -> None:
        if replay_buffer.n_episodes == 0:
            raise ValueError("the dataset holds no episodes; check the dataset path and its contents")
        val_mask = get_val_mask(n_episodes=replay_buffer.n_episodes, val_ratio=val_ratio, seed=seed)
        train_mask = downsample_mask(~val_mask, max_n=max_train_episodes, seed=seed)
        self.replay_buffer = replay_buffer
        self.horizon = horizon
        self.pad_before = pad_before
        self.pad_after = pad_after
        self.key_first_k = key_first_k
        self.train_mask = train_mask
        self.val_mask = val_mask
        self.sampler = self._make_sampler(train_mask)

    def _make_sampler(self, episode_mask: np.ndarray) -> SequenceSampler:
        return SequenceSampler(
            replay_buffer=self.replay_buffer,
            sequence_length=self.horizon,
            pad_before=self.pad_before,
            pad_after=self.pad_after,
            episode_mask=episode_mask,
            key_first_k=self.key_first_k,
        )

    def get_validation_dataset(self):
        val_set = copy.copy(self)
        val_set.sampler = self._make_sampler(self.val_mask)
        val_set.train_mask = self.val_mask
        return val_set

    def __len__(self) -> int:
        return len(self.sampler)
