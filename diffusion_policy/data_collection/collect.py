"""Roll out a checkpoint's policy, plain or BAC-accelerated, and save every episode as a dataset.

    collect_rollouts("checkpoints/latest.ckpt", "datas/lerobot/pusht", CacheConfig(mode="threshold"),
                     CollectSettings(num_episodes=100))

What is recorded. One dataset frame per env step t (the env's control rate, e.g. 20 Hz for
robomimic): `observation.state` (the lowdim obs vector, or the image task's low-dim obs keys
concatenated in key order), `observation.images.<camera>` (image tasks: each camera obs key,
`<camera>_image` -> `<camera>`; lowdim tasks: `observation.images.render`, the env's `render()`
view, unless no_video), the `action` the env executed, and `next.reward` / `next.done` /
`next.success` of that step (done on an episode's last frame). Success per step is
`info["is_success"]` where the env reports it, Kitchen: >= 4 tasks completed (the demonstrations'
count), otherwise `terminated` (Block Pushing terminates with both blocks in targets).

Episodes. Episode i of a dataset runs with env seed `seed + i`; chunks of `n_envs` episodes, from
episode 0, go through the task's env runner (the one rollout loop), and the sampling noise of each
chunk comes from a generator seeded with `seed + <its first index>`. The writer commits an episode
only when it is complete (see lerobot_v3.py); `resume=True` re-runs the interrupted chunk and saves
its uncommitted episodes, so a resumed collection equals an uninterrupted one frame for frame (the
settings that decide this, n_envs included, must match: see CollectionRecord).

Per-episode metadata: seed, success, total/max reward, policy mode and cache parameters
(CacheConfig.describe()), inference time per predict_action call in the episode's chunk
(mean/median ms, batch size), denoising steps, checkpoint path and sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tqdm
from gymnasium import spaces

from diffusion_policy.acceleration import CacheConfig, apply_cache, update_steps_for
from diffusion_policy.common.checkpoint import load_checkpoint, weights_fingerprint
from diffusion_policy.common.files import sha256_of_file
from diffusion_policy.common.threads import set_threads
from diffusion_policy.common.validation import check_device, check_output_dir
from diffusion_policy.data_collection.episode_buffer import make_features
from diffusion_policy.data_collection.legacy_format import LegacyDatasetWriter
from diffusion_policy.data_collection.lerobot_v3 import LeRobotDatasetWriter
from diffusion_policy.data_collection.storage import dir_has_content, read_json, write_json_atomic
from diffusion_policy.env_runner.base_runner import EnvRunner, EpisodeSpec
from diffusion_policy.env_runner.evaluate import task_name_of
from diffusion_policy.env_runner.factory import make_env_runner

logger = logging.getLogger(__name__)

WRITERS = {"lerobot": LeRobotDatasetWriter, "legacy": LegacyDatasetWriter}
RENDER_CAMERA = "render"  # observation.images.render: the rendered view of a lowdim task
KITCHEN_TASKS_FOR_SUCCESS = 4  # the demonstrations complete 4 of the 7 tasks (the original's p_4)

EPISODE_FIELDS = {
    "seed": "int64",
    "success": "bool",
    "total_reward": "float64",
    "max_reward": "float64",
    "policy_mode": "string",
    "policy_cache": "string",  # CacheConfig.describe() as JSON
    "inference_ms_mean": "float64",
    "inference_ms_median": "float64",
    "inference_batch_size": "int64",
    "num_inference_steps": "int64",
    "checkpoint": "string",
    "checkpoint_sha256": "string",
}


# ---------------------------------------------------------------------------------------------
# tasks


def success_from_info_or_terminated(frames: dict) -> np.ndarray:
    """(T,) bool: info["is_success"] per step when the env reports it, else `terminated`."""
    return frames["is_success"] if "is_success" in frames else frames["terminated"]


def kitchen_success(frames: dict) -> np.ndarray:
    """(T,) bool: at least KITCHEN_TASKS_FOR_SUCCESS tasks done (the reward counts completions)."""
    return np.cumsum(frames["reward"]) >= KITCHEN_TASKS_FOR_SUCCESS


@dataclass(frozen=True)
class TaskProfile:
    robot_type: str
    description: str  # the dataset's task string
    success: Callable[[dict], np.ndarray] = success_from_info_or_terminated


TASK_PROFILES = {
    "pusht": TaskProfile("pusht", "Push the T-shaped block onto the T-shaped target."),
    "lift": TaskProfile("panda", "Lift the cube."),
    "can": TaskProfile("panda", "Pick up the can and place it in its bin."),
    "square": TaskProfile("panda", "Pick up the square nut and place it onto the square peg."),
    "tool_hang": TaskProfile("panda", "Insert the hook into the base, then hang the tool on the hook."),
    "transport": TaskProfile("panda", "Hand the hammer from one arm to the other and place it in the bin."),
    "blockpush": TaskProfile("xarm", "Push each of the two blocks into a different target square."),
    "kitchen": TaskProfile(
        "franka",
        "Complete kitchen tasks: open the microwave, move the kettle, turn on the burners, flip the "
        "light switch, open the cabinets.",
        kitchen_success,
    ),
}


def task_profile(cfg) -> TaskProfile:
    """The profile of the checkpoint's task (robomimic: task.task_name; others: task.name's prefix)."""
    name = str(cfg.task.get("task_name") or task_name_of(cfg))
    for key, profile in TASK_PROFILES.items():
        if name == key or name.startswith(f"{key}_"):
            return profile
    logger.warning("task %r has no robot type / description here; the dataset says 'unknown'", name)
    return TaskProfile("unknown", name)


# ---------------------------------------------------------------------------------------------
# settings and results


@dataclass
class CollectSettings:
    num_episodes: int
    seed: int = 0  # episode i runs with env seed seed + i
    fps: int | None = None  # dataset fps; default the env's control rate
    no_video: bool = False  # store no video stream at all (image tasks: no camera observations)
    resume: bool = False
    format: str = "lerobot"  # "lerobot" (LeRobotDataset v3.0) | "legacy" (the original BAC layout)
    n_envs: int | None = None  # episodes run in parallel; default the checkpoint's, else #CPUs
    max_steps: int | None = None  # env steps per episode; default the checkpoint's
    num_inference_steps: int | None = None  # denoising steps; default the checkpoint's
    threads: int | None = None  # torch threads; default common.threads.default_threads

    def check(self) -> None:
        """Raise ValueError naming the first bad setting."""
        if self.num_episodes < 1:
            raise ValueError(f"--num_episodes must be >= 1, got {self.num_episodes}")
        if self.format not in WRITERS:
            raise ValueError(f"--format must be one of {sorted(WRITERS)}, got {self.format!r}")
        for name in ("fps", "n_envs", "max_steps", "num_inference_steps", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")


@dataclass
class CollectSummary:
    output_dir: Path
    task: str
    fps: int
    episodes_before: int  # committed before this run (resume)
    episodes_written: int
    successes: int  # among the episodes written by this run
    frames_written: int
    seconds: float


# ---------------------------------------------------------------------------------------------
# what defines a dataset: stored at creation, compared on resume

RECORD_PATH = "meta/bac_collection.json"


@dataclass(frozen=True)
class CollectionRecord:
    """Everything that decides what a collected episode looks like. A resumed collection must
    match it field for field, or its episodes would not come from the same distribution."""

    checkpoint_fingerprint: str  # checkpoint.weights_fingerprint of the (uncached) policy
    task: str
    num_inference_steps: int
    noise_scheduler: str
    cache: dict  # CacheConfig.describe() without file paths
    update_steps_sha256: str  # the per-block update steps the cache runs (schedule content, not its path)
    fps: int
    max_steps: int
    n_envs: int  # episodes sampled together: a chunk's noise is drawn for all of them at once
    n_obs_steps: int
    n_action_steps: int
    observation_keys: list
    cameras: list
    seed: int
    format: str

    def first_difference(self, stored: dict) -> str | None:
        """'field: stored X, this run Y' for the first field that differs, else None."""
        mine = dataclasses.asdict(self)
        for name, value in mine.items():
            if json.loads(json.dumps(value)) != stored.get(name, "<missing>"):
                return f"{name}: the dataset has {stored.get(name, '<missing>')!r}, this run {value!r}"
        return None


def collection_record(policy, cfg, cache_config: CacheConfig, runner: EnvRunner, layout: "FrameLayout", fps: int,
                      settings: "CollectSettings") -> CollectionRecord:
    steps = update_steps_for(policy, cache_config)
    obs_keys = cfg.task.env_runner.get("obs_keys") or list(cfg.get("shape_meta", {}).get("obs", {}).keys()) or ["obs"]
    return CollectionRecord(
        checkpoint_fingerprint=weights_fingerprint(policy),
        task=task_name_of(cfg),
        cache={k: v for k, v in cache_config.describe().items() if k != "optimal_steps_dir"},
        update_steps_sha256=hashlib.sha256(json.dumps(steps, sort_keys=True).encode()).hexdigest(),
        num_inference_steps=int(policy.num_inference_steps),
        noise_scheduler=type(policy.noise_scheduler).__name__,
        fps=int(fps),
        max_steps=int(runner.max_steps),
        n_envs=int(runner.n_envs),
        n_obs_steps=int(runner.n_obs_steps),
        n_action_steps=int(runner.n_action_steps),
        observation_keys=[str(k) for k in obs_keys],
        cameras=sorted(layout.cameras),
        seed=int(settings.seed),
        format=settings.format,
    )


def check_or_store_record(output_dir: Path, record: CollectionRecord, resuming: bool) -> None:
    """New dataset: store `record`. Resumed one: refuse (ValueError, one line) unless it matches."""
    path = output_dir / RECORD_PATH
    if not resuming:
        write_json_atomic(path, dataclasses.asdict(record))
        return
    if not path.is_file():
        raise ValueError(f"cannot resume {output_dir}: it has no {RECORD_PATH} (not written by this collector, or "
                         "by an older version), so its settings cannot be checked; choose another --output_dir")
    difference = record.first_difference(read_json(path, "the collection settings of this dataset"))
    if difference:
        raise ValueError(f"cannot resume {output_dir}: it was collected with other settings ({difference}); rerun "
                         "with the dataset's settings or choose another --output_dir")


# ---------------------------------------------------------------------------------------------
# dataset layout from the env's spaces


@dataclass
class FrameLayout:
    """Which recorded observation entries become which dataset features."""

    state_keys: list[str] | None  # dict obs: low-dim keys concatenated; None: the obs is the state
    cameras: dict[str, str]  # camera name -> obs key, or "render" -> the rendered frame
    features: dict


def camera_name(obs_key: str) -> str:
    return obs_key.removesuffix("_image")


def frame_layout(runner: EnvRunner, no_video: bool) -> FrameLayout:
    """Features from the runner's (stacked) spaces; a lowdim task's render size from one reset."""
    envs = runner.vector_env()
    obs_space, action_space = envs.single_observation_space, envs.single_action_space  # (To, ...), (Ta, Da)
    action_dim = action_space.shape[-1]
    if isinstance(obs_space, spaces.Dict):
        state_keys = [key for key, space in obs_space.spaces.items() if len(space.shape) == 2]
        image_keys = [key for key, space in obs_space.spaces.items() if len(space.shape) == 4]
        state_names = [f"{key}_{i}" for key in state_keys for i in range(obs_space[key].shape[-1])]
        cameras = {} if no_video else {camera_name(key): key for key in image_keys}
        sizes = {name: tuple(obs_space[key].shape[-2:]) for name, key in cameras.items()}  # (3, H, W)
        features = make_features(len(state_names), action_dim, sizes, state_names=state_names)
        return FrameLayout(state_keys, cameras, features)
    state_dim = obs_space.shape[-1]
    cameras, sizes = {}, {}
    if not no_video:
        envs.reset(seed=[0] * envs.num_envs)
        frame = np.asarray(envs.call("render")[0])  # (H, W, 3)
        cameras, sizes = {RENDER_CAMERA: RENDER_CAMERA}, {RENDER_CAMERA: frame.shape[:2]}
    return FrameLayout(None, cameras, make_features(state_dim, action_dim, sizes))


def control_rate(runner: EnvRunner) -> float:
    """Env steps per second: the env's metadata render_fps (its control rate)."""
    rate = runner.vector_env().metadata.get("render_fps")
    return float(rate) if rate else float(runner.fps * runner.steps_per_render)


