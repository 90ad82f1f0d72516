"""Every command-line tool: a description, help text for every flag, --help without heavy imports."""

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [
    "scripts/eval_fast_diffusion_policy.py",
    "scripts/collect_lerobot_data.py",
    "scripts/benchmark_inference.py",
    "scripts/benchmark_suite.py",
    "scripts/run_default.py",
    "scripts/generate_demos.py",
    "scripts/aggregate_results.py",
    "diffusion_policy/activation_utils/get_optimal_cache_update_steps.py",
]


def load_script(relative: str):
    path = REPO_ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses defined in the script look their module up here
    spec.loader.exec_module(module)
    return module


def parsers_of(parser: argparse.ArgumentParser):
    """The parser and each of its subcommand parsers."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers_of(sub)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_has_help_and_the_parser_a_description(script):
    for parser in parsers_of(load_script(script).build_parser()):
        assert parser.description and parser.description.strip(), f"{script}: {parser.prog} has no description"
        undocumented = [a.option_strings or [a.dest] for a in parser._actions
                        if not a.help and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        assert not undocumented, f"{script}: flags without help text: {undocumented}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_does_not_import_torch_or_matplotlib(script):
    """--help must answer at once: the parser is built before any heavy import."""
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
