"""LeRobotDatasetWriter / LegacyDatasetWriter: file contents, stats, videos, resume and kill -9 safety.

Loading with real lerobot is in test_lerobot_load.py."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from diffusion_policy.data_collection import (
    LegacyDatasetWriter,
    LeRobotDatasetWriter,
    make_features,
    read_legacy_dataset,
    read_lerobot_dataset,
)
from diffusion_policy.data_collection.stats import QUANTILE_KEYS, QUANTILES, sample_frame_indices

FPS = 10
TASK = "push the T"
EXTRA_FIELDS = {"policy_mode": "string", "seed": "int64", "success": "bool", "inference_time_ms": "float64"}
TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


# ---------------------------------------------------------------------------------------------
# synthetic episodes (also imported by test_lerobot_load.py and the kill-test subprocess)


def synthetic_frame(episode: int, t: int, length: int, cameras=("cam",), size=(64, 64)) -> dict:
    """A deterministic frame; images are flat colours plus a bright moving bar (codec-friendly)."""
    frame = {
        "observation.state": np.array([episode, t, np.sin(t), np.cos(episode)], dtype=np.float32),
        "action": np.array([0.5 * t - episode, 0.25 * episode + 0.01 * t], dtype=np.float32),
        "next.reward": np.float32(0.1 * t),
        "next.done": t == length - 1,
        "next.success": bool(episode % 2 == 1 and t == length - 1),
    }
    for c, cam in enumerate(cameras):
        image = np.empty((*size, 3), dtype=np.uint8)
        image[..., 0] = (40 * episode + 12 * t + 60 * c) % 200
        image[..., 1] = 20 + 10 * t
        image[..., 2] = 200 - 50 * (episode % 3)
        row = (8 * t) % size[0]
        image[row : row + 8] = 235
        frame[f"observation.images.{cam}"] = image
    return frame


def write_episode(writer, episode: int, length: int, cameras=("cam",), meta: dict | None = None) -> None:
    for t in range(length):
        writer.add_frame(synthetic_frame(episode, t, length, cameras))
    writer.save_episode(meta if meta is not None else episode_meta(episode))


def episode_meta(episode: int) -> dict:
    return {
        "policy_mode": "bac",
        "seed": 100_000 + episode,
        "success": episode % 2 == 1,
        "inference_time_ms": 1.5 * episode,
    }


def expected_images(episode: int, length: int, cam_index: int = 0) -> np.ndarray:
    cam = ("cam", "wrist")[cam_index]
    cameras = ("cam", "wrist")[: cam_index + 1]
    return np.stack(
        [synthetic_frame(episode, t, length, cameras)[f"observation.images.{cam}"] for t in range(length)]
    )


def make_writer(root, cameras=("cam",), **kwargs) -> LeRobotDatasetWriter:
    features = make_features(4, 2, cameras={cam: (64, 64) for cam in cameras})
    kwargs.setdefault("extra_episode_fields", EXTRA_FIELDS)
    return LeRobotDatasetWriter(root, FPS, features, robot_type="pusht", task=TASK, **kwargs)


def decode_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames (T, H, W, 3) and their timestamps in seconds (T,)."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return np.stack([f.to_ndarray(format="rgb24") for f in frames]), np.array([float(f.time) for f in frames])


LENGTHS = [6, 9, 5]


@pytest.fixture(scope="module")
def video_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lerobot") / "pusht_video"
    with make_writer(root) as writer:
        for episode, length in enumerate(LENGTHS):
            write_episode(writer, episode, length)
        assert writer.num_episodes == len(LENGTHS)
    return root


# ---------------------------------------------------------------------------------------------
# file contents


def test_info_json(video_dataset):
    info = json.loads((video_dataset / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["robot_type"] == "pusht"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 1)
    assert info["fps"] == FPS and info["splits"] == {"train": "0:3"}
    assert (
        info["chunks_size"] == 1000
        and info["data_files_size_in_mb"] == 100
        and info["video_files_size_in_mb"] == 200
    )
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    features = info["features"]
    assert list(features) == [
        "observation.state", "action", "next.reward", "next.done", "next.success", "observation.images.cam",
        "timestamp", "frame_index", "episode_index", "index", "task_index",
    ]  # fmt: skip
    assert features["observation.state"] == {
        "dtype": "float32",
        "shape": [4],
        "names": [f"state_{i}" for i in range(4)],
    }
    assert features["next.done"] == {"dtype": "bool", "shape": [1], "names": None}
    video = features["observation.images.cam"]
    assert video["shape"] == [64, 64, 3] and video["names"] == ["height", "width", "channels"]
    assert video["info"]["video.codec"] in ("av1", "h264")
    assert video["info"]["video.pix_fmt"] == "yuv420p" and video["info"]["video.fps"] == FPS
    assert (video["info"]["video.height"], video["info"]["video.width"]) == (64, 64)
    assert video["info"]["has_audio"] is False and video["info"]["video.is_depth_map"] is False


def test_data_parquet_schema_and_values(video_dataset):
    table = pq.read_table(video_dataset / "data/chunk-000/file-000.parquet")
    assert table.schema == pa.schema(
        [
            ("observation.state", pa.list_(pa.float32(), 4)),
            ("action", pa.list_(pa.float32(), 2)),
            ("next.reward", pa.float32()),
            ("next.done", pa.bool_()),
            ("next.success", pa.bool_()),
            ("timestamp", pa.float32()),
            ("frame_index", pa.int64()),
            ("episode_index", pa.int64()),
            ("index", pa.int64()),
            ("task_index", pa.int64()),
        ]
    )
    assert pq.ParquetFile(video_dataset / "data/chunk-000/file-000.parquet").num_row_groups == len(LENGTHS)
    assert table["index"].to_pylist() == list(range(sum(LENGTHS)))
    expected_episode = np.repeat(np.arange(len(LENGTHS)), LENGTHS)
    expected_frame = np.concatenate([np.arange(n) for n in LENGTHS])
    np.testing.assert_array_equal(table["episode_index"], expected_episode)
    np.testing.assert_array_equal(table["frame_index"], expected_frame)
    np.testing.assert_allclose(table["timestamp"], (expected_frame / FPS).astype(np.float32))
    assert set(table["task_index"].to_pylist()) == {0}
    state = np.stack(table["observation.state"].to_numpy(zero_copy_only=False))
    expected_state = np.stack(
        [synthetic_frame(e, t, n)["observation.state"] for e, n in enumerate(LENGTHS) for t in range(n)]
    )
    np.testing.assert_array_equal(state, expected_state)
    done = np.asarray(table["next.done"])
    assert done.sum() == len(LENGTHS) and done[np.cumsum(LENGTHS) - 1].all()


def test_episodes_parquet(video_dataset):
    table = pq.read_table(video_dataset / "meta/episodes/chunk-000/file-000.parquet")
    rows = table.to_pylist()
    assert [r["episode_index"] for r in rows] == [0, 1, 2]
    assert [r["length"] for r in rows] == LENGTHS
    bounds = np.concatenate([[0], np.cumsum(LENGTHS)])
    assert [r["dataset_from_index"] for r in rows] == bounds[:-1].tolist()
    assert [r["dataset_to_index"] for r in rows] == bounds[1:].tolist()
    for row in rows:
        assert row["tasks"] == [TASK]
        assert (row["data/chunk_index"], row["data/file_index"]) == (0, 0)
        assert (row["meta/episodes/chunk_index"], row["meta/episodes/file_index"]) == (0, 0)
        assert (
            row["videos/observation.images.cam/chunk_index"],
            row["videos/observation.images.cam/file_index"],
        ) == (0, 0)
        assert row["seed"] == 100_000 + row["episode_index"] and row["policy_mode"] == "bac"
    assert [r["videos/observation.images.cam/from_timestamp"] for r in rows] == pytest.approx(
        bounds[:-1] / FPS
    )
    assert [r["videos/observation.images.cam/to_timestamp"] for r in rows] == pytest.approx(bounds[1:] / FPS)
    assert table.schema.field("stats/action/mean").type == pa.list_(pa.float64())
    assert table.schema.field("stats/action/count").type == pa.list_(pa.int64())
    assert table.schema.field("stats/next.done/min").type == pa.list_(pa.bool_())
    assert table.schema.field("stats/index/max").type == pa.list_(pa.int64())
    assert table.schema.field("stats/observation.images.cam/q50").type == pa.list_(
        pa.list_(pa.list_(pa.float64()))
    )
    assert table.schema.field("success").type == pa.bool_()
    assert table.schema.field("inference_time_ms").type == pa.float64()


def test_tasks_parquet(video_dataset):
    tasks = pd.read_parquet(video_dataset / "meta/tasks.parquet")
    assert list(tasks.index) == [TASK] and tasks["task_index"].tolist() == [0]


def test_stats_equal_numpy(video_dataset):
    contents = read_lerobot_dataset(video_dataset)
    data, stats = contents.data, contents.stats
    for key in ("observation.state", "action", "next.reward", "timestamp", "index"):
        column = data[key]
        values = (
            np.stack(column.to_numpy(zero_copy_only=False))
            if pa.types.is_fixed_size_list(column.type)
            else np.asarray(column)
        )
        values = values.reshape(len(values), -1).astype(np.float64)
        np.testing.assert_allclose(stats[key]["min"], values.min(0), rtol=1e-6)
        np.testing.assert_allclose(stats[key]["max"], values.max(0), rtol=1e-6)
        np.testing.assert_allclose(stats[key]["mean"], values.mean(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats[key]["std"], values.std(0), rtol=1e-6, atol=1e-9)
        assert stats[key]["count"] == [len(values)]
        # per episode: exact numpy quantiles; dataset: count-weighted mean of them (lerobot's rule)
        per_episode_q = []
        for episode in contents.episodes:
            part = values[episode["dataset_from_index"] : episode["dataset_to_index"]]
            for stat_key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
                np.testing.assert_allclose(
                    episode[f"stats/{key}/{stat_key}"], np.quantile(part, q, axis=0), atol=1e-9
                )
            np.testing.assert_allclose(episode[f"stats/{key}/mean"], part.mean(0), atol=1e-9)
            per_episode_q.append([np.quantile(part, q, axis=0) for q in QUANTILES])
        weights = np.array(LENGTHS, dtype=np.float64)[:, None, None]
        np.testing.assert_allclose(
            [stats[key][k] for k in QUANTILE_KEYS],
            (np.array(per_episode_q) * weights).sum(0) / sum(LENGTHS),
            atol=1e-9,
        )
    assert stats["next.done"]["min"] == [False] and stats["next.done"]["max"] == [True]


def test_image_stats_per_channel_in_unit_range(video_dataset):
    contents = read_lerobot_dataset(video_dataset)
    for episode in contents.episodes:
        frames = expected_images(episode["episode_index"], episode["length"])
        sampled = frames[sample_frame_indices(len(frames))]
        pixels = sampled.reshape(-1, 3).astype(np.float64) / 255.0
        stats = {
            k: np.array(episode[f"stats/observation.images.cam/{k}"])
            for k in ("min", "max", "mean", "std", "q10", "q90")
        }
        assert stats["mean"].shape == (3, 1, 1)
        np.testing.assert_allclose(stats["min"].ravel(), pixels.min(0))
        np.testing.assert_allclose(stats["max"].ravel(), pixels.max(0))
        np.testing.assert_allclose(stats["mean"].ravel(), pixels.mean(0))
        np.testing.assert_allclose(stats["std"].ravel(), pixels.std(0))
        np.testing.assert_allclose(stats["q10"].ravel(), np.quantile(pixels, 0.1, axis=0))
        np.testing.assert_allclose(stats["q90"].ravel(), np.quantile(pixels, 0.9, axis=0))
        assert episode["stats/observation.images.cam/count"] == [len(sampled)]
    dataset_mean = np.array(contents.stats["observation.images.cam"]["mean"])
    assert dataset_mean.shape == (3, 1, 1) and ((0 <= dataset_mean) & (dataset_mean <= 1)).all()


def test_video_frames_match_episode_spans(video_dataset):
    contents = read_lerobot_dataset(video_dataset)
    frames, times = decode_frames(video_dataset / "videos/observation.images.cam/chunk-000/file-000.mp4")
    assert len(frames) == sum(LENGTHS)
    for episode in contents.episodes:
        start = episode["videos/observation.images.cam/from_timestamp"]
        stop = episode["videos/observation.images.cam/to_timestamp"]
        in_span = (times >= start - 1e-6) & (times < stop - 1e-6)
        assert in_span.sum() == episode["length"]
        np.testing.assert_allclose(times[in_span] - start, np.arange(episode["length"]) / FPS, atol=1e-6)
        error = np.abs(
            frames[in_span].astype(int) - expected_images(episode["episode_index"], episode["length"])
        )
        assert error.mean() < 6, f"episode {episode['episode_index']} decodes to other images"


def test_lowdim_dataset_without_videos(tmp_path):
    with make_writer(tmp_path / "lowdim", cameras=()) as writer:
        write_episode(writer, 0, 4, cameras=())
        write_episode(writer, 1, 3, cameras=())
    contents = read_lerobot_dataset(tmp_path / "lowdim")
    assert contents.info["video_path"] is None and contents.data.num_rows == 7
    assert not (tmp_path / "lowdim/videos").exists()


def test_files_roll_over_to_new_files_and_chunks(tmp_path):
    root = tmp_path / "rolled"
    lengths = [3, 4, 2, 5]
    with make_writer(
        root, cameras=("cam", "wrist"), chunks_size=2, data_files_size_in_mb=1e-9, video_files_size_in_mb=1e-9
    ) as writer:
        for episode, length in enumerate(lengths):
            write_episode(writer, episode, length, cameras=("cam", "wrist"))
    contents = read_lerobot_dataset(root)
    positions = [(e["data/chunk_index"], e["data/file_index"]) for e in contents.episodes]
    assert positions == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for key in ("observation.images.cam", "observation.images.wrist"):
        assert [
            (e[f"videos/{key}/chunk_index"], e[f"videos/{key}/file_index"]) for e in contents.episodes
        ] == positions
        assert [e[f"videos/{key}/from_timestamp"] for e in contents.episodes] == [0.0] * 4
    frames, _ = decode_frames(root / "videos/observation.images.wrist/chunk-001/file-001.mp4")
    assert np.abs(frames.astype(int) - expected_images(3, 5, cam_index=1)).mean() < 6


# ---------------------------------------------------------------------------------------------
# opening, resume, bad input


def test_refuses_existing_dir_without_resume(video_dataset):
    with pytest.raises(
        FileExistsError, match="exists; pass --resume to continue it or choose another --output_dir"
    ):
        make_writer(video_dataset)


def test_resume_continues_episode_indices(tmp_path):
    root = tmp_path / "resumed"
    with make_writer(root) as writer:
        write_episode(writer, 0, 4)
        write_episode(writer, 1, 6)
    with make_writer(root, resume=True) as writer:
        assert writer.num_episodes == 2 and writer.num_frames == 10
        write_episode(writer, 2, 5)
    contents = read_lerobot_dataset(root)
    assert [e["episode_index"] for e in contents.episodes] == [0, 1, 2]
    assert contents.episodes[2]["dataset_from_index"] == 10 and contents.data.num_rows == 15
    assert contents.episodes[2]["seed"] == 100_002
    frames, times = decode_frames(root / "videos/observation.images.cam/chunk-000/file-000.mp4")
    assert len(frames) == 15 and np.abs(frames[10:].astype(int) - expected_images(2, 5)).mean() < 6


def test_resume_of_missing_dir_starts_fresh(tmp_path):
    with make_writer(tmp_path / "new", resume=True) as writer:
        assert writer.num_episodes == 0


def test_resume_rejects_other_settings(video_dataset):
    with pytest.raises(ValueError, match="fps"):
        LeRobotDatasetWriter(
            video_dataset, 20, make_features(4, 2, cameras={"cam": (64, 64)}), "pusht", TASK, resume=True
        )
    with pytest.raises(ValueError, match="different features"):
        LeRobotDatasetWriter(
            video_dataset, FPS, make_features(5, 2, cameras={"cam": (64, 64)}), "pusht", TASK, resume=True
        )
    with pytest.raises(ValueError, match="extra episode fields"):
        make_writer(video_dataset, resume=True, extra_episode_fields={"seed": "int64"})


def test_second_writer_on_same_dir_is_refused(tmp_path):
    with make_writer(tmp_path / "locked"):
        with pytest.raises(RuntimeError, match="another writer"):
            make_writer(tmp_path / "locked", resume=True)


def test_bad_frames_and_meta_are_rejected(tmp_path):
    with make_writer(tmp_path / "bad") as writer:
        frame = synthetic_frame(0, 0, 3)
        with pytest.raises(ValueError, match="missing \\['action'\\]"):
            writer.add_frame({k: v for k, v in frame.items() if k != "action"})
        with pytest.raises(ValueError, match="observation.state.*shape"):
            writer.add_frame({**frame, "observation.state": np.zeros(3)})
        with pytest.raises(ValueError, match="at least one add_frame"):
            writer.save_episode(episode_meta(0))
        writer.add_frame(frame)
        with pytest.raises(ValueError, match="missing \\['seed'\\]"):
            writer.save_episode({k: v for k, v in episode_meta(0).items() if k != "seed"})
        writer.save_episode(episode_meta(0))  # the buffered frame is still there after a refused save
        assert writer.num_episodes == 1
    with pytest.raises(ValueError, match="fps must be a positive whole number"):
        LeRobotDatasetWriter(tmp_path / "fps", 12.5, make_features(4, 2), "pusht", TASK)


def test_channel_first_float_images_are_converted(tmp_path):
    with make_writer(tmp_path / "chw") as writer:
        for t in range(3):
            frame = synthetic_frame(0, t, 3)
            frame["observation.images.cam"] = frame["observation.images.cam"].transpose(2, 0, 1) / 255.0
            writer.add_frame(frame)
        writer.save_episode(episode_meta(0))
    frames, _ = decode_frames(tmp_path / "chw/videos/observation.images.cam/chunk-000/file-000.mp4")
    assert np.abs(frames.astype(int) - expected_images(0, 3)).mean() < 6


def test_inferred_extra_fields(tmp_path):
    with make_writer(tmp_path / "inferred", extra_episode_fields=None) as writer:
        write_episode(
            writer, 0, 3, meta={"mode": "bac", "params": {"num_caches": 5}, "total_reward": 2.0, "ok": True}
        )
    schema = pq.read_schema(tmp_path / "inferred/meta/episodes/chunk-000/file-000.parquet")
    assert schema.field("mode").type == pa.string() and schema.field("total_reward").type == pa.float64()
    assert schema.field("ok").type == pa.bool_()
    row = read_lerobot_dataset(tmp_path / "inferred").episodes[0]
    assert json.loads(row["params"]) == {"num_caches": 5}


# ---------------------------------------------------------------------------------------------
# kill -9 in the middle of a commit


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests_dir!r})
from test_lerobot_writer import LENGTHS, episode_meta, make_writer, synthetic_frame
from diffusion_policy.data_collection import LegacyDatasetWriter, make_features

fmt, root, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
real_replace, replaces = os.replace, [0]

def replace_or_die(src, dst):
    # SIGKILL before the kill_at-th file replacement of the third save_episode()
    if writer.num_episodes == 2:
        replaces[0] += 1
        if replaces[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)

if fmt == "lerobot":
    import diffusion_policy.data_collection.lerobot_v3 as lerobot_v3
    real_exchange = lerobot_v3.exchange_paths

    def exchange_then_die(a, b):
        # kill_at 7: SIGKILL right after the third episode's directory swap, before the cleanup
        swapped = real_exchange(a, b)
        if writer.num_episodes == 2 and kill_at == 7:
            os.kill(os.getpid(), signal.SIGKILL)
        return swapped

    lerobot_v3.exchange_paths = exchange_then_die
    writer = make_writer(root)
else:
    writer = LegacyDatasetWriter(root, 10, make_features(4, 2, cameras={{"cam": (64, 64)}}))
os.replace = replace_or_die
for episode, length in enumerate(LENGTHS):
    for t in range(length):
        writer.add_frame(synthetic_frame(episode, t, length))
    writer.save_episode(episode_meta(episode))
os.kill(os.getpid(), signal.SIGKILL)  # committed all three, then killed before finalize()
"""

