"""Scripted experts that generate demonstration datasets in the original Diffusion Policy formats:
robomimic hdf5 for robosuite Lift, Can and Square, replay zarr for Push-T and Block Pushing (see `generate`)."""

from diffusion_policy.demos.generate import DEFAULT_OUTPUTS, TASKS, CollectionStats, collect_episodes, generate_demos
from diffusion_policy.demos.writers import write_replay_zarr, write_robomimic_hdf5

__all__ = [
    "DEFAULT_OUTPUTS",
    "TASKS",
    "CollectionStats",
    "collect_episodes",
    "generate_demos",
    "write_replay_zarr",
    "write_robomimic_hdf5",
]
