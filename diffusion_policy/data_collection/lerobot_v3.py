"""Write policy rollouts as a LeRobotDataset v3.0 that `lerobot.datasets.lerobot_dataset.LeRobotDataset(
repo_id, root=...)` (lerobot >= 0.4) loads as is, using only pyarrow and PyAV.

Layout (what lerobot 0.4 writes itself):

    meta/info.json                              format, fps, features, totals (the commit record)
    meta/stats.json                             per-feature stats over the dataset (see stats.py)
    meta/tasks.parquet                          task string (pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet    one row per episode: bounds, file positions, stats
    data/chunk-CCC/file-FFF.parquet             one row per frame, one row group per episode
    videos/<video_key>/chunk-CCC/file-FFF.mp4   episodes back to back; an episode is the span
                                                [from_timestamp, to_timestamp) of its file

A data or video file takes episodes until it passes data/video_files_size_in_mb, then the next
episode starts file FFF+1 (chunk CCC+1 after chunks_size files).

Crash safety. LeRobotDataset reads every row of every data and episodes parquet file, so a commit
must change all of them at once. save_episode() builds the next version of the whole directory
beside it (`.<name>.bac-staging`: hard links of the committed files, so nothing large is copied),
writes the episode there, each file a temp file + os.replace:
  1. each camera: the episode is encoded to a temp mp4 and remuxed (no re-encoding) after the
     committed part of the current video file;
  2. the data parquet: committed row groups + the new episode;
  3. the episodes parquet, tasks.parquet (when the task is new), stats.json;
  4. info.json with the new totals;
then swaps the two directories in one atomic rename (Linux renameat2 RENAME_EXCHANGE): this is
the commit. A reader opening the dataset at any instant, a kill -9 included, sees either the
previous or the new version, complete. The staging directory a kill leaves behind is deleted by
the next writer. Where the filesystem cannot swap directories, episodes are written in place in
the order above (info.json last) with a warning: there a kill between 1 and 4 leaves rows of the
unfinished episode past the committed totals until the next writer, opened with resume=True,
cuts them off.

Resume: LeRobotDatasetWriter(..., resume=True) continues at episode `num_episodes` (callers derive
seeds from it). fps, features and robot_type must match the existing dataset.
"""

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from diffusion_policy.data_collection.base import EpisodeWriter
from diffusion_policy.data_collection.episode_buffer import DEFAULT_FEATURES
from diffusion_policy.data_collection.stats import STAT_KEYS, aggregate_stats, image_stats, vector_stats
from diffusion_policy.data_collection.storage import (
    TMP_SUFFIX,
    commit_file,
    directory_swap_supported,
    exchange_paths,
    hardlink_tree,
    staging_dir,
    read_json,
    temp_path,
    write_json_atomic,
    write_pandas_parquet_atomic,
    write_parquet_atomic,
)
from diffusion_policy.data_collection.video import (
    check_encodable,
    concat_videos,
    count_frames,
    encode_video,
    pick_video_codec,
    video_duration_s,
    video_info,
)

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
CODEC_ENCODERS = {"av1": "libsvtav1", "h264": "libx264"}  # info.json codec name -> PyAV encoder

ARROW_TYPES = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
EXTRA_FIELD_DTYPES = ("bool", "int64", "float64", "string")
NOT_A_DATASET = "not a dataset written by LeRobotDatasetWriter; choose another --output_dir"


# ---------------------------------------------------------------------------------------------
# schemas


def data_schema(features: dict) -> pa.Schema:
    """Frame columns as lerobot stores them: shape (1,) -> scalar, (D,) -> fixed_size_list[D]."""
    fields = []
    for key, feature in features.items():
        if feature["dtype"] == "video":
            continue
        value_type = ARROW_TYPES[feature["dtype"]]
        shape = tuple(feature["shape"])
        fields.append(pa.field(key, value_type if shape == (1,) else pa.list_(value_type, shape[0])))
    return pa.schema(fields)