# one camera: lerobot replaces video, data, episodes, stats, info in its staging copy, then swaps it
# in (7: killed just after the swap); legacy replaces metadata.json, parquet, summary
KILL_POINTS = [("lerobot", k) for k in range(1, 8)] + [("legacy", k) for k in range(1, 5)]


def assert_raw_files_agree(root: Path, episodes: int) -> None:
    """What LeRobotDataset reads, read as it reads it: every row of every episodes and data parquet
    file (no filtering by info.json), and the totals of info.json: all must agree."""
    info = json.loads((root / "meta/info.json").read_text())
    episode_rows = sum(pq.read_metadata(p).num_rows for p in root.glob("meta/episodes/*/*.parquet"))
    data_rows = sum(pq.read_metadata(p).num_rows for p in root.glob("data/*/*.parquet"))
    assert info["total_episodes"] == episode_rows == episodes
    assert info["total_frames"] == data_rows == sum(LENGTHS[:episodes])


def run_and_kill(tmp_path: Path, fmt: str, kill_at: int) -> Path:
    script = tmp_path / "kill_writer.py"
    script.write_text(KILL_SCRIPT.format(tests_dir=str(TESTS_DIR)))
    root = tmp_path / f"{fmt}_killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, str(script), fmt, str(root), str(kill_at)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    return root


