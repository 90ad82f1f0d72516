"""Collecting policy rollouts as datasets (scripts/collect_lerobot_data.py, data_collection/collect.py):
per-step frame recording in the rollout loop, Push-T keypoints and Lift image collections (contents,
alignment with the simulator, metadata, videos), real lerobot loading, kill -9 + --resume, the
legacy layout, and the command's error lines. Tiny random checkpoints, a few short episodes."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium
import numpy as np
import pyarrow.compute as pc
import pytest
import torch
from checkpoint_fixtures import write_tiny_checkpoint
from gymnasium import spaces

from diffusion_policy.acceleration import CacheConfig
from diffusion_policy.common.files import sha256_of_file
from diffusion_policy.data_collection import read_legacy_dataset, read_lerobot_dataset
from diffusion_policy.data_collection.collect import (
    CollectSettings,
    collect_rollouts,
)
from diffusion_policy.data_collection.video import count_frames, decode_video
from diffusion_policy.env_runner.base_runner import (
    EnvRunner,
    EpisodeSpec,
    max_reward_metric,
)
from diffusion_policy.gym_util.frame_recording_wrapper import FrameRecordingWrapper

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "collect_lerobot_data.py"  # the original path, a wrapper of bac-collect
PUSHT_TASK = "Push the T-shaped block onto the T-shaped target."


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models run faster on one thread; also keeps in-process and subprocess numerics equal."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_cli():
    import diffusion_policy.cli.collect as cli

    return cli


def episode_rows(contents, episode_index: int) -> dict:
    """Columns of one episode's frames as numpy arrays."""
    frames = contents.data.filter(pc.equal(contents.data["episode_index"], episode_index))
    return {name: np.array(frames[name].to_pylist()) for name in frames.column_names}


def video_path(root: Path, contents, key: str) -> Path:
    episode = contents.episodes[0]
    return root / contents.info["video_path"].format(
        video_key=key, chunk_index=episode[f"videos/{key}/chunk_index"], file_index=episode[f"videos/{key}/file_index"]
    )


# ---------------------------------------------------------------------------------------------
# frame recording in the rollout loop (toy env)


