"""Push-T image dataset: obs = {'image': (T, 3, 96, 96) in [0, 1], 'agent_pos': (T, 2)}."""

import numpy as np
import torch

from diffusion_policy.common.normalize_util import get_image_range_normalizer
from diffusion_policy.common.pytorch_util import dict_apply
from diffusion_policy.common.replay_buffer import ReplayBuffer
from diffusion_policy.dataset.base_dataset import BaseImageDataset, ReplaySequenceMixin
from diffusion_policy.model.common.normalizer import LinearNormalizer


class PushTImageDataset(ReplaySequenceMixin, BaseImageDataset):
    """Reads `data/{img (N, 96, 96, 3) uint8, state (N, 5), action (N, 2)}` of a Push-T replay zarr."""

    def __init__(
        self,
        zarr_path: str,
        horizon: int = 1,
        pad_before: int = 0,
        pad_after: int = 0,
        seed: int = 42,
        val_ratio: float = 0.0,
        max_train_episodes: int | None = None,
    ):
        super().__init__()
        replay_buffer = ReplayBuffer.copy_from_path(zarr_path, keys=["img", "state", "action"])
        self._init_sequences(replay_buffer, horizon, pad_before, pad_after, seed, val_ratio, max_train_episodes)

    def get_normalizer(self, mode: str = "limits", **kwargs) -> LinearNormalizer:
        normalizer = LinearNormalizer()
        data = {
            "action": np.asarray(self.replay_buffer["action"]),
            "agent_pos": np.asarray(self.replay_buffer["state"])[:, :2],
        }
        normalizer.fit(data=data, last_n_dims=1, mode=mode, **kwargs)
        normalizer["image"] = get_image_range_normalizer()
        return normalizer

    def get_all_actions(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.replay_buffer["action"]))

    def _sample_to_data(self, sample) -> dict:
        image = np.moveaxis(sample["img"][:], -1, 1).astype(np.float32) / 255.0  # (T, 3, 96, 96)
        agent_pos = sample["state"][:, :2].astype(np.float32)  # state = agent x, y, block x, y, angle
        return {"obs": {"image": image, "agent_pos": agent_pos}, "action": sample["action"][:].astype(np.float32)}

    def __getitem__(self, idx: int) -> dict:
        return dict_apply(self._sample_to_data(self.sampler.sample_sequence(idx)), torch.from_numpy)