def _stat_type(feature: dict, stat: str) -> pa.DataType:
    if stat == "count":
        return pa.list_(pa.int64())
    if feature["dtype"] == "video":
        return pa.list_(pa.list_(pa.list_(pa.float64())))  # (3, 1, 1)
    if stat in ("min", "max") and feature["dtype"] == "bool":
        return pa.list_(pa.bool_())
    if stat in ("min", "max") and feature["dtype"] in ("int64", "int32"):
        return pa.list_(pa.int64())
    return pa.list_(pa.float64())


def episodes_schema(features: dict, extra_fields: dict[str, str]) -> pa.Schema:
    video_keys = [key for key, ft in features.items() if ft["dtype"] == "video"]
    fields = [
        ("episode_index", pa.int64()),
        ("tasks", pa.list_(pa.string())),
        ("length", pa.int64()),
        ("data/chunk_index", pa.int64()),
        ("data/file_index", pa.int64()),
        ("dataset_from_index", pa.int64()),
        ("dataset_to_index", pa.int64()),
    ]
    for key in video_keys:
        fields += [
            (f"videos/{key}/chunk_index", pa.int64()),
            (f"videos/{key}/file_index", pa.int64()),
            (f"videos/{key}/from_timestamp", pa.float64()),
            (f"videos/{key}/to_timestamp", pa.float64()),
        ]
    for key, feature in features.items():
        fields += [(f"stats/{key}/{stat}", _stat_type(feature, stat)) for stat in STAT_KEYS]
    fields += [("meta/episodes/chunk_index", pa.int64()), ("meta/episodes/file_index", pa.int64())]
    fields += [(name, ARROW_TYPES[dtype]) for name, dtype in extra_fields.items()]
    return pa.schema(fields)


def episode_table(schema: pa.Schema, columns: dict[str, np.ndarray]) -> pa.Table:
    arrays = []
    for field in schema:
        values = columns[field.name]
        if pa.types.is_fixed_size_list(field.type):
            flat = pa.array(values.reshape(-1), type=field.type.value_type)
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def info_features(features: dict) -> dict:
    """Features as info.json holds them (JSON lists for shapes)."""
    return {
        key: {"dtype": ft["dtype"], "shape": list(ft["shape"]), "names": ft.get("names"), **ft_rest(ft)}
        for key, ft in features.items()
    }


def ft_rest(feature: dict) -> dict:
    return {k: v for k, v in feature.items() if k not in ("dtype", "shape", "names")}


def _next_position(position: tuple[int, int], chunks_size: int) -> tuple[int, int]:
    chunk, file = position
    return (chunk + 1, 0) if file + 1 >= chunks_size else (chunk, file + 1)


def _file_position(path: Path) -> tuple[int, int]:
    """data/chunk-001/file-002.parquet -> (1, 2)."""
    return int(path.parent.name.split("-")[1]), int(path.stem.split("-")[1])


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1024**2