class ToyEnv(gymnasium.Env):
    """state = [t, seed]; a 3x4x4 camera whose pixels hold t / 10; success once the action sum >= 3."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self):
        self.render_mode = "rgb_array"
        self.observation_space = spaces.Dict(
            {"cam_image": spaces.Box(0, 1, (3, 4, 4), np.float32), "state": spaces.Box(-np.inf, np.inf, (2,), np.float32)}
        )
        self.action_space = spaces.Box(-10, 10, (1,), np.float32)

    def _obs(self):
        return {
            "cam_image": np.full((3, 4, 4), self.t / 10, dtype=np.float32),
            "state": np.array([self.t, self.seed], dtype=np.float32),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.total, self.seed = 0, 0.0, seed
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.total += float(action[0])
        success = self.total >= 3
        return self._obs(), float(action[0]), success, False, {"is_success": success}

    def render(self):
        return np.full((6, 8, 3), self.t, dtype=np.uint8)


class OnesPolicy(torch.nn.Module):
    n_obs_steps, n_action_steps = 2, 2
    device, dtype = torch.device("cpu"), torch.float32

    def reset(self):
        pass

    def predict_action(self, obs_dict):
        batch = obs_dict["state"].shape[0]
        return {"action": torch.ones(batch, 2, 1)}


def test_frame_recording_wrapper_keeps_each_step():
    env = FrameRecordingWrapper(ToyEnv(), render=True)
    env.reset(seed=4)
    for _ in range(3):
        env.step(np.array([1.0], dtype=np.float32))
    frames = env.get_episode_frames()
    assert frames["observation"]["state"].shape == (4, 2)  # T + 1 observations
    np.testing.assert_array_equal(frames["observation"]["state"][:, 0], [0, 1, 2, 3])
    image = frames["observation"]["cam_image"]  # (T + 1, H, W, 3) uint8
    assert image.shape == (4, 4, 4, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[:, 0, 0, 0], np.round(np.arange(4) / 10 * 255))
    assert frames["action"].shape == (3, 1) and frames["reward"].tolist() == [1.0, 1.0, 1.0]
    assert frames["terminated"].tolist() == [False, False, True] and frames["is_success"].tolist() == [False, False, True]
    assert frames["render"].shape == (4, 6, 8, 3) and frames["render"][:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    env.reset(seed=5)
    assert len(env.get_episode_frames()["action"]) == 0  # a reset starts a new episode


@pytest.mark.parametrize("n_envs", [1, 2])  # SyncVectorEnv / AsyncVectorEnv
def test_env_runner_returns_episode_frames_in_episode_order(tmp_path, n_envs):
    episodes = [EpisodeSpec("test/", seed, None, False) for seed in (10, 11, 12)]
    runner = EnvRunner(str(tmp_path), ToyEnv, episodes, max_reward_metric, n_obs_steps=2, n_action_steps=2,
                       max_steps=6, n_envs=n_envs)
    try:
        result = runner.run(OnesPolicy(), episodes=episodes, record_frames=True)  # options are run arguments
    finally:
        runner.close()
    frames = result["episode_frames"]
    assert len(frames) == 3  # the padding of the last chunk is dropped
    for spec, episode in zip(episodes, frames):
        assert episode["observation"]["state"][0].tolist() == [0, spec.seed]
        assert len(episode["action"]) == 3  # success (action sum 3) ends the episode mid-chunk
        assert "render" not in episode
    plain = EnvRunner(str(tmp_path), ToyEnv, episodes[:1], max_reward_metric, 2, 2, 6)
    try:
        assert "episode_frames" not in plain.run(OnesPolicy())
    finally:
        plain.close()


# ---------------------------------------------------------------------------------------------
# Push-T keypoints (lowdim + rendered view) and Lift (two cameras)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("checkpoints")
    return {kind: write_tiny_checkpoint(base / f"{kind}.ckpt", kind) for kind in ("pusht_lowdim", "lift_image")}


@pytest.fixture(scope="module")
def pusht_dataset(checkpoints, tmp_path_factory) -> Path:
    """3 episodes of 16 steps, seeds 5..7, in chunks of 2 environments (the second one padded)."""
    root = tmp_path_factory.mktemp("pusht") / "dataset"
    settings = CollectSettings(num_episodes=3, seed=5, max_steps=16, n_envs=2)
    summary = collect_rollouts(checkpoints["pusht_lowdim"], root, CacheConfig(), settings, progress=False)
    assert (summary.episodes_before, summary.episodes_written, summary.fps) == (0, 3, 10)
    return root


@pytest.fixture(scope="module")
def lift_dataset(checkpoints, tmp_path_factory) -> Path:
    """2 episodes of 8 steps with two 84x84 cameras, BAC threshold caching."""
    root = tmp_path_factory.mktemp("lift") / "dataset"
    settings = CollectSettings(num_episodes=2, seed=0, max_steps=8, n_envs=2)
    cache = CacheConfig(mode="threshold", cache_threshold=3)
    collect_rollouts(checkpoints["lift_image"], root, cache, settings, progress=False)
    return root


def test_pusht_dataset_layout_and_metadata(pusht_dataset, checkpoints):
    contents = read_lerobot_dataset(pusht_dataset)  # checks bounds, frame indices, timestamps, video spans
    info = contents.info
    assert (info["total_episodes"], info["fps"], info["robot_type"]) == (3, 10, "pusht")
    assert contents.tasks == {PUSHT_TASK: 0}
    assert info["features"]["observation.state"]["shape"] == [20] and info["features"]["action"]["shape"] == [2]
    assert info["features"]["observation.images.render"]["shape"] == [96, 96, 3]
    for index, episode in enumerate(contents.episodes):
        assert episode["seed"] == 5 + index and episode["length"] == 16
        assert episode["policy_mode"] == "original" and json.loads(episode["policy_cache"]) == {"mode": "original"}
        assert episode["inference_ms_mean"] > 0 and episode["inference_ms_median"] > 0
        assert episode["num_inference_steps"] == 8
        assert episode["checkpoint_sha256"] == sha256_of_file(checkpoints["pusht_lowdim"])
        rows = episode_rows(contents, index)
        assert rows["next.done"].tolist() == [False] * 15 + [True]
        assert episode["success"] == bool(rows["next.success"].any())
        assert episode["total_reward"] == pytest.approx(rows["next.reward"].sum(), rel=1e-5)
    assert [e["inference_batch_size"] for e in contents.episodes] == [2, 2, 2]  # the runner pads the last chunk
    video = video_path(pusht_dataset, contents, "observation.images.render")
    assert count_frames(video) == info["total_frames"] == 48  # one rendered frame per dataset frame


def test_pusht_frames_replay_in_the_simulator(pusht_dataset):
    """Frame t holds the observation the action was chosen from; replaying the actions from the
    episode's seed reproduces every next observation and reward (Push-T is deterministic)."""
    from diffusion_policy.env.pusht.pusht_keypoints_env import PushTKeypointsEnv

    contents = read_lerobot_dataset(pusht_dataset)
    rows = episode_rows(contents, 1)
    env = PushTKeypointsEnv(legacy=True)  # pusht_lowdim runs legacy_test placement
    obs, _ = env.reset(seed=6)
    first_render = env.render()
    np.testing.assert_allclose(rows["observation.state"][0], obs, rtol=1e-6)
    for t in range(16):
        obs, reward, *_ = env.step(rows["action"][t])
        assert rows["next.reward"][t] == pytest.approx(reward, abs=1e-6)
        if t + 1 < 16:
            np.testing.assert_allclose(rows["observation.state"][t + 1], obs, rtol=1e-5, atol=1e-3)
    env.close()
    video = decode_video(video_path(pusht_dataset, contents, "observation.images.render"))
    assert np.abs(video[16].astype(int) - first_render.astype(int)).mean() < 8  # episode 1 starts at frame 16