@pytest.mark.parametrize("fmt,kill_at", KILL_POINTS)
def test_kill_during_commit_keeps_finished_episodes(tmp_path, fmt, kill_at):
    root = run_and_kill(tmp_path, fmt, kill_at)
    last_replace = 5 if fmt == "lerobot" else 3
    committed = 3 if kill_at > last_replace else 2

    if fmt == "lerobot":
        assert_raw_files_agree(root, committed)  # right after the kill, before any resume
        contents = read_lerobot_dataset(root)
        assert contents.info["total_episodes"] == committed
        assert contents.data.num_rows == sum(LENGTHS[:committed])
        with make_writer(root, resume=True) as writer:
            assert writer.num_episodes == committed
            write_episode(writer, committed, 4)  # an episode unlike the killed one
        assert not list(root.rglob("*.bac-tmp")) and not list(root.parent.glob(".*.bac-staging"))
        contents = read_lerobot_dataset(root)
        assert [e["length"] for e in contents.episodes] == LENGTHS[:committed] + [4]
        frames, _ = decode_frames(root / "videos/observation.images.cam/chunk-000/file-000.mp4")
        assert len(frames) == sum(LENGTHS[:committed]) + 4
        assert np.abs(frames[-4:].astype(int) - expected_images(committed, 4)).mean() < 6
        assert json.loads((root / "meta/stats.json").read_text())["index"]["count"] == [
            sum(LENGTHS[:committed]) + 4
        ]
    else:
        assert read_legacy_dataset(root)["summary"]["total_episodes"] == committed
        features = make_features(4, 2, cameras={"cam": (64, 64)})
        with LegacyDatasetWriter(root, FPS, features, resume=True) as writer:
            assert writer.num_episodes == committed
            write_episode(writer, committed, 4, meta={})
        assert not list(root.rglob("*.bac-tmp"))
        dataset = read_legacy_dataset(root)
        assert [e["length"] for e in dataset["episodes"]] == LENGTHS[:committed] + [4]
        assert sorted(p.name for p in (root / "episodes").iterdir()) == [
            f"episode_{i:06d}" for i in range(committed + 1)
        ]


