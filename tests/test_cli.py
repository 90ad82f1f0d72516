"""Every command-line tool: a description, help text for every flag, shared flags from one builder,
--help without heavy imports, and the bac-* entry points."""

import argparse
import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from diffusion_policy.cli import flags

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [  # the original script paths: thin wrappers of the bac-* entry points
    "scripts/eval_fast_diffusion_policy.py",
    "scripts/collect_lerobot_data.py",
    "scripts/benchmark_inference.py",
    "scripts/benchmark_suite.py",
    "scripts/run_default.py",
    "scripts/generate_demos.py",
    "scripts/aggregate_results.py",
    "scripts/calibration_study.py",
    "scripts/block_sensitivity.py",
    "scripts/demo_learnability.py",
    "diffusion_policy/activation_utils/get_optimal_cache_update_steps.py",
]
MODULES = ["evaluate", "collect", "benchmark", "suite", "default", "demos", "aggregate", "schedules", "calibration",
           "sensitivity", "learnability"]
ENTRY_POINTS = {"bac-eval": "evaluate", "bac-schedules": "schedules", "bac-collect": "collect",
                "bac-benchmark": "benchmark", "bac-suite": "suite", "bac-default": "default",
                "bac-aggregate": "aggregate", "bac-demos": "demos", "bac-calibration": "calibration",
                "bac-sensitivity": "sensitivity", "bac-learnability": "learnability"}


def parsers_of(parser: argparse.ArgumentParser):
    """The parser and each of its subcommand parsers."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers_of(sub)


def module_parsers(name: str):
    return list(parsers_of(importlib.import_module(f"diffusion_policy.cli.{name}").build_parser()))


@pytest.mark.parametrize("name", MODULES)
def test_every_flag_has_help_and_the_parser_a_description(name):
    for parser in module_parsers(name):
        assert parser.description and parser.description.strip(), f"{parser.prog} has no description"
        undocumented = [a.option_strings or [a.dest] for a in parser._actions
                        if not a.help and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        assert not undocumented, f"{parser.prog}: flags without help text: {undocumented}"


def shared_flags() -> dict[str, argparse.Action]:
    """Every flag the builder defines, by its option string."""
    parser = argparse.ArgumentParser()
    flags.add_checkpoint_flags(parser)
    flags.add_output_flag(parser, None, "x")
    flags.add_device_flags(parser)
    flags.add_cache_flags(parser)
    flags.add_rollout_flags(parser)
    flags.add_video_flag(parser)
    return {option: action for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("name", MODULES)
def test_shared_flags_come_from_the_one_builder(name):
    """A flag spelled like a shared one is the shared one: same spellings, type, action (a command
    may set another default for its own job, never another type or meaning)."""
    shared = shared_flags()
    for parser in module_parsers(name):
        for action in parser._actions:
            for option in action.option_strings:
                if option in shared and action.help != argparse.SUPPRESS and option not in ("-h", "--help"):
                    reference = shared[option]
                    assert action.type == reference.type, f"{parser.prog} {option}: type differs from the builder's"
                    assert type(action) is type(reference), f"{parser.prog} {option}: action differs"
                    assert [o for o in action.option_strings] == reference.option_strings, (parser.prog, option)


def test_one_spelling_per_concept():
    """The spellings the tools used to disagree on are gone."""
    retired = {"--eval_seed", "--thresholds", "--modes", "--output"}
    for name in MODULES:
        for parser in module_parsers(name):
            used = {o for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings}
            assert not (used & retired), f"{parser.prog} still spells {used & retired}"


def test_cache_defaults_are_cache_configs():
    from diffusion_policy.acceleration import CacheConfig

    parser = argparse.ArgumentParser()
    flags.add_cache_flags(parser)
    config = flags.cache_config_from_args(parser.parse_args([]))
    assert config == CacheConfig()
    with pytest.raises(ValueError, match="--num_caches takes one value here"):
        flags.cache_config_from_args(parser.parse_args(["--num_caches", "5,10"]))


@pytest.mark.parametrize("argv", [
    ["bac-eval", "-c", "missing.ckpt"], ["bac-schedules", "-c", "missing.ckpt", "-o", "out"], ["bac-default"],
    ["bac-calibration", "-c", "missing.ckpt"], ["bac-demos", "--task", "lift", "-o", "never_written.hdf5"]])
def test_commands_that_run_once_take_one_seed(argv, tmp_path, monkeypatch, capsys):
    """--seed is a list flag (bac-suite runs one evaluation per seed); a command that runs once says so in one
    line, before it reads or writes anything."""
    import importlib

    monkeypatch.chdir(tmp_path)
    module = {"bac-eval": "evaluate", "bac-schedules": "schedules", "bac-default": "default",
              "bac-calibration": "calibration", "bac-demos": "demos"}[argv[0]]
    main = importlib.import_module(f"diffusion_policy.cli.{module}").main
    try:
        code = main(argv[1:] + ["--seed", "0,1"])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err + (code if isinstance(code, str) else "")
    assert code not in (0, None) and "--seed takes one value here, got 0,1" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_does_not_import_torch_or_matplotlib(script):
    """--help answers at once: the parser is built before any heavy import."""
    code = (f"import sys, runpy; sys.argv = [{script!r}, '--help']\n"
            "try:\n"
            f"    runpy.run_path({str(REPO_ROOT / script)!r}, run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "import json; print(json.dumps({m: m in sys.modules for m in ('torch', 'matplotlib', 'robosuite')}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert not any(imported.values()), f"{script} --help imports {[m for m, yes in imported.items() if yes]}"


def test_entry_points_are_declared_and_run():
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert declared == {name: f"diffusion_policy.cli.{module}:main" for name, module in ENTRY_POINTS.items()}
    bin_dir = Path(sys.executable).parent
    for name in ENTRY_POINTS:
        script = bin_dir / name
        if not script.exists():
            pytest.skip(f"{name} is not installed in this environment; reinstall with pip install -e .")
        done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and f"usage: {name}" in done.stdout, (name, done.stderr[-500:])


def test_main_job_defaults_are_job_settings():
    """bac-default with no flags runs JobSettings() (each list flag's default is one value); --full raises the
    episodes to the paper's 50."""
    from diffusion_policy.cli import default
    from diffusion_policy.default_job import JobSettings

    parser = default.build_parser()
    assert default.settings_from_args(parser.parse_args([])) == JobSettings()
    full = default.settings_from_args(parser.parse_args(["--full", "--num_bu_blocks", "0", "--seed", "2"]))
    assert (full.n_test, full.n_envs, full.num_bu_blocks, full.seed) == (50, 25, 0, 2)