def dataset_fps(runner: EnvRunner, requested: int | None) -> int:
    rate = control_rate(runner)
    if requested is not None:
        if requested != rate:
            logger.warning("the env steps at %g Hz but the dataset is declared %d fps (--fps); "
                           "timestamps are frame_index / %d", rate, requested, requested)
        return requested
    if rate != int(rate):
        logger.warning("the env steps at %g Hz; LeRobot datasets store whole fps, so this one says %d fps "
                       "(pass --fps to choose)", rate, round(rate))
    return max(round(rate), 1)


def episode_frames_to_rows(frames: dict, layout: FrameLayout, success: np.ndarray) -> list[dict]:
    """One writer frame per env step: observation before the action, the action, its outcome."""
    length = len(frames["action"])
    observation = frames["observation"]
    if layout.state_keys is None:
        state = observation[:length]  # (T, Do)
    else:
        state = np.concatenate([observation[key][:length] for key in layout.state_keys], axis=-1)
    images = {
        name: (frames["render"] if key == RENDER_CAMERA else observation[key])[:length]  # (T, H, W, 3)
        for name, key in layout.cameras.items()
    }
    rows = []
    for t in range(length):
        row = {
            "observation.state": state[t],
            "action": frames["action"][t],
            "next.reward": frames["reward"][t],
            "next.done": t == length - 1,
            "next.success": bool(success[t]),
        }
        row.update({f"observation.images.{name}": image[t] for name, image in images.items()})
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# collection


