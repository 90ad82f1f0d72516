"""Datasets from LeRobotDatasetWriter load in real lerobot 0.4.4 (`LeRobotDataset(repo_id, root=...)`,
offline), which is the proof that the v3.0 files are right.

lerobot pins torch < 2.11, so it runs in its own virtualenv at $BAC_LEROBOT_VENV or
~/.cache/bac-lerobot-venv, built by `bash scripts/build_lerobot_env.sh` (CPU torch 2.13 and fully
pinned packages; .ci/run builds it). Without it these tests skip, naming that command. Decoding
video frames needs torchcodec, which needs FFmpeg 5.1 libraries (Debian: libavcodec59
libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8); without them the
decoding test skips and the others still run.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_lerobot_writer import (
    FPS,
    LENGTHS,
    TASK,
    expected_images,
    make_writer,
    run_and_kill,
    synthetic_frame,
    write_episode,
)

VENV_DIR = Path(os.environ.get("BAC_LEROBOT_VENV", Path.home() / ".cache" / "bac-lerobot-venv"))
REQUIREMENTS = Path(__file__).resolve().parents[1] / "scripts" / "lerobot_env" / "requirements.txt"

CHECK_SCRIPT = r"""
import json, sys
import torch

# PyPI's torchvision is a CUDA build whose C++ ops cannot load next to CPU torch; lerobot only uses its
# Python transforms. torchvision registers fake kernels for these two ops at import, so declare them.
_ops = torch.library.Library("torchvision", "DEF")
_ops.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_ops.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

from lerobot.datasets.lerobot_dataset import LeRobotDataset


def plain(value):
    return value.tolist() if isinstance(value, torch.Tensor) else value


def torchcodec_problem():
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as e:  # missing FFmpeg libraries surface here
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


spec = json.loads(sys.argv[1])
results = {"torchcodec_problem": torchcodec_problem(), "datasets": {}}
for name, job in spec["datasets"].items():
    ds = LeRobotDataset(job["repo_id"], root=job["root"])
    result = {
        "len": len(ds),
        "num_episodes": ds.num_episodes,
        "fps": ds.fps,
        "features": {k: {"dtype": v["dtype"], "shape": list(v["shape"])} for k, v in ds.features.items()},
        "video_keys": ds.meta.video_keys,
        "episode_bounds": [[e["dataset_from_index"], e["dataset_to_index"]] for e in ds.meta.episodes],
        "meta_total_episodes": ds.meta.total_episodes,
        "hf_rows": len(ds.hf_dataset) if ds.hf_dataset is not None else None,
        "stats_action_mean": ds.meta.stats["action"]["mean"].tolist(),
        "rows": {i: {k: plain(v) for k, v in ds.hf_dataset[i].items()} for i in job["indices"]},
    }
    if results["torchcodec_problem"] is None or not ds.meta.video_keys:
        result["items"] = {i: {k: plain(v) for k, v in ds[i].items()} for i in job["indices"]}
        if job.get("delta_timestamps"):
            delta = job["delta_timestamps"]
            windowed = LeRobotDataset(job["repo_id"], root=job["root"], delta_timestamps=delta)
            result["window"] = {k: plain(v) for k, v in windowed[job["indices"][0]].items()}
    results["datasets"][name] = result
with open(spec["out"], "w") as f:
    json.dump(results, f)
