"""Generate scripted demonstration datasets: run the expert on seeds seed, seed + 1, ... and keep
the successful episodes until `num_episodes` are collected or `max_attempts` are used up.

Episode `i` of the attempts uses env seed `seed + i` for both the scene and the expert's own
variation, so any kept episode can be reproduced from its seed (stored in the metadata).
"""

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

TASKS = ("lift", "can", "square", "pusht", "block_pushing")
# where the task configs read each dataset (lift with --images: image.hdf5)
DEFAULT_OUTPUTS = {
    "lift": "data/robomimic/datasets/lift/ph/low_dim.hdf5",
    "can": "data/robomimic/datasets/can/ph/low_dim.hdf5",
    "square": "data/robomimic/datasets/square/ph/low_dim.hdf5",
    "pusht": "data/pusht/pusht_cchi_v7_replay.zarr",
    "block_pushing": "data/block_pushing/multimodal_push_seed.zarr",
}
DEFAULT_MAX_STEPS = {"lift": 200, "can": 400, "square": 400, "pusht": 300, "block_pushing": 350}


@dataclass
class CollectionStats:
    attempts: int = 0
    successes: int = 0
    seconds: float = 0.0
    kept_seeds: list = field(default_factory=list)
    episode_lengths: list = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0

    def metadata(self, task: str, seed: int) -> dict:
        """What the dataset files record about their origin."""
        return {
            "generator": f"diffusion_policy.demos scripted {task} expert",
            "expert_success_rate": float(self.success_rate),
            "expert_attempts": int(self.attempts),
            "expert_successes": int(self.successes),
            "seed": int(seed),
            "episode_seeds": [int(s) for s in self.kept_seeds],
        }

    def summary(self) -> str:
        lengths = np.asarray(self.episode_lengths)
        length_text = (
            f", episode length mean {lengths.mean():.1f} (min {lengths.min()}, max {lengths.max()})"
            if len(lengths)
            else ""
        )
        return (
            f"expert success rate {self.success_rate:.3f} ({self.successes}/{self.attempts} attempts) "
            f"in {self.seconds:.1f} s{length_text}"
        )


def collect_episodes(
    run_episode: Callable[[int], dict | None],
    num_episodes: int,
    max_attempts: int,
    seed: int,
    desc: str = "demos",
) -> tuple[list[dict], CollectionStats]:
    """Call `run_episode(env_seed)` for env_seed = seed, seed + 1, ... and keep the non-None
    episodes; stops at `num_episodes` kept or `max_attempts` tried."""
    episodes, stats = [], CollectionStats()
    start = time.perf_counter()
    with tqdm(total=num_episodes, desc=desc, leave=False) as progress:
        for attempt in range(max_attempts):
            if len(episodes) >= num_episodes:
                break
            env_seed = seed + attempt
            episode = run_episode(env_seed)
            stats.attempts += 1
            if episode is not None:
                episodes.append(episode)
                stats.successes += 1
                stats.kept_seeds.append(env_seed)
                stats.episode_lengths.append(len(episode["actions"] if "actions" in episode else episode["action"]))
                progress.update(1)
            progress.set_postfix(success_rate=f"{stats.success_rate:.2f}")
    stats.seconds = time.perf_counter() - start
    return episodes, stats


def _lift_source(images: bool, max_steps: int):
    """(run_episode, writer, env_meta) for robosuite Lift."""
    from diffusion_policy.demos.lift_expert import LiftExpert, collect_lift_episode
    from diffusion_policy.demos.robomimic_recording import (
        SINGLE_ARM_LOWDIM_SHAPES,
        RobosuiteRecorder,
        robomimic_env_meta,
    )
    from diffusion_policy.env.robomimic.env_meta import TASK_CAMERAS

    env_meta = robomimic_env_meta("lift", images=images)
    camera_names, side = TASK_CAMERAS["lift"]
    recorder = RobosuiteRecorder(
        env_meta, SINGLE_ARM_LOWDIM_SHAPES, camera_names=camera_names if images else (), image_side=side
    )
    expert = LiftExpert()
    return (lambda s: collect_lift_episode(recorder, expert, s, max_steps)), recorder.close, env_meta