def make_collect_runner(cfg, output_dir: Path, n_envs: int, settings: CollectSettings) -> EnvRunner:
    """The checkpoint's env runner, set up for collection: seeded episodes only (no dataset init
    states), no evaluation videos; collection passes its episodes to each `run`."""
    return make_env_runner(
        cfg, str(output_dir), n_train=0, n_train_vis=0, n_test=n_envs, n_test_vis=0, n_envs=n_envs,
        max_steps=settings.max_steps, skip_video=True,
    )  # fmt: skip


class SeededSampling:
    """The policy, drawing its sampling noise from its own generator seeded with `seed`: a chunk's
    noise depends on its seed alone, not on what used the global RNG before."""

    def __init__(self, policy, seed: int):
        self.policy = policy
        self.generator = torch.Generator(device=policy.device).manual_seed(seed)

    def __getattr__(self, name):  # device, dtype, n_obs_steps, ... come from the policy
        return getattr(self.policy, name)

    def reset(self) -> None:
        self.policy.reset()

    def predict_action(self, obs_dict: dict) -> dict:
        return self.policy.predict_action(obs_dict, generator=self.generator)


def timing_meta(predict_action_s: list[float], batch_size: int) -> dict:
    timing_ms = [s * 1e3 for s in predict_action_s]
    return {
        "inference_ms_mean": statistics.fmean(timing_ms),
        "inference_ms_median": statistics.median(timing_ms),
        "inference_batch_size": batch_size,
    }