"""


def lerobot_python() -> Path:
    """Python of the lerobot cross-check environment; a visible skip, naming the command that builds
    it, when it is missing or was built from other pins (tests never download anything)."""
    python = VENV_DIR / "bin" / "python"
    marker = VENV_DIR / "bac-requirements.txt"
    pins = REQUIREMENTS.read_text()
    if not (python.exists() and marker.exists() and marker.read_text().startswith(pins)):
        pytest.skip(f"the lerobot cross-check environment {VENV_DIR} is not built or is outdated; "
                    "build it with: bash scripts/build_lerobot_env.sh")
    return python


@pytest.fixture(scope="module")
def lerobot_results(tmp_path_factory) -> dict:
    """Writes several datasets, loads them all with lerobot in one subprocess, returns what it saw."""
    python = lerobot_python()
    base = tmp_path_factory.mktemp("lerobot_load")
    roots = {}

    roots["video"] = base / "video"
    with make_writer(roots["video"]) as writer:
        for episode, length in enumerate(LENGTHS):
            write_episode(writer, episode, length)

    roots["lowdim"] = base / "lowdim"
    with make_writer(roots["lowdim"], cameras=()) as writer:
        write_episode(writer, 0, 4, cameras=())
        write_episode(writer, 1, 3, cameras=())

    roots["rolled"] = base / "rolled"  # every episode in its own data/video file, 2 files per chunk
    with make_writer(
        roots["rolled"],
        cameras=("cam", "wrist"),
        chunks_size=2,
        data_files_size_in_mb=1e-9,
        video_files_size_in_mb=1e-9,
    ) as writer:
        for episode, length in enumerate([3, 4, 5]):
            write_episode(writer, episode, length, cameras=("cam", "wrist"))

    killed_dir = base / "killed"
    killed_dir.mkdir()
    roots["killed"] = run_and_kill(killed_dir, "lerobot", 3)  # dies after writing episode 2's video and data

    resumed_dir = base / "resumed"
    resumed_dir.mkdir()
    roots["resumed"] = run_and_kill(resumed_dir, "lerobot", 4)
    with make_writer(roots["resumed"], resume=True) as writer:
        write_episode(writer, 2, 4)

    jobs = {
        "video": {
            "indices": [0, 5, 6, 14, 19],
            "delta_timestamps": {"observation.images.cam": [-0.1, 0.0], "action": [0.0, 0.1, 0.2]},
        },
        "lowdim": {"indices": [0, 6]},
        "rolled": {"indices": [0, 3, 11]},
        "killed": {"indices": [0, 14]},
        "resumed": {"indices": [14, 15, 18]},
    }
    for name, job in jobs.items():
        job.update(root=str(roots[name]), repo_id=f"local/{name}")
    out = base / "lerobot_results.json"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(base / "hf_cache"),
        "HF_HOME": str(base / "hf_home"),
    }
    spec = json.dumps({"datasets": jobs, "out": str(out)})
    done = subprocess.run(
        [str(python), "-c", CHECK_SCRIPT, spec], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    return {"torchcodec_problem": results["torchcodec_problem"], **results["datasets"]}


def needs_decoding(results: dict) -> None:
    if results["torchcodec_problem"]:
        pytest.skip(
            f"torchcodec cannot decode here ({results['torchcodec_problem']}); install FFmpeg 5.1 libraries"
        )


def test_lerobot_loads_metadata_and_frames(lerobot_results):
    video = lerobot_results["video"]
    assert video["len"] == sum(LENGTHS) and video["num_episodes"] == len(LENGTHS) and video["fps"] == FPS
    assert video["video_keys"] == ["observation.images.cam"]
    assert video["features"]["observation.state"] == {"dtype": "float32", "shape": [4]}
    assert video["features"]["observation.images.cam"] == {"dtype": "video", "shape": [64, 64, 3]}
    bounds = np.concatenate([[0], np.cumsum(LENGTHS)])
    assert video["episode_bounds"] == np.stack([bounds[:-1], bounds[1:]], axis=1).tolist()
    row = video["rows"]["14"]  # episode 1, frame 8
    expected = synthetic_frame(1, 8, LENGTHS[1])
    assert (row["episode_index"], row["frame_index"], row["index"], row["task_index"]) == (1, 8, 14, 0)
    np.testing.assert_allclose(row["observation.state"], expected["observation.state"], rtol=1e-6)
    np.testing.assert_allclose(row["action"], expected["action"], rtol=1e-6)
    assert row["next.done"] is True and row["next.success"] is True
    assert row["timestamp"] == pytest.approx(0.8)
    assert len(video["stats_action_mean"]) == 2


def test_lerobot_loads_lowdim_items(lerobot_results):
    lowdim = lerobot_results["lowdim"]
    assert lowdim["len"] == 7 and lowdim["num_episodes"] == 2 and lowdim["video_keys"] == []
    item = lowdim["items"]["6"]
    assert (item["episode_index"], item["frame_index"], item["task"]) == (1, 2, TASK)
    np.testing.assert_allclose(item["action"], synthetic_frame(1, 2, 3)["action"], rtol=1e-6)


def test_lerobot_loads_interrupted_and_resumed_datasets(lerobot_results):
    killed = lerobot_results["killed"]  # read by lerobot right after the kill, before any resume
    assert killed["len"] == sum(LENGTHS[:2]) and killed["num_episodes"] == 2
    # what lerobot loads agrees with the totals: no episode row, no data row of the unfinished episode
    assert len(killed["episode_bounds"]) == killed["meta_total_episodes"] == 2
    assert killed["hf_rows"] == killed["len"]
    assert killed["rows"]["14"]["episode_index"] == 1 and killed["rows"]["14"]["frame_index"] == 8
    resumed = lerobot_results["resumed"]
    assert resumed["len"] == sum(LENGTHS[:2]) + 4 and resumed["num_episodes"] == 3
    assert resumed["rows"]["18"]["episode_index"] == 2 and resumed["rows"]["18"]["frame_index"] == 3
    rolled = lerobot_results["rolled"]
    assert rolled["len"] == 12 and rolled["num_episodes"] == 3 and len(rolled["video_keys"]) == 2


def test_lerobot_decodes_video_frames(lerobot_results):
    needs_decoding(lerobot_results)

    def image(item, key="observation.images.cam"):  # lerobot gives (3, H, W) floats in [0, 1]
        return np.round(np.array(item[key]).transpose(1, 2, 0) * 255)

    for name, index, episode, frame, length in [
        ("video", 0, 0, 0, LENGTHS[0]),
        ("video", 6, 1, 0, LENGTHS[1]),
        ("video", 19, 2, 4, LENGTHS[2]),
        ("killed", 14, 1, 8, LENGTHS[1]),
        ("resumed", 15, 2, 0, 4),  # the resumed episode, not the one the kill interrupted
        ("resumed", 18, 2, 3, 4),
    ]:
        item = lerobot_results[name]["items"][str(index)]
        assert (item["episode_index"], item["frame_index"]) == (episode, frame)
        assert np.abs(image(item) - expected_images(episode, length)[frame]).mean() < 6, (name, index)
    rolled = lerobot_results["rolled"]["items"]["11"]  # episode 2, frame 4: chunk 1, file 0
    assert (
        np.abs(image(rolled, "observation.images.wrist") - expected_images(2, 5, cam_index=1)[4]).mean() < 6
    )
    window = lerobot_results["video"]["window"]  # index 0 with frames at -0.1 s (padded) and 0 s
    assert np.array(window["observation.images.cam"]).shape == (2, 3, 64, 64)
    assert window["observation.images.cam_is_pad"] == [True, False]
    assert np.array(window["action"]).shape == (3, 2) and window["action_is_pad"] == [False, False, False]
