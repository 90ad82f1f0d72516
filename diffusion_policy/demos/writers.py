"""Writers for the dataset formats of the original Diffusion Policy data.

- robomimic hdf5 (robosuite tasks):
      data                      attrs: env_args (JSON env_meta), total (steps over all demos)
      data/demo_<i>             attrs: num_samples, model_file (scene MJCF)
      data/demo_<i>/obs/<key>   (T, D) low-dim or (T, H, W, 3) uint8 images
      data/demo_<i>/{actions (T, Da), states (T, S), rewards (T,), dones (T,)}
      mask/train, mask/valid    byte strings of demo names
- Diffusion Policy replay zarr (Push-T, Block Pushing): data/<key> (N, ...), meta/episode_ends (E,).

Both write to a temporary path next to the target and rename it into place, and record the
expert's collection statistics (`metadata`) as attributes: hdf5 `data.attrs`, zarr root attrs.
"""

import json
import os
import shutil

import h5py
import numpy as np

from diffusion_policy.common.replay_buffer import ReplayBuffer


def _prepare_output(path: str) -> str:
    path = os.path.expanduser(str(path))
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return path


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def split_train_valid(n_demos: int, val_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """Demo indices for mask/train and mask/valid: a seeded random `val_ratio` share is held out
    (at least one demo when val_ratio > 0 and there are two or more demos)."""
    n_valid = round(n_demos * val_ratio)
    if val_ratio > 0 and n_demos > 1:
        n_valid = min(max(n_valid, 1), n_demos - 1)
    valid = set(np.random.default_rng(seed).permutation(n_demos)[:n_valid].tolist())
    return [i for i in range(n_demos) if i not in valid], sorted(valid)


def write_robomimic_hdf5(
    path: str,
    episodes: list[dict],
    env_meta: dict,
    metadata: dict | None = None,
    val_ratio: float = 0.1,
    seed: int = 0,
) -> str:
    """Write episodes (dicts of obs {key: (T, ...)}, actions, states, rewards, dones, model_file)
    as a robomimic hdf5 at `path`; returns the path."""
    if not episodes:
        raise ValueError("no episodes to write: the expert succeeded in none of its attempts")
    path = _prepare_output(path)
    tmp_path = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp_path, "w") as file:
            data = file.create_group("data")
            for i, episode in enumerate(episodes):
                demo = data.create_group(f"demo_{i}")
                demo.attrs["num_samples"] = len(episode["actions"])
                if "model_file" in episode:
                    demo.attrs["model_file"] = episode["model_file"]
                for key, values in episode["obs"].items():
                    is_image = values.dtype == np.uint8 and values.ndim == 4
                    demo.create_dataset(f"obs/{key}", data=values, compression="gzip" if is_image else None)
                for key in ("actions", "states", "rewards", "dones"):
                    demo.create_dataset(key, data=episode[key])
            data.attrs["total"] = int(sum(len(e["actions"]) for e in episodes))
            data.attrs["env_args"] = json.dumps(env_meta)
            for key, value in (metadata or {}).items():
                data.attrs[key] = value
            train, valid = split_train_valid(len(episodes), val_ratio, seed)
            file.create_dataset("mask/train", data=np.array([f"demo_{i}" for i in train], dtype="S"))
            file.create_dataset("mask/valid", data=np.array([f"demo_{i}" for i in valid], dtype="S"))
        os.replace(tmp_path, path)
    except BaseException:
        _remove(tmp_path)
        raise
    return path


def write_replay_zarr(
    path: str,
    episodes: list[dict],
    metadata: dict | None = None,
    compressors: dict | None = None,
) -> str:
    """Write episodes ({key: (T, ...)} with one T per episode) as a Diffusion Policy replay zarr
    (a directory, or a zip file if `path` ends with .zip); returns the path."""
    if not episodes:
        raise ValueError("no episodes to write: the expert succeeded in none of its attempts")
    path = _prepare_output(path)
    buffer = ReplayBuffer.create_empty_numpy()
    for episode in episodes:
        buffer.add_episode(episode)
    return buffer.save_to_path(path, compressors=compressors, attrs=metadata)