def test_lift_image_dataset_has_camera_streams_and_cache_mode(lift_dataset):
    contents = read_lerobot_dataset(lift_dataset)
    info = contents.info
    assert (info["total_episodes"], info["total_frames"], info["fps"], info["robot_type"]) == (2, 16, 20, "panda")
    assert contents.tasks == {"Lift the cube.": 0}
    features = info["features"]
    assert features["observation.state"]["names"] == (
        [f"robot0_eef_pos_{i}" for i in range(3)] + [f"robot0_eef_quat_{i}" for i in range(4)]
        + [f"robot0_gripper_qpos_{i}" for i in range(2)]
    )
    assert features["action"]["shape"] == [7]
    for camera in ("agentview", "robot0_eye_in_hand"):
        key = f"observation.images.{camera}"
        assert features[key]["shape"] == [84, 84, 3]
        frames = decode_video(video_path(lift_dataset, contents, key))
        assert frames.shape == (16, 84, 84, 3)  # one camera frame per dataset frame
        assert frames[0].std() > 5  # a rendered scene, not a blank frame
    for index, episode in enumerate(contents.episodes):
        assert episode["seed"] == index and episode["policy_mode"] == "threshold"
        assert json.loads(episode["policy_cache"]) == {"mode": "threshold", "cache_threshold": 3}
        rows = episode_rows(contents, index)
        assert rows["observation.state"].shape == (8, 9) and np.all(np.abs(rows["action"]) <= 1 + 1e-6)


