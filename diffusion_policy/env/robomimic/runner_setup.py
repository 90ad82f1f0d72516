"""What the robomimic runners share: the env description and the episode list.

With the dataset on disk, the env comes from its env_meta and train episodes start from
`data/demo_{i}/states[0]`. Without it, a task named by the path (…/lift/ph/low_dim.hdf5) or by
`task_name` runs on robosuite defaults, test episodes only.
"""

import logging
import os

import h5py
import numpy as np

from diffusion_policy.env.robomimic.env_meta import TASK_ENV_NAMES, default_env_meta, infer_task_name, read_env_meta
from diffusion_policy.env_runner.base_runner import EpisodeSpec

logger = logging.getLogger(__name__)


def resolve_env_meta(dataset_path: str, task_name: str | None, n_train: int) -> tuple[dict, bool, int]:
    """(env_meta, dataset found, n_train to run): n_train is 0 when the dataset is missing."""
    if os.path.isfile(dataset_path):
        return read_env_meta(dataset_path), True, n_train
    task = task_name or infer_task_name(dataset_path)
    if task is None:
        raise FileNotFoundError(
            f"robomimic dataset not found: {dataset_path}; download it there (e.g. "
            f"data/robomimic/datasets/lift/ph/low_dim.hdf5) or pass task_name (one of {sorted(TASK_ENV_NAMES)})"
        )
    if n_train > 0:  # expected for a bundled checkpoint evaluated without its training data
        logger.info("%s is not here: '%s' runs on robosuite's defaults, test episodes only (train episodes "
                    "start from the dataset's initial states)", dataset_path, task)
    return default_env_meta(task), False, 0


def read_train_init_states(dataset_path: str, demo_indices: list[int]) -> list[np.ndarray]:
    """`data/demo_{i}/states[0]` for each demo index: the flat MuJoCo state a demo starts from."""
    states = []
    with h5py.File(dataset_path, "r") as f:
        for idx in demo_indices:
            name = f"data/demo_{idx}/states"
            if name not in f:
                raise ValueError(
                    f"{dataset_path} has no {name} ({len(f['data'])} demos); lower n_train or train_start_idx"
                )
            states.append(np.array(f[name][0]))
    return states


def robomimic_episodes(
    dataset_path: str | None,
    n_train: int,
    n_train_vis: int,
    train_start_idx: int,
    n_test: int,
    n_test_vis: int,
    test_start_seed: int,
) -> list[EpisodeSpec]:
    """Train episodes (seed = demo index, reset to its first state), then seeded test episodes."""
    demo_indices = [train_start_idx + i for i in range(n_train)]
    init_states = read_train_init_states(dataset_path, demo_indices) if n_train > 0 else []
    episodes = [
        EpisodeSpec("train/", idx, {"init_state": state}, record_video=i < n_train_vis)
        for i, (idx, state) in enumerate(zip(demo_indices, init_states))
    ]
    episodes += [EpisodeSpec("test/", test_start_seed + i, None, record_video=i < n_test_vis) for i in range(n_test)]
    return episodes