def _infer_extra_dtype(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int64"
    if isinstance(value, (float, np.floating)):
        return "float64"
    return "string"


def _coerce_extra(name: str, dtype: str, value):
    if value is None:
        return None
    if dtype == "string":
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if dtype == "bool":
        if value not in (True, False, 0, 1):
            raise ValueError(f"episode field {name!r} is bool, got {value!r}")
        return bool(value)
    if dtype == "int64":
        if float(value) != int(value):
            raise ValueError(f"episode field {name!r} is int64, got {value!r}")
        return int(value)
    return float(value)


def _stats_from_row(row: dict, features: dict) -> dict[str, dict[str, np.ndarray]]:
    return {key: {stat: np.asarray(row[f"stats/{key}/{stat}"]) for stat in STAT_KEYS} for key in features}


def _stats_json(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {key: {stat: np.asarray(v).tolist() for stat, v in ft.items()} for key, ft in stats.items()}


def _read_committed_episodes(root: Path, num_episodes: int, num_frames: int) -> tuple[list[dict], pa.Schema]:
    """Rows of the first `num_episodes` episodes (sorted), checked against the totals."""
    paths = sorted((root / "meta/episodes").glob("*/*.parquet"))
    if num_episodes == 0:
        return [], None
    if not paths:
        raise ValueError(f"{root} has {num_episodes} episodes in {INFO_PATH} but no meta/episodes parquet")
    table = pa.concat_tables([pq.read_table(p) for p in paths])
    rows = sorted(
        (row for row in table.to_pylist() if row["episode_index"] < num_episodes),
        key=lambda row: row["episode_index"],
    )
    indices = [row["episode_index"] for row in rows]
    if indices != list(range(num_episodes)) or rows[-1]["dataset_to_index"] != num_frames:
        raise ValueError(
            f"{root}: meta/episodes does not match {INFO_PATH} ({num_episodes} episodes, {num_frames} frames)"
        )
    return rows, table.schema


def _read_tasks(root: Path) -> dict[str, int]:
    tasks = pd.read_parquet(root / TASKS_PATH)
    return {str(task): int(index) for task, index in zip(tasks.index, tasks["task_index"], strict=True)}


# ---------------------------------------------------------------------------------------------
# writer


class LeRobotDatasetWriter(EpisodeWriter):
    """Episode-by-episode writer of a LeRobotDataset v3.0 (see the module docstring).

    features: user features (see episode_buffer.make_features); lerobot's timestamp/frame_index/
    episode_index/index/task_index are added. extra_episode_fields: {name: "bool"|"int64"|
    "float64"|"string"} extra columns of the episodes parquet filled from save_episode(meta)
    (dicts/lists given for a string field are stored as JSON); None = inferred from the first
    episode's meta. repo_id is only the name to load it under: LeRobotDataset(repo_id, root=root).
    video_codec: "libsvtav1" or "libx264" (default: AV1 when available; a resumed dataset keeps its
    codec). Files roll over to the next file past data/video_files_size_in_mb (as in lerobot).
    """

    def __init__(
        self,
        root,
        fps: int,
        features: dict,
        robot_type: str | None,
        task: str,
        repo_id: str | None = None,
        extra_episode_fields: dict[str, str] | None = None,
        resume: bool = False,
        video_codec: str | None = None,
        chunks_size: int = 1000,
        data_files_size_in_mb: float = 100,
        video_files_size_in_mb: float = 200,
    ):
        self.robot_type = robot_type
        self.task = task
        self.repo_id = repo_id or f"local/{Path(root).resolve().name}"
        self.video_codec = video_codec or pick_video_codec()
        self._declared_extra = self._check_extra_fields(extra_episode_fields)
        self._settings = {
            "chunks_size": chunks_size,
            "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": video_files_size_in_mb,
        }
        self._episodes: list[dict] = []  # committed rows of the episodes parquet
        self._tasks: dict[str, int] = {}
        self._extra: dict[str, str] | None = self._declared_extra
        self._base = Path(root)  # where file writes go: the root, or its staging copy during a commit
        self._swap = None  # whether commits swap whole directories (decided when the writer opens)
        super().__init__(root, fps, features, resume)

    # -- public ------------------------------------------------------------------------------

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_frames(self) -> int:
        return self._info["total_frames"]

    @property
    def features(self) -> dict:
        return {**self.user_features, **DEFAULT_FEATURES}

    @property
    def video_keys(self) -> list[str]:
        return [key for key, ft in self.user_features.items() if ft["dtype"] == "video"]

    # -- open --------------------------------------------------------------------------------

    def _open_commits(self) -> None:
        """Delete a staging directory left by a kill; decide how commits are made here."""
        shutil.rmtree(staging_dir(self.root), ignore_errors=True)
        self._swap = directory_swap_supported(self.root.parent)
        if not self._swap:
            logger.warning("%s: this filesystem cannot swap directories atomically; episodes are committed "
                           "file by file (info.json last), so a reader may see rows of an unfinished episode "
                           "after a crash until the next --resume cleans them up", self.root)

    def _create(self) -> None:
        self._open_commits()
        for key in self.video_keys:
            check_encodable(self.video_codec, *self.user_features[key]["shape"][:2])
        self._info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            **self._settings,
            "fps": self.fps,
            "splits": {},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "features": info_features(self.features),
        }
        write_json_atomic(self.root / INFO_PATH, self._info)

    def _reopen(self) -> None:
        self._open_commits()
        info = read_json(self.root / INFO_PATH, NOT_A_DATASET)
        self._check_compatible(info)
        self._info = info
        num_episodes, num_frames = info["total_episodes"], info["total_frames"]
        self._episodes, schema = _read_committed_episodes(self.root, num_episodes, num_frames)
        if num_episodes:
            self._tasks = _read_tasks(self.root)
            standard = set(episodes_schema(self.features, {}).names)
            existing = {f.name: self._arrow_to_extra_dtype(f) for f in schema if f.name not in standard}
            if self._declared_extra is not None and existing != self._declared_extra:
                raise ValueError(
                    f"{self.root} has extra episode fields {existing}, "
                    f"this run declares {self._declared_extra}; "
                    "use the same settings or another --output_dir"
                )
            self._extra = existing
        for key in self.video_keys:
            codec = info["features"][key].get("info", {}).get("video.codec")
            if codec is not None:
                self.video_codec = CODEC_ENCODERS.get(codec, self.video_codec)
            check_encodable(self.video_codec, *self.user_features[key]["shape"][:2])
        self._drop_uncommitted()
        logger.info("resuming %s at episode %d (%d frames)", self.root, num_episodes, num_frames)

    def _check_compatible(self, info: dict) -> None:
        if info.get("codebase_version") != CODEBASE_VERSION:
            raise ValueError(
                f"{self.root} is codebase_version {info.get('codebase_version')!r}, not v3.0: {NOT_A_DATASET}"
            )
        if info["fps"] != self.fps:
            raise ValueError(
                f"{self.root} was recorded at {info['fps']} fps, this run uses {self.fps}; "
                "use another --output_dir"
            )
        if info["robot_type"] != self.robot_type:
            raise ValueError(
                f"{self.root} holds robot_type {info['robot_type']!r}, this run {self.robot_type!r}; "
                "use another --output_dir"
            )
        stored = {k: {f: v for f, v in ft.items() if f != "info"} for k, ft in info["features"].items()}
        wanted = info_features(self.features)
        if stored != wanted:
            differing = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise ValueError(
                f"{self.root} has different features ({', '.join(differing)}) than this run; "
                "use another --output_dir"
            )

    @staticmethod
    def _arrow_to_extra_dtype(field: pa.Field) -> str:
        for dtype in EXTRA_FIELD_DTYPES:
            if field.type == ARROW_TYPES[dtype]:
                return dtype
        return "string"

    def _drop_uncommitted(self) -> None:
        """Cut off whatever an interrupted save_episode() wrote past the committed totals."""
        root, num_frames = self.root, self._info["total_frames"]
        if not self._episodes:
            for name in ("data", "videos", "meta/episodes"):
                shutil.rmtree(root / name, ignore_errors=True)
            (root / TASKS_PATH).unlink(missing_ok=True)
            (root / STATS_PATH).unlink(missing_ok=True)
            return
        last = self._episodes[-1]
        current = (last["data/chunk_index"], last["data/file_index"])
        for path in sorted(root.glob("data/*/*.parquet")):
            position = _file_position(path)
            if position > current:
                path.unlink()
            elif position == current and _max_index(path) >= num_frames:
                write_parquet_atomic(path, self._data_schema(), self._committed_row_groups(path, num_frames))
        for key in self.video_keys:
            current = (last[f"videos/{key}/chunk_index"], last[f"videos/{key}/file_index"])
            for path in sorted((root / "videos" / key).glob("*/*.mp4")):
                if _file_position(path) > current:
                    path.unlink()
            path = self._video_path(key, current)
            end_s = last[f"videos/{key}/to_timestamp"]
            if video_duration_s(path) > end_s + 0.5 / self.fps:
                tmp = temp_path(path)
                concat_videos([(path, 0.0, end_s)], tmp)
                commit_file(tmp, path)
        if pq.read_metadata(root / EPISODES_PATH).num_rows != len(self._episodes):
            self._write_episodes(self._episodes, self._extra or {})
        self._write_stats(self._episodes)

    # -- commit ------------------------------------------------------------------------------

    def _commit(self, arrays: dict, episode_meta: dict) -> None:
        if not self._swap:
            self._apply(self._write_episode_files(arrays, episode_meta))
            return
        stage = staging_dir(self.root)
        shutil.rmtree(stage, ignore_errors=True)
        hardlink_tree(self.root, stage)
        self._base = stage
        try:
            state = self._write_episode_files(arrays, episode_meta)
        finally:
            self._base = self.root
        if not exchange_paths(stage, self.root):  # the commit: `stage` now holds the previous version
            raise OSError(f"cannot swap {stage} and {self.root} any more; the dataset is unchanged")
        self._apply(state)
        shutil.rmtree(stage, ignore_errors=True)

    def _apply(self, state: tuple) -> None:
        self._episodes, self._tasks, self._info, self._extra = state

    def _write_episode_files(self, arrays: dict, episode_meta: dict) -> tuple:
        """Write the episode under self._base (info.json last); returns the writer's next state."""
        episode_index, from_index = self.num_episodes, self._info["total_frames"]
        length = len(next(iter(arrays.values())))
        tasks = dict(self._tasks)
        task_index = tasks.setdefault(self.task, len(tasks))
        extra_fields, extra_values = self._extra_values(episode_meta)

        columns = {key: arrays[key] for key, ft in self.user_features.items() if ft["dtype"] != "video"}
        columns["timestamp"] = (np.arange(length) / self.fps).astype(np.float32)
        columns["frame_index"] = np.arange(length, dtype=np.int64)
        columns["episode_index"] = np.full(length, episode_index, dtype=np.int64)
        columns["index"] = np.arange(from_index, from_index + length, dtype=np.int64)
        columns["task_index"] = np.full(length, task_index, dtype=np.int64)
        stats = {
            key: image_stats(arrays[key]) if ft["dtype"] == "video" else vector_stats(columns[key])
            for key, ft in self.features.items()
        }

        row = {"episode_index": episode_index, "tasks": [self.task], "length": length}
        info = json.loads(json.dumps(self._info))  # the next info.json, committed last
        for key in self.video_keys:
            row.update(self._append_video(key, arrays[key], episode_index, info))
        row.update(self._append_data(columns, from_index))
        row.update(
            {
                f"stats/{key}/{stat}": np.asarray(v).tolist()
                for key, ft in stats.items()
                for stat, v in ft.items()
            }
        )
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0, **extra_values})

        episodes = self._episodes + [row]
        self._write_episodes(episodes, extra_fields)
        if len(tasks) != len(self._tasks):
            write_pandas_parquet_atomic(
                self._base / TASKS_PATH, pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks))
            )
        self._write_stats(episodes)
        info.update(
            total_episodes=episode_index + 1,
            total_frames=from_index + length,
            total_tasks=len(tasks),
            splits={"train": f"0:{episode_index + 1}"},
        )
        write_json_atomic(self._base / INFO_PATH, info)  # last: in-place commits take it as the commit
        return episodes, tasks, info, extra_fields

    def _append_video(self, key: str, frames: np.ndarray, episode_index: int, info: dict) -> dict:
        position, frames_before = (0, 0), 0
        if self._episodes:
            last = self._episodes[-1]
            position = (last[f"videos/{key}/chunk_index"], last[f"videos/{key}/file_index"])
            frames_before = round(last[f"videos/{key}/to_timestamp"] * self.fps)
            if _size_mb(self._video_path(key, position)) >= self._info["video_files_size_in_mb"]:
                position, frames_before = _next_position(position, self._info["chunks_size"]), 0
        target = self._video_path(key, position)
        target.parent.mkdir(parents=True, exist_ok=True)
        episode_file = target.parent / f".episode-{episode_index:06d}.mp4{TMP_SUFFIX}"
        encode_video(frames, episode_file, self.fps, self.video_codec)
        if count_frames(episode_file) != len(frames):
            raise RuntimeError(
                f"{self.video_codec} wrote {count_frames(episode_file)} of {len(frames)} frames for {key}"
            )
        if "info" not in info["features"][key]:
            info["features"][key]["info"] = video_info(episode_file)
        if frames_before:
            joined = temp_path(target)
            concat_videos(
                [(target, 0.0, frames_before / self.fps), (episode_file, frames_before / self.fps, None)],
                joined,
            )
            episode_file.unlink()
            commit_file(joined, target)
        else:
            commit_file(episode_file, target)
        return {
            f"videos/{key}/chunk_index": position[0],
            f"videos/{key}/file_index": position[1],
            f"videos/{key}/from_timestamp": frames_before / self.fps,
            f"videos/{key}/to_timestamp": (frames_before + len(frames)) / self.fps,
        }

    def _append_data(self, columns: dict[str, np.ndarray], from_index: int) -> dict:
        schema = self._data_schema()
        position, kept = (0, 0), []
        if self._episodes:
            last = self._episodes[-1]
            position = (last["data/chunk_index"], last["data/file_index"])
            path = self._base / DATA_PATH.format(chunk_index=position[0], file_index=position[1])
            if _size_mb(path) >= self._info["data_files_size_in_mb"]:
                position = _next_position(position, self._info["chunks_size"])
            else:
                kept = self._committed_row_groups(path, from_index)
        path = self._base / DATA_PATH.format(chunk_index=position[0], file_index=position[1])
        write_parquet_atomic(path, schema, kept + [episode_table(schema, columns)])
        length = len(columns["index"])
        return {
            "data/chunk_index": position[0],
            "data/file_index": position[1],
            "dataset_from_index": from_index,
            "dataset_to_index": from_index + length,
        }

    def _write_episodes(self, rows: list[dict], extra_fields: dict[str, str]) -> None:
        schema = episodes_schema(self.features, extra_fields)
        write_parquet_atomic(self._base / EPISODES_PATH, schema, [pa.Table.from_pylist(rows, schema=schema)])

    def _write_stats(self, rows: list[dict]) -> None:
        per_episode = [_stats_from_row(row, self.features) for row in rows]
        stats = {key: aggregate_stats([s[key] for s in per_episode]) for key in self.features}
        write_json_atomic(self._base / STATS_PATH, _stats_json(stats))

    # -- helpers -----------------------------------------------------------------------------

    def _data_schema(self) -> pa.Schema:
        return data_schema(self.features)

    def _video_path(self, key: str, position: tuple[int, int]) -> Path:
        return self._base / VIDEO_PATH.format(video_key=key, chunk_index=position[0], file_index=position[1])

    @staticmethod
    def _committed_row_groups(path: Path, below_index: int) -> list[pa.Table]:
        parquet = pq.ParquetFile(path)
        groups = [parquet.read_row_group(i) for i in range(parquet.num_row_groups)]
        return [group.filter(pc.less(group["index"], below_index)) for group in groups]

    @staticmethod
    def _check_extra_fields(fields: dict[str, str] | None) -> dict[str, str] | None:
        if fields is None:
            return None
        for name, dtype in fields.items():
            if dtype not in EXTRA_FIELD_DTYPES:
                raise ValueError(
                    f"extra episode field {name!r} has dtype {dtype!r}; use one of {EXTRA_FIELD_DTYPES}"
                )
        return dict(fields)

    def _extra_values(self, episode_meta: dict) -> tuple[dict[str, str], dict]:
        fields = self._extra
        if fields is None:  # first episode without declared fields: infer them
            fields = {name: _infer_extra_dtype(value) for name, value in episode_meta.items()}
        reserved = sorted(set(fields) & set(episodes_schema(self.features, {}).names))
        if reserved:
            raise ValueError(
                f"episode_meta keys {reserved} clash with lerobot's episode columns; rename them"
            )
        missing, unknown = sorted(set(fields) - set(episode_meta)), sorted(set(episode_meta) - set(fields))
        if missing or unknown:
            raise ValueError(
                f"episode_meta keys differ from the episode fields {list(fields)}: "
                f"missing {missing}, unknown {unknown}"
            )
        return fields, {
            name: _coerce_extra(name, dtype, episode_meta[name]) for name, dtype in fields.items()
        }