def test_collected_datasets_load_in_lerobot(pusht_dataset, lift_dataset, tmp_path):
    from test_lerobot_load import CHECK_SCRIPT, lerobot_python

    python = lerobot_python()  # a visible skip when the environment is not built
    jobs = {
        "pusht": {"root": str(pusht_dataset), "repo_id": "local/pusht", "indices": [0, 16, 47]},
        "lift": {"root": str(lift_dataset), "repo_id": "local/lift", "indices": [0, 15]},
    }
    out = tmp_path / "results.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf_cache"),
           "HF_HOME": str(tmp_path / "hf_home")}
    done = subprocess.run([str(python), "-c", CHECK_SCRIPT, json.dumps({"datasets": jobs, "out": str(out)})],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    pusht, lift = results["datasets"]["pusht"], results["datasets"]["lift"]
    assert (pusht["len"], pusht["num_episodes"], pusht["fps"]) == (48, 3, 10)
    assert pusht["episode_bounds"] == [[0, 16], [16, 32], [32, 48]]
    assert pusht["video_keys"] == ["observation.images.render"]
    ours = read_lerobot_dataset(pusht_dataset).data
    row = pusht["rows"]["16"]
    assert (row["episode_index"], row["frame_index"]) == (1, 0)
    np.testing.assert_allclose(row["action"], ours["action"][16].as_py(), rtol=1e-6)
    assert (lift["len"], lift["num_episodes"], lift["fps"]) == (16, 2, 20)
    assert sorted(lift["video_keys"]) == ["observation.images.agentview", "observation.images.robot0_eye_in_hand"]
    if results["torchcodec_problem"] is None:  # lerobot decodes the camera frames of each item
        item = lift["items"]["15"]
        assert np.array(item["observation.images.agentview"]).shape == (3, 84, 84)
        assert item["task"] == "Lift the cube."


# ---------------------------------------------------------------------------------------------
# kill -9 and --resume through the command line


def run_cli(args: list[str], **popen_kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen_kwargs)


def committed_episodes(root: Path) -> int:
    try:
        return json.loads((root / "meta" / "info.json").read_text())["total_episodes"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_kill_and_resume_continues_with_the_same_seeds(checkpoints, tmp_path):
    root = tmp_path / "killed"
    args = ["--checkpoint", str(checkpoints["pusht_lowdim"]), "--output_dir", str(root), "--num_episodes", "5",
            "--seed", "11", "--max_steps", "24", "--n_envs", "1", "--use_bac", "--cache_mode", "threshold",
            "--cache_threshold", "2"]
    process = run_cli(args)
    deadline = time.monotonic() + 120
    while committed_episodes(root) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, stderr[-2000:]
    interrupted_at = committed_episodes(root)
    assert 1 <= interrupted_at < 5

    resumed = run_cli(args + ["--resume"])
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-2000:]
    assert f"{5 - interrupted_at} episodes written" in stdout

    contents = read_lerobot_dataset(root)
    assert [e["seed"] for e in contents.episodes] == [11, 12, 13, 14, 15]
    assert {e["policy_mode"] for e in contents.episodes} == {"threshold"}
    assert contents.info["total_frames"] == 5 * 24 == count_frames(video_path(root, contents, "observation.images.render"))

    # Sampling noise is seeded per chunk, so the resumed dataset equals an uninterrupted collection.
    reference = tmp_path / "reference"
    settings = CollectSettings(num_episodes=5, seed=11, max_steps=24, n_envs=1, no_video=True, threads=1)
    cache = CacheConfig(mode="threshold", cache_threshold=2)
    collect_rollouts(checkpoints["pusht_lowdim"], reference, cache, settings, progress=False)
    expected = read_lerobot_dataset(reference).data
    for column in ("action", "observation.state"):  # frame for frame, to the bit
        np.testing.assert_array_equal(np.array(contents.data[column].to_pylist()),
                                      np.array(expected[column].to_pylist()))


# ---------------------------------------------------------------------------------------------
# legacy layout, resume in-process, errors


def test_legacy_format_and_resume(checkpoints, tmp_path):
    root = tmp_path / "legacy"
    cache = CacheConfig(mode="threshold", cache_threshold=2)
    settings = CollectSettings(num_episodes=2, seed=3, max_steps=8, n_envs=2, format="legacy")
    collect_rollouts(checkpoints["pusht_lowdim"], root, cache, settings, progress=False)
    settings = CollectSettings(num_episodes=3, seed=3, max_steps=8, n_envs=2, format="legacy", resume=True)
    summary = collect_rollouts(checkpoints["pusht_lowdim"], root, cache, settings, progress=False)
    assert (summary.episodes_before, summary.episodes_written) == (2, 1)

    dataset = read_legacy_dataset(root)  # checks summary / parquet / metadata / video frame counts agree
    assert dataset["summary"]["total_episodes"] == 3 and dataset["summary"]["total_frames"] == 24
    for index, metadata in enumerate(dataset["episodes"]):
        assert metadata["seed"] == 3 + index and metadata["length"] == 8
        assert metadata["policy_mode"] == "threshold" and metadata["policy_cache"]["cache_threshold"] == 2
        assert metadata["inference_ms_median"] > 0 and isinstance(metadata["success"], bool)
        video = root / metadata["video_paths"]["episode_video"]
        assert count_frames(video) == 8
    columns = dataset["data"].column_names
    assert [f"obs_obs_{i}" for i in range(20)] == [c for c in columns if c.startswith("obs_obs_")]
    assert {"episode_idx", "frame_idx", "timestamp", "success", "reward", "action_0", "action_1",
            "video_episode_video"} <= set(columns)

    settings = CollectSettings(num_episodes=3, seed=3, max_steps=8, format="legacy", resume=True)
    assert collect_rollouts(checkpoints["pusht_lowdim"], root, cache, settings, progress=False).episodes_written == 0


def test_without_use_bac_the_policy_runs_uncached_and_no_video_drops_the_render(checkpoints, tmp_path, capsys):
    root = tmp_path / "plain"
    argv = ["--checkpoint", str(checkpoints["pusht_lowdim"]), "--output_dir", str(root), "--num_episodes", "1",
            "--max_steps", "4", "--n_envs", "1", "--cache_mode", "threshold", "--no_video"]
    assert load_cli().main(argv) == 0
    assert "1 episodes written" in capsys.readouterr().out
    contents = read_lerobot_dataset(root)
    assert contents.episodes[0]["policy_mode"] == "original"
    assert contents.info["video_path"] is None and contents.info["total_frames"] == 4
    assert not any(ft["dtype"] == "video" for ft in contents.info["features"].values())


def error_lines(capsys, argv: list[str]) -> list[str]:
    assert load_cli().main(argv) == 2
    return capsys.readouterr().err.strip().splitlines()


def test_command_errors_are_one_line(checkpoints, pusht_dataset, tmp_path, capsys):
    ckpt = str(checkpoints["pusht_lowdim"])
    info_before = (pusht_dataset / "meta" / "info.json").read_text()
    lines = error_lines(capsys, ["--checkpoint", ckpt, "--output_dir", str(pusht_dataset), "--num_episodes", "4"])
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--resume" in lines[0]
    assert (pusht_dataset / "meta" / "info.json").read_text() == info_before  # untouched

    out = str(tmp_path / "new")
    lines = error_lines(capsys, ["--checkpoint", str(tmp_path / "missing.ckpt"), "--output_dir", out, "--num_episodes", "1"])
    assert len(lines) == 1 and "missing.ckpt does not exist" in lines[0]
    lines = error_lines(capsys, ["--checkpoint", ckpt, "--output_dir", out, "--num_episodes", "1",
                                 "--use_bac", "--cache_mode", "optimal"])
    assert len(lines) == 1 and "--optimal_steps_dir" in lines[0]
    lines = error_lines(capsys, ["--checkpoint", ckpt, "--output_dir", out, "--num_episodes", "0"])
    assert len(lines) == 1 and "--num_episodes must be >= 1" in lines[0]
    lines = error_lines(capsys, ["--checkpoint", ckpt, "--output_dir", out, "--num_episodes", "1",
                                 "--use_bac", "--cache_mode", "optimal", "--optimal_steps_dir", str(tmp_path / "none")])
    assert len(lines) == 1 and lines[0].startswith("error: ")
    lines = error_lines(capsys, ["--checkpoint", ckpt, "--output_dir", out, "--num_episodes", "1", "--device", "gpu"])
    assert len(lines) == 1 and "not a torch device" in lines[0]
    if not torch.cuda.is_available():
        lines = error_lines(capsys, ["--checkpoint", ckpt, "--output_dir", out, "--num_episodes", "1",
                                     "--device", "cuda:0"])
        assert len(lines) == 1 and "CUDA is not available" in lines[0]
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------
# what defines a dataset is stored at creation and compared on resume


@pytest.fixture(scope="module")
def recorded(checkpoints, tmp_path_factory) -> tuple[Path, dict]:
    """A 1-episode dataset and the settings it was made with."""
    root = tmp_path_factory.mktemp("recorded") / "dataset"
    kwargs = dict(num_episodes=1, seed=2, max_steps=4, n_envs=1, no_video=True)
    collect_rollouts(checkpoints["pusht_lowdim"], root, CacheConfig(mode="threshold", cache_threshold=2),
                     CollectSettings(**kwargs), progress=False)
    return root, kwargs


@pytest.mark.parametrize("change,field", [
    ({"checkpoint": "other"}, "checkpoint_fingerprint"),
    ({"cache": CacheConfig(mode="threshold", cache_threshold=3)}, "cache"),
    ({"cache": CacheConfig()}, "cache"),
    ({"max_steps": 5}, "max_steps"),
    ({"seed": 3}, "seed"),
    ({"num_inference_steps": 4}, "num_inference_steps"),
    ({"fps": 5}, "fps"),
])
def test_resume_with_other_settings_is_refused_before_any_rollout(recorded, checkpoints, tmp_path, change, field):
    root, kwargs = recorded
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    checkpoint = checkpoints["pusht_lowdim"]
    if change.pop("checkpoint", None):
        checkpoint = write_tiny_checkpoint(tmp_path / "other.ckpt", "pusht_lowdim", seed=7)
    cache = change.pop("cache", CacheConfig(mode="threshold", cache_threshold=2))
    settings = CollectSettings(**{**kwargs, "num_episodes": 2, "resume": True, **change})
    with pytest.raises(ValueError, match=rf"cannot resume .*other settings \({field}: ") as error:
        collect_rollouts(checkpoint, root, cache, settings, progress=False)
    assert "\n" not in str(error.value)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # nothing touched


def test_resume_with_the_same_settings_appends(recorded, checkpoints, tmp_path):
    import shutil

    root, kwargs = recorded
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    summary = collect_rollouts(checkpoints["pusht_lowdim"], copy, CacheConfig(mode="threshold", cache_threshold=2),
                               CollectSettings(**{**kwargs, "num_episodes": 2, "resume": True}), progress=False)
    assert (summary.episodes_before, summary.episodes_written) == (1, 1)


def test_identical_robosuite_collections_are_equal_frame_for_frame(tmp_path):
    """Two runs with the same seeds give the same frames (the Lift cube's size was once unseeded)."""
    checkpoint = write_tiny_checkpoint(tmp_path / "lift.ckpt", "lift_lowdim")
    columns = []
    for name in ("first", "second"):
        collect_rollouts(checkpoint, tmp_path / name, CacheConfig(),
                         CollectSettings(num_episodes=1, seed=4, max_steps=3, n_envs=1, no_video=True), progress=False)
        data = read_lerobot_dataset(tmp_path / name).data
        columns.append({c: np.array(data[c].to_pylist()) for c in ("observation.state", "action")})
    for column in ("observation.state", "action"):
        np.testing.assert_array_equal(columns[0][column], columns[1][column])


# ---------------------------------------------------------------------------------------------
# the directory lock


def test_lock_file_outlives_release_so_two_writers_never_hold_it(tmp_path):
    from diffusion_policy.data_collection.storage import DirectoryBusyError, DirectoryLock

    first, second = DirectoryLock(tmp_path), DirectoryLock(tmp_path)
    first.acquire()
    inode = first.path.stat().st_ino
    with pytest.raises(DirectoryBusyError, match="another writer is using"):
        second.acquire()
    first.release()
    # Deleting the file before unlocking let a third writer lock a new file while the first still held
    # the old one; the file stays, so every writer locks the same inode.
    assert first.path.stat().st_ino == inode
    second.acquire()
    with pytest.raises(DirectoryBusyError):
        first.acquire()
    second.release()


def test_second_writer_gets_one_line(recorded, checkpoints, capsys):
    from diffusion_policy.data_collection.storage import DirectoryLock

    root, _ = recorded
    lock = DirectoryLock(root)
    lock.acquire()
    try:
        lines = error_lines(capsys, ["--checkpoint", str(checkpoints["pusht_lowdim"]), "--output_dir", str(root),
                                     "--num_episodes", "2", "--resume", "--max_steps", "4", "--n_envs", "1",
                                     "--no_video", "--seed", "2", "--use_bac", "--cache_mode", "threshold",
                                     "--cache_threshold", "2"])
    finally:
        lock.release()
    assert len(lines) == 1 and "another writer is using" in lines[0]


def test_resume_inside_a_chunk_equals_an_uninterrupted_collection(checkpoints, tmp_path):
    """Chunks of 2 episodes: a collection stopped after 3 episodes (inside chunk [2, 3]) and resumed
    gives the frames an uninterrupted run gives."""
    cache = CacheConfig(mode="threshold", cache_threshold=2)
    kwargs = dict(seed=21, max_steps=6, n_envs=2, no_video=True, threads=1)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    collect_rollouts(checkpoints["pusht_lowdim"], whole, cache, CollectSettings(num_episodes=4, **kwargs), progress=False)
    collect_rollouts(checkpoints["pusht_lowdim"], parts, cache, CollectSettings(num_episodes=3, **kwargs), progress=False)
    summary = collect_rollouts(checkpoints["pusht_lowdim"], parts, cache,
                               CollectSettings(num_episodes=4, resume=True, **kwargs), progress=False)
    assert (summary.episodes_before, summary.episodes_written) == (3, 1)
    expected, got = read_lerobot_dataset(whole).data, read_lerobot_dataset(parts).data
    for column in ("action", "observation.state"):
        np.testing.assert_array_equal(np.array(got[column].to_pylist()), np.array(expected[column].to_pylist()))