def save_episode(writer, frames: dict, layout: FrameLayout, profile: TaskProfile, meta: dict) -> bool:
    """Write one recorded episode (see FrameRecordingWrapper) as dataset frames; returns its success."""
    success = profile.success(frames)  # (T,)
    for row in episode_frames_to_rows(frames, layout, success):
        writer.add_frame(row)
    episode_success = bool(success.any())
    writer.save_episode({
        **meta,
        "success": episode_success,
        "total_reward": float(frames["reward"].sum()),
        "max_reward": float(frames["reward"].max()),
    })  # fmt: skip
    return episode_success


def collect_rollouts(
    checkpoint,
    output_dir,
    cache_config: CacheConfig,
    settings: CollectSettings,
    device: str = "cpu",
    trust_checkpoint: bool = False,
    progress: bool = True,
) -> CollectSummary:
    """Roll out `checkpoint` (with `cache_config`) until `output_dir` holds settings.num_episodes
    episodes; returns what this call added. Bad input raises ValueError / FileExistsError /
    FileNotFoundError / CheckpointError with a one-line message."""
    settings.check()
    check_device(device)
    output_dir, checkpoint = Path(output_dir), Path(checkpoint)
    check_output_dir(output_dir)
    if dir_has_content(output_dir) and not settings.resume:
        raise FileExistsError(f"{output_dir} exists; pass --resume to continue it or choose another --output_dir")

    policy, cfg = load_checkpoint(checkpoint, device=device, trust_checkpoint=trust_checkpoint,
                                  num_inference_steps=settings.num_inference_steps)
    apply_cache(policy, cache_config)  # a bad schedule fails here, before any env is built
    profile = task_profile(cfg)
    run_meta = {
        "policy_mode": cache_config.mode,
        "policy_cache": cache_config.describe(),
        "num_inference_steps": int(policy.num_inference_steps),
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": sha256_of_file(checkpoint),
    }

    n_envs = settings.n_envs or cfg.task.env_runner.get("n_envs") or os.cpu_count() or 1
    runner = make_collect_runner(cfg, output_dir, min(int(n_envs), settings.num_episodes), settings)
    set_threads(settings.threads, env_workers=runner.env_worker_processes, report=print if progress else logger.info)
    writer = None
    try:
        layout = frame_layout(runner, settings.no_video)
        fps = dataset_fps(runner, settings.fps)
        record = collection_record(policy, cfg, cache_config, runner, layout, fps, settings)
        resuming = dir_has_content(output_dir) and (output_dir / RECORD_PATH).is_file()
        if resuming:  # refuse before the writer touches anything
            check_or_store_record(output_dir, record, resuming=True)
        writer = WRITERS[settings.format](
            output_dir, fps, layout.features, robot_type=profile.robot_type, task=profile.description,
            extra_episode_fields=EPISODE_FIELDS, resume=settings.resume,
        )  # fmt: skip
        if not resuming:
            if writer.num_episodes:
                check_or_store_record(output_dir, record, resuming=True)  # raises: no record to compare
            check_or_store_record(output_dir, record, resuming=False)
        start = writer.num_episodes
        summary = CollectSummary(output_dir, task_name_of(cfg), fps, start, 0, 0, 0, 0.0)
        if start >= settings.num_episodes:
            logger.warning("%s already holds %d episodes (asked for %d); nothing to do",
                           output_dir, start, settings.num_episodes)
            return summary
        render = RENDER_CAMERA in layout.cameras
        n_envs = runner.n_envs
        begin = time.perf_counter()
        bar = tqdm.tqdm(total=settings.num_episodes, initial=start, unit="episode",
                        desc=f"collect {summary.task}", disable=not progress)
        # Chunks of n_envs episodes from episode 0: a resumed run re-runs the interrupted chunk whole
        # (saving only its uncommitted episodes), so every episode sees the noise it would have seen
        # uninterrupted.
        with bar:
            for chunk_start in range((start // n_envs) * n_envs, settings.num_episodes, n_envs):
                indices = range(chunk_start, min(chunk_start + n_envs, settings.num_episodes))
                episodes = [EpisodeSpec("test/", settings.seed + i, None, False) for i in indices]
                result = runner.run(SeededSampling(policy, settings.seed + chunk_start), episodes=episodes,
                                    record_frames=True, render_frames=render)
                chunk_meta = {**run_meta, **timing_meta(result["timing"]["predict_action_s"], n_envs)}
                for index, spec, frames in zip(indices, episodes, result["episode_frames"]):
                    if index < start:
                        continue  # committed before the interruption
                    success = save_episode(writer, frames, layout, profile, {"seed": spec.seed, **chunk_meta})
                    summary.episodes_written += 1
                    summary.successes += int(success)
                    summary.frames_written += len(frames["action"])
                    summary.seconds = time.perf_counter() - begin
                    bar.update(1)
                    bar.set_postfix(success=f"{summary.successes / summary.episodes_written:.0%}",
                                    frames_per_s=f"{summary.frames_written / summary.seconds:.1f}")
        return summary
    finally:
        runner.close()
        if writer is not None:
            writer.finalize()