def _max_index(path: Path) -> int:
    return pc.max(pq.read_table(path, columns=["index"])["index"]).as_py()


# ---------------------------------------------------------------------------------------------
# reader


@dataclass
class LeRobotDatasetContents:
    info: dict
    stats: dict | None
    tasks: dict[str, int]
    episodes: list[dict]  # committed rows of meta/episodes
    data: pa.Table  # committed frames, sorted by index


def read_lerobot_dataset(root, check_videos: bool = True) -> LeRobotDatasetContents:
    """Read the committed part of a dataset written by LeRobotDatasetWriter and check that its
    files agree (frame/episode bounds, timestamps, video spans); raises ValueError otherwise."""
    root = Path(root)
    info = read_json(root / INFO_PATH, NOT_A_DATASET)
    num_episodes, num_frames, fps = info["total_episodes"], info["total_frames"], info["fps"]
    episodes, _ = _read_committed_episodes(root, num_episodes, num_frames)
    data_paths = sorted(root.glob("data/*/*.parquet"))
    data = pa.concat_tables([pq.read_table(p) for p in data_paths]) if data_paths else None
    if data is not None:
        data = data.filter(pc.less(data["index"], num_frames)).sort_by("index")

    def fail(problem: str):
        raise ValueError(f"{root}: {problem}")

    if num_frames and (data is None or data["index"].to_pylist() != list(range(num_frames))):
        fail(f"data/ does not hold frames 0..{num_frames - 1}")
    expected_start = 0
    for episode in episodes:
        start, stop = episode["dataset_from_index"], episode["dataset_to_index"]
        if stop - start != episode["length"] or start != expected_start:
            fail(f"episode {episode['episode_index']} bounds [{start}, {stop}) are not contiguous")
        expected_start = stop
        frames = data.slice(start, stop - start)
        if set(frames["episode_index"].to_pylist()) != {episode["episode_index"]}:
            fail(f"frames {start}..{stop - 1} do not all belong to episode {episode['episode_index']}")
        frame_index = np.asarray(frames["frame_index"])
        if not np.array_equal(frame_index, np.arange(stop - start)):
            fail(f"episode {episode['episode_index']} frame_index is not 0..{stop - start - 1}")
        if not np.allclose(np.asarray(frames["timestamp"]), frame_index / fps, atol=1e-5):
            fail(f"episode {episode['episode_index']} timestamps are not frame_index / fps")
        for key, ft in info["features"].items():
            if ft["dtype"] != "video" or not check_videos:
                continue
            span = episode[f"videos/{key}/to_timestamp"] - episode[f"videos/{key}/from_timestamp"]
            if abs(span * fps - episode["length"]) > 1e-6:
                fail(f"episode {episode['episode_index']} spans {span:.4f} s of {key}, not length / fps")
            path = root / info["video_path"].format(
                video_key=key,
                chunk_index=episode[f"videos/{key}/chunk_index"],
                file_index=episode[f"videos/{key}/file_index"],
            )
            if not path.is_file():
                fail(f"video {path.relative_to(root)} of episode {episode['episode_index']} is missing")
            if count_frames(path) < round(episode[f"videos/{key}/to_timestamp"] * fps):
                fail(f"video {path.relative_to(root)} ends before episode {episode['episode_index']} does")
    stats = read_json(root / STATS_PATH, "stats.json") if (root / STATS_PATH).exists() else None
    tasks = _read_tasks(root) if num_episodes else {}
    return LeRobotDatasetContents(info=info, stats=stats, tasks=tasks, episodes=episodes, data=data)