# ---------------------------------------------------------------------------------------------
# legacy layout


def test_legacy_layout(tmp_path):
    root = tmp_path / "legacy"
    features = make_features(4, 2, cameras={"cam": (64, 64)})
    with LegacyDatasetWriter(root, FPS, features) as writer:
        for episode, length in enumerate(LENGTHS):
            write_episode(writer, episode, length, meta={"policy_mode": "bac", "seed": episode})
    summary = json.loads((root / "dataset_summary.json").read_text())
    assert summary == {
        "total_episodes": 3,
        "total_frames": sum(LENGTHS),
        "successful_episodes": 1,
        "fps": FPS,
    }
    metadata = json.loads((root / "episodes/episode_000001/metadata.json").read_text())
    assert metadata["episode_idx"] == 1 and metadata["length"] == 9 and metadata["success"] is True
    assert metadata["total_reward"] == pytest.approx(sum(0.1 * t for t in range(9)), rel=1e-6)
    assert metadata["video_paths"] == {"episode_video": "episodes/episode_000001/videos/episode_video.mp4"}
    assert metadata["timestamps"] == [round(t / FPS, 6) for t in range(9)] and metadata["seed"] == 1
    table = pq.read_table(root / "episodes_data.parquet")
    assert table.column_names == [
        "episode_idx", "frame_idx", "timestamp", "success",
        "obs_obs_0", "obs_obs_1", "obs_obs_2", "obs_obs_3", "action_0", "action_1",
        "reward", "video_episode_video",
    ]  # fmt: skip
    rows = table.filter(pc.equal(table["episode_idx"], 1)).to_pydict()
    assert rows["frame_idx"] == list(range(9)) and all(rows["success"])
    np.testing.assert_allclose(rows["obs_obs_1"], np.arange(9))
    np.testing.assert_allclose(rows["action_0"], 0.5 * np.arange(9) - 1)
    frames, _ = decode_frames(root / metadata["video_paths"]["episode_video"])
    assert len(frames) == 9 and np.abs(frames.astype(int) - expected_images(1, 9)).mean() < 6
    assert read_legacy_dataset(root)["summary"]["total_frames"] == sum(LENGTHS)
    with pytest.raises(FileExistsError, match="pass --resume"):
        LegacyDatasetWriter(root, FPS, features)