def _placing_source(task: str, images: bool, max_steps: int):
    """(run_episode, writer, env_meta) for a robosuite task whose expert is given a place in the scene
    that the observation does not hold: Can (its bin quadrant), Square (the peg)."""
    from diffusion_policy.demos.robomimic_recording import RobosuiteRecorder, collect_robosuite_episode, robomimic_env_meta
    from diffusion_policy.env.robomimic.env_meta import TASK_CAMERAS

    if task == "can":
        from diffusion_policy.demos.can_expert import CAN_LOWDIM_SHAPES, CanExpert, can_goal

        shapes, make_expert = CAN_LOWDIM_SHAPES, lambda recorder: CanExpert(can_goal(recorder))
    else:
        from diffusion_policy.demos.square_expert import SQUARE_LOWDIM_SHAPES, SquareExpert, square_peg

        shapes, make_expert = SQUARE_LOWDIM_SHAPES, lambda recorder: SquareExpert(square_peg(recorder))
    env_meta = robomimic_env_meta(task, images=images)
    camera_names, side = TASK_CAMERAS[task]
    recorder = RobosuiteRecorder(env_meta, shapes, camera_names=camera_names if images else (), image_side=side)
    recorder.reset(0)  # builds the scene, which gives the place
    expert = make_expert(recorder)
    return (lambda s: collect_robosuite_episode(recorder, expert, s, max_steps)), recorder.close, env_meta


def _pusht_source(images: bool, max_steps: int):
    from diffusion_policy.demos.pusht_expert import PushTExpert, collect_pusht_episode
    from diffusion_policy.env.pusht.pusht_image_env import PushTImageEnv
    from diffusion_policy.env.pusht.pusht_keypoints_env import PushTKeypointsEnv

    env = PushTImageEnv(render_size=96) if images else PushTKeypointsEnv()
    expert = PushTExpert()
    return (lambda s: collect_pusht_episode(env, expert, s, max_steps)), env.close, None


def _block_pushing_source(images: bool, max_steps: int, style: str = "random", execution_noise: float = 0.0):
    if images:
        raise ValueError("--images is not available for block_pushing: its dataset is state-only (obs (16,))")
    from diffusion_policy.demos.block_pushing_expert import BlockPushExpert, collect_block_push_episode
    from diffusion_policy.env.block_pushing.block_pushing_multimodal import BlockPushMultimodal

    env = BlockPushMultimodal()
    expert = BlockPushExpert(style=style)
    return (lambda s: collect_block_push_episode(env, expert, s, max_steps, execution_noise)), env.close, None


SOURCES = {"lift": _lift_source, "can": functools.partial(_placing_source, "can"),
           "square": functools.partial(_placing_source, "square"), "pusht": _pusht_source, "block_pushing": _block_pushing_source}


def generate_demos(
    task: str,
    output: str,
    num_episodes: int,
    seed: int = 0,
    images: bool = False,
    max_attempts: int | None = None,
    max_steps: int | None = None,
    val_ratio: float = 0.1,
    expert_style: str = "random",
    execution_noise: float = 0.0,
) -> CollectionStats:
    """Collect `num_episodes` successful expert episodes of `task` and write them to `output` in the
    format of the original dataset (robomimic hdf5 for lift/can/square, replay zarr for pusht/block_pushing).
    `expert_style` and `execution_noise` are options of the block pushing expert (see
    `block_pushing_expert`)."""
    from diffusion_policy.demos.writers import write_replay_zarr, write_robomimic_hdf5

    if task not in SOURCES:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if num_episodes < 1:
        raise ValueError(f"--num_episodes must be at least 1, got {num_episodes}")
    max_attempts = max_attempts if max_attempts is not None else 2 * num_episodes + 10
    if max_attempts < 1:
        raise ValueError(f"--max_attempts must be at least 1, got {max_attempts}")
    expert_options = {}
    if expert_style != "random" or execution_noise:
        if task != "block_pushing":
            raise ValueError(f"--expert_style and --execution_noise apply to block_pushing only, not {task}")
        expert_options = {"style": expert_style, "execution_noise": float(execution_noise)}
    run_episode, close, env_meta = SOURCES[task](images, max_steps or DEFAULT_MAX_STEPS[task], **expert_options)
    try:
        episodes, stats = collect_episodes(run_episode, num_episodes, max_attempts, seed, desc=f"{task} demos")
    finally:
        close()
    if not episodes:
        raise RuntimeError(
            f"the {task} expert succeeded in none of {stats.attempts} attempts; nothing written to {output}"
        )
    metadata = {**stats.metadata(task, seed), **{f"expert_{k}": v for k, v in expert_options.items()}}
    if task in ("lift", "can", "square"):
        metadata["episode_seeds"] = np.asarray(metadata["episode_seeds"], dtype=np.int64)
        write_robomimic_hdf5(output, episodes, env_meta, metadata, val_ratio=val_ratio, seed=seed)
    else:
        write_replay_zarr(output, episodes, metadata)
    return stats
