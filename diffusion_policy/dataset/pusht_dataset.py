"""Push-T keypoint dataset: obs = 9 block keypoints (x, y) flattened + agent position -> (20,)."""

import numpy as np
import torch

from diffusion_policy.common.pytorch_util import dict_apply
from diffusion_policy.common.replay_buffer import ReplayBuffer
from diffusion_policy.dataset.base_dataset import BaseLowdimDataset, ReplaySequenceMixin
from diffusion_policy.model.common.normalizer import LinearNormalizer


class PushTLowdimDataset(ReplaySequenceMixin, BaseLowdimDataset):
    """Reads `data/{keypoint (N, 9, 2), state (N, 5), action (N, 2)}` of a Push-T replay zarr."""

    def __init__(
        self,
        zarr_path: str,
        horizon: int = 1,
        pad_before: int = 0,
        pad_after: int = 0,
        obs_key: str = "keypoint",
        state_key: str = "state",
        action_key: str = "action",
        seed: int = 42,
        val_ratio: float = 0.0,
        max_train_episodes: int | None = None,
    ):
        super().__init__()
        replay_buffer = ReplayBuffer.copy_from_path(zarr_path, keys=[obs_key, state_key, action_key])
        self.obs_key = obs_key
        self.state_key = state_key
        self.action_key = action_key
        self._init_sequences(replay_buffer, horizon, pad_before, pad_after, seed, val_ratio, max_train_episodes)

    def _sample_to_data(self, sample) -> dict:
        keypoint = sample[self.obs_key][:]  # (T, 9, 2)
        agent_pos = sample[self.state_key][:, :2]  # (T, 2): state = agent x, y, block x, y, angle
        obs = np.concatenate([keypoint.reshape(len(keypoint), -1), agent_pos], axis=-1)
        return {"obs": obs.astype(np.float32), "action": sample[self.action_key][:].astype(np.float32)}

    def get_normalizer(self, mode: str = "limits", **kwargs) -> LinearNormalizer:
        normalizer = LinearNormalizer()
        normalizer.fit(data=self._sample_to_data(self.replay_buffer), last_n_dims=1, mode=mode, **kwargs)
        return normalizer

    def get_all_actions(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.replay_buffer[self.action_key]))

    def __getitem__(self, idx: int) -> dict:
        data = self._sample_to_data(self.sampler.sample_sequence(idx))
        return dict_apply(data, torch.from_numpy)
