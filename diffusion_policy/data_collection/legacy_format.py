"""The original BAC collection layout (BAC README, "LeRobot Data Format"):

    episodes/episode_000000/videos/episode_video.mp4   h264 video of the episode
    episodes/episode_000000/metadata.json              episode_idx, length, success, total_reward,
                                                       video_paths, timestamps (+ extra fields)
    episodes_data.parquet                              one row per frame, one row group per episode
    dataset_summary.json                               total_episodes, total_frames,
                                                       successful_episodes, fps

Parquet columns: episode_idx, frame_idx, timestamp, success (the episode's), reward (from
next.reward), action_<i>, obs_obs_<j> (observation.state; another observation.<x> gives obs_<x>_<j>),
other numeric features flattened as <name>_<i>, and video_<name> (the episode video's path). With
one camera the video is `episode_video`, with several each is named after its camera.

Crash safety: an episode's directory is built under a hidden temp name and renamed into place, then
the parquet is rewritten (temp + os.replace) and dataset_summary.json, which holds the totals, is
replaced last: that rename is the commit. resume=True deletes episode directories and parquet rows
beyond the committed totals (left by a kill between the steps) and continues after them.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from diffusion_policy.data_collection.base import EpisodeWriter
from diffusion_policy.data_collection.storage import (
    TMP_SUFFIX,
    read_json,
    write_json_atomic,
    write_parquet_atomic,
)
from diffusion_policy.data_collection.video import check_encodable, count_frames, encode_video

SUMMARY_PATH = "dataset_summary.json"
DATA_PATH = "episodes_data.parquet"
NOT_A_DATASET = "not a dataset written by LegacyDatasetWriter; choose another --output_dir"
VIDEO_CODEC = "libx264"  # plays everywhere
ARROW_TYPES = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "bool": pa.bool_(),
}


def column_prefix(key: str) -> str | None:
    """Column name stem of a numeric feature; None for features the layout leaves out."""
    if key == "action":
        return "action"
    if key == "observation.state":
        return "obs_obs"
    if key.startswith("observation."):
        return "obs_" + key.removeprefix("observation.").replace(".", "_")
    if key in ("next.done", "next.success"):  # `success` holds the episode's outcome instead
        return None
    return key.replace(".", "_")


def video_names(features: dict) -> dict[str, str]:
    """{video feature key: video name}: `episode_video` for a single camera, else the camera name."""
    keys = [key for key, ft in features.items() if ft["dtype"] == "video"]
    if len(keys) == 1:
        return {keys[0]: "episode_video"}
    return {key: key.removeprefix("observation.images.").replace(".", "_") for key in keys}


class LegacyDatasetWriter(EpisodeWriter):
    """Writes the original BAC layout with the same API as LeRobotDatasetWriter.

    save_episode(meta): meta may give `success` and `total_reward` (else derived from next.success
    / next.reward); every other key is copied into the episode's metadata.json. robot_type, task,
    repo_id and extra_episode_fields are accepted so that both writers take the same arguments;
    this layout has no place for them.
    """

    def __init__(
        self,
        root,
        fps: int,
        features: dict,
        robot_type: str | None = None,
        task: str | None = None,
        repo_id: str | None = None,
        extra_episode_fields: dict[str, str] | None = None,
        resume: bool = False,
    ):
        self._total_episodes = 0
        self._total_frames = 0
        self._successful = 0
        super().__init__(root, fps, features, resume)

    @property
    def num_episodes(self) -> int:
        return self._total_episodes

    def _schema(self) -> pa.Schema:
        fields = [
            ("episode_idx", pa.int64()),
            ("frame_idx", pa.int64()),
            ("timestamp", pa.float64()),
            ("success", pa.bool_()),
        ]
        for key, ft in self.user_features.items():
            prefix = column_prefix(key)
            if ft["dtype"] == "video" or prefix is None:
                continue
            if key == "next.reward":
                fields.append(("reward", ARROW_TYPES[ft["dtype"]]))
            else:
                fields += [(f"{prefix}_{i}", ARROW_TYPES[ft["dtype"]]) for i in range(ft["shape"][0])]
        fields += [(f"video_{name}", pa.string()) for name in video_names(self.user_features).values()]
        return pa.schema(fields)

    # -- open --------------------------------------------------------------------------------

    def _check_cameras(self) -> None:
        for key in video_names(self.user_features):
            check_encodable(VIDEO_CODEC, *self.user_features[key]["shape"][:2])

    def _create(self) -> None:
        self._check_cameras()
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_summary(0, 0, 0)

    def _reopen(self) -> None:
        self._check_cameras()
        summary = read_json(self.root / SUMMARY_PATH, NOT_A_DATASET)
        if summary.get("fps") != self.fps:
            raise ValueError(
                f"{self.root} was recorded at {summary.get('fps')} fps, this run uses {self.fps}; "
                "use another --output_dir"
            )
        self._total_episodes = summary["total_episodes"]
        self._total_frames = summary["total_frames"]
        self._successful = summary["successful_episodes"]
        data_path = self.root / DATA_PATH
        kept = []
        if data_path.exists():
            if pq.read_schema(data_path).names != self._schema().names:
                raise ValueError(
                    f"{data_path} has other columns than this run's features; use another --output_dir"
                )
            kept = self._committed_row_groups()
        if sum(t.num_rows for t in kept) != self._total_frames:
            raise ValueError(
                f"{data_path} does not hold the {self._total_frames} frames {SUMMARY_PATH} counts: "
                f"{NOT_A_DATASET}"
            )
        for episode_dir in sorted((self.root / "episodes").glob("episode_*")):
            if int(episode_dir.name.removeprefix("episode_")) >= self._total_episodes:
                shutil.rmtree(episode_dir)
        if data_path.exists() and pq.read_metadata(data_path).num_rows != self._total_frames:
            write_parquet_atomic(data_path, self._schema(), kept)

    def _committed_row_groups(self) -> list[pa.Table]:
        parquet = pq.ParquetFile(self.root / DATA_PATH)
        groups = [parquet.read_row_group(i) for i in range(parquet.num_row_groups)]
        return [g.filter(pc.less(g["episode_idx"], self._total_episodes)) for g in groups]

    # -- commit ------------------------------------------------------------------------------

    def _commit(self, arrays: dict, episode_meta: dict) -> None:
        episode_idx = self._total_episodes
        length = len(next(iter(arrays.values())))
        success = bool(
            episode_meta.pop(
                "success", bool(arrays["next.success"].any()) if "next.success" in arrays else False
            )
        )
        total_reward = float(
            episode_meta.pop(
                "total_reward", float(arrays["next.reward"].sum()) if "next.reward" in arrays else 0.0
            )
        )
        timestamps = [round(i / self.fps, 6) for i in range(length)]

        name = f"episode_{episode_idx:06d}"
        final_dir = self.root / "episodes" / name
        build_dir = self.root / "episodes" / f".{name}{TMP_SUFFIX}"
        shutil.rmtree(build_dir, ignore_errors=True)
        (build_dir / "videos").mkdir(parents=True)
        video_paths = {}
        for key, video_name in video_names(self.user_features).items():
            encode_video(
                arrays[key],
                build_dir / "videos" / f"{video_name}.mp4",
                self.fps,
                VIDEO_CODEC,
                crf=22,
                gop=None,
            )
            video_paths[video_name] = f"episodes/{name}/videos/{video_name}.mp4"
        metadata = {
            "episode_idx": episode_idx,
            "length": length,
            "success": success,
            "total_reward": total_reward,
            "video_paths": video_paths,
            "timestamps": timestamps,
            **episode_meta,
        }
        write_json_atomic(build_dir / "metadata.json", metadata)
        if final_dir.exists():  # left by a save_episode() that failed after its rename
            shutil.rmtree(final_dir)
        os.rename(build_dir, final_dir)

        columns = {
            "episode_idx": np.full(length, episode_idx, dtype=np.int64),
            "frame_idx": np.arange(length, dtype=np.int64),
            "timestamp": np.array(timestamps, dtype=np.float64),
            "success": np.full(length, success),
        }
        for key, ft in self.user_features.items():
            prefix = column_prefix(key)
            if ft["dtype"] == "video" or prefix is None:
                continue
            if key == "next.reward":
                columns["reward"] = arrays[key]
            else:
                values = arrays[key].reshape(length, -1)
                columns.update({f"{prefix}_{i}": values[:, i] for i in range(values.shape[1])})
        for video_name, path in video_paths.items():
            columns[f"video_{video_name}"] = np.full(length, path, dtype=object)
        schema = self._schema()
        table = pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)
        kept = self._committed_row_groups() if (self.root / DATA_PATH).exists() else []
        write_parquet_atomic(self.root / DATA_PATH, schema, kept + [table])

        totals = (self._total_episodes + 1, self._total_frames + length, self._successful + int(success))
        self._write_summary(*totals)  # the commit
        self._total_episodes, self._total_frames, self._successful = totals

    def _write_summary(self, total_episodes: int, total_frames: int, successful_episodes: int) -> None:
        summary = {
            "total_episodes": total_episodes,
            "total_frames": total_frames,
            "successful_episodes": successful_episodes,
            "fps": self.fps,
        }
        write_json_atomic(self.root / SUMMARY_PATH, summary)


def read_legacy_dataset(root) -> dict:
    """{"summary", "data" (pa.Table of committed frames), "episodes" (metadata.json dicts)}; checks
    that the summary, parquet, metadata and videos agree, raising ValueError otherwise."""
    root = Path(root)
    summary = read_json(root / SUMMARY_PATH, NOT_A_DATASET)
    num_episodes = summary["total_episodes"]
    data = pq.read_table(root / DATA_PATH) if num_episodes else None
    if data is not None:
        data = data.filter(pc.less(data["episode_idx"], num_episodes))
    episodes, frames, successes = [], 0, 0
    for episode_idx in range(num_episodes):
        metadata = read_json(
            root / "episodes" / f"episode_{episode_idx:06d}" / "metadata.json", NOT_A_DATASET
        )
        rows = data.filter(pc.equal(data["episode_idx"], episode_idx))
        if rows.num_rows != metadata["length"] or rows["frame_idx"].to_pylist() != list(
            range(metadata["length"])
        ):
            raise ValueError(
                f"{root}: episode {episode_idx} has {rows.num_rows} parquet rows, "
                f"metadata.json says {metadata['length']}"
            )
        for path in metadata["video_paths"].values():
            if count_frames(root / path) != metadata["length"]:
                raise ValueError(f"{root}: {path} does not have {metadata['length']} frames")
        episodes.append(metadata)
        frames += metadata["length"]
        successes += int(metadata["success"])
    if (frames, successes) != (summary["total_frames"], summary["successful_episodes"]):
        raise ValueError(f"{root}: {SUMMARY_PATH} totals disagree with the episodes")
    return {"summary": summary, "data": data, "episodes": episodes}
