"""Every bad flag gets one line naming the allowed range, before any rollout or file is written."""

import pytest

from checkpoint_fixtures import write_tiny_checkpoint
from diffusion_policy.activation_utils.calibrate import compute_optimal_schedules

# the tiny checkpoint: 2 decoder layers (6 cached blocks), 8 denoising steps


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    ckpt = write_tiny_checkpoint(tmp / "tiny.ckpt", "pusht_lowdim")
    compute_optimal_schedules(str(ckpt), str(tmp / "assets"), num_caches_list=(2,), metrics=("cosine",),
                              make_plots=False)
    return ckpt, tmp / "assets" / "optimal_steps" / "cosine"


def one_error_line(capsys, main, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("flags,expected", [
    (["--n_envs", "-2"], "--n_envs must be >= 1"),
    (["--n_envs", "0"], "--n_envs must be >= 1"),
    (["--max_steps", "0"], "--max_steps must be >= 1"),
    (["--latency_samples", "0"], "--latency_samples must be >= 1"),
    (["--n_test", "0", "--n_train", "0"], "nothing to evaluate"),
    (["--cache_mode", "threshold", "--cache_threshold", "8"], r"--cache_threshold must be in [1, 7]"),
    (["--cache_mode", "optimal", "--num_caches", "2", "--num_bu_blocks", "7"], "--num_bu_blocks must be in [0, 6]"),
    (["--cache_mode", "optimal", "--num_caches", "9"], "--num_caches must be in [1, 8]"),
    (["--device", "cuda:0"], "--device cuda:0"),
    (["--device", "tpu"], "--device 'tpu' is not a torch device"),
])
def test_eval_flags_are_checked_before_the_rollout(tiny, tmp_path, capsys, flags, expected):
    import diffusion_policy.cli.evaluate as eval_script

    ckpt, steps_dir = tiny
    out = tmp_path / "out"
    argv = ["--checkpoint", str(ckpt), "-o", str(out), "--n_test", "1", "--n_train", "0", "--max_steps", "4",
            "--skip_video", "--optimal_steps_dir", str(steps_dir), *flags]
    line = one_error_line(capsys, eval_script.main, argv)
    assert expected in line
    assert not (out / "eval_results.json").exists() and not (out / "media").exists()


@pytest.mark.parametrize("kind", ["file", "below_a_file"])
def test_eval_output_that_cannot_be_a_directory_is_refused_up_front(tiny, tmp_path, capsys, kind):
    import diffusion_policy.cli.evaluate as eval_script

    ckpt, _ = tiny
    blocker = tmp_path / "results.json"
    blocker.write_text("{}")
    out = blocker if kind == "file" else blocker / "sub"
    line = one_error_line(capsys, eval_script.main, ["--checkpoint", str(ckpt), "-o", str(out), "--n_test", "1",
                                                     "--n_train", "0", "--skip_video"])
    assert "results.json" in line and blocker.read_text() == "{}"


def test_eval_results_are_written_before_the_re_timing(tiny, tmp_path, monkeypatch):
    """A failure after the rollout (here: in the re-timing) keeps the rollout's results on disk."""
    from diffusion_policy.acceleration import CacheConfig
    from diffusion_policy.env_runner import evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("re-timing failed")

    monkeypatch.setattr(evaluate, "compare_on_recorded", broken)
    ckpt, _ = tiny
    with pytest.raises(RuntimeError, match="re-timing failed"):
        evaluate.evaluate_checkpoint(str(ckpt), str(tmp_path / "out"), CacheConfig(),
                                     settings=evaluate.EvalSettings(n_test=1, n_train=0, n_envs=1, max_steps=4,
                                                                    skip_video=True, latency_samples=1))
    assert (tmp_path / "out" / "eval_results.json").is_file()


def test_schedule_flags(tiny, tmp_path, capsys):
    import diffusion_policy.cli.schedules as cli

    ckpt, _ = tiny
    line = one_error_line(capsys, cli.main, ["-c", str(ckpt), "-o", str(tmp_path / "a"), "--num_caches", "2,9",
                                            "--no_plots"])
    assert "--num_caches must be in [1, 8]" in line
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("flags,expected", [
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--n_envs", "0"], "--n_envs must be >= 1"),
    (["--num_caches", "0"], "--num_caches must be >= 1"),
    (["--device", "cuda:7"], "--device cuda:7"),
])
def test_suite_flags(tmp_path, capsys, flags, expected):
    import diffusion_policy.cli.suite as suite

    line = one_error_line(capsys, suite.main, ["run", "--checkpoint_root", str(tmp_path), *flags])
    assert expected in line
