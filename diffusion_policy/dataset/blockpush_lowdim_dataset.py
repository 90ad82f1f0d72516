"""Block-pushing (multimodal push) dataset: obs (16,), action (2,) from a replay zarr."""

import numpy as np
import torch

from diffusion_policy.common.normalize_util import array_to_stats
from diffusion_policy.common.pytorch_util import dict_apply
from diffusion_policy.common.replay_buffer import ReplayBuffer
from diffusion_policy.dataset.base_dataset import BaseLowdimDataset, ReplaySequenceMixin
from diffusion_policy.model.common.normalizer import LinearNormalizer, SingleFieldLinearNormalizer

EEF_TARGET_DIMS = slice(8, 10)  # effector_target_translation (x, y) in the flattened obs
# obs dims that are x / y coordinates; the others are angles. The manual normalizer shares one
# scale per group so that x and y positions stay comparable.
X_DIMS = [0, 3, 6, 8, 10, 13]
Y_DIMS = [1, 4, 7, 9, 11, 14]


def _grouped_range_normalizer(stat: dict, groups: list) -> SingleFieldLinearNormalizer:
    """Map each group's overall [min, max] to [-1, 1] with one scale/offset per group."""
    scale = np.ones_like(stat["max"])
    offset = np.zeros_like(stat["max"])
    for group in groups:
        group_min = stat["min"][group].min()
        group_max = stat["max"][group].max()
        scale[group] = 2 / (group_max - group_min)
        offset[group] = -1 - scale[group] * group_min
    return SingleFieldLinearNormalizer.create_manual(scale, offset, stat)


class BlockPushLowdimDataset(ReplaySequenceMixin, BaseLowdimDataset):
    def __init__(
        self,
        zarr_path: str,
        horizon: int = 1,
        pad_before: int = 0,
        pad_after: int = 0,
        obs_key: str = "obs",
        action_key: str = "action",
        obs_eef_target: bool = True,
        use_manual_normalizer: bool = False,
        seed: int = 42,
        val_ratio: float = 0.0,
    ):
        super().__init__()
        replay_buffer = ReplayBuffer.copy_from_path(zarr_path, keys=[obs_key, action_key])
        self.obs_key = obs_key
        self.action_key = action_key
        self.obs_eef_target = obs_eef_target
        self.use_manual_normalizer = use_manual_normalizer
        self._init_sequences(replay_buffer, horizon, pad_before, pad_after, seed, val_ratio)

    def _sample_to_data(self, sample) -> dict:
        obs = np.array(sample[self.obs_key], dtype=np.float32)  # copy: never edit the buffer
        if not self.obs_eef_target:
            obs[:, EEF_TARGET_DIMS] = 0
        return {"obs": obs, "action": np.asarray(sample[self.action_key], dtype=np.float32)}

    def get_normalizer(self, mode: str = "limits", **kwargs) -> LinearNormalizer:
        data = self._sample_to_data(self.replay_buffer)
        normalizer = LinearNormalizer()
        if not self.use_manual_normalizer:
            normalizer.fit(data=data, last_n_dims=1, mode=mode, **kwargs)
            return normalizer
        stat = array_to_stats(data["obs"])
        is_x = np.zeros(stat["max"].shape, dtype=bool)
        is_y = np.zeros_like(is_x)
        is_x[X_DIMS] = True
        is_y[Y_DIMS] = True
        normalizer["obs"] = _grouped_range_normalizer(stat, [is_x, is_y, ~(is_x | is_y)])
        normalizer["action"] = SingleFieldLinearNormalizer.create_fit(
            data["action"], last_n_dims=1, mode=mode, **kwargs
        )
        return normalizer

    def get_all_actions(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.replay_buffer[self.action_key]))

    def __getitem__(self, idx: int) -> dict:
        data = self._sample_to_data(self.sampler.sample_sequence(idx))
        return dict_apply(data, torch.from_numpy)
