"""Record policy rollouts as datasets: LeRobotDataset v3.0 (lerobot_v3) or the original BAC layout
(legacy_format). Both writers share add_frame() / save_episode() / finalize() and commit episodes
atomically, so an interrupted collection keeps every finished episode and resumes after it."""

from diffusion_policy.data_collection.episode_buffer import DEFAULT_FEATURES, make_features
from diffusion_policy.data_collection.legacy_format import LegacyDatasetWriter, read_legacy_dataset
from diffusion_policy.data_collection.lerobot_v3 import (
    LeRobotDatasetContents,
    LeRobotDatasetWriter,
    read_lerobot_dataset,
)

__all__ = [
    "DEFAULT_FEATURES",
    "LeRobotDatasetContents",
    "LeRobotDatasetWriter",
    "LegacyDatasetWriter",
    "make_features",
    "read_legacy_dataset",
    "read_lerobot_dataset",
]
