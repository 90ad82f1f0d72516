"""--compile: compiled and eager sampling agree in every mode, with a bounded set of graphs."""

import dataclasses

import pytest
import torch
import torch._dynamo.utils

from diffusion_policy.acceleration import CacheConfig, apply_cache, cache_report, remove_cache
from diffusion_policy.acceleration import compile as bac_compile
from diffusion_policy.cli import flags
from diffusion_policy.common.pytorch_util import host_to_device
from tests.test_acceleration import N_STEPS, build_schedules, make_policy, sample

pytestmark = pytest.mark.skipif(bac_compile.compiler_unavailable("cpu") is not None,
                                reason=f"torch.compile unavailable here: {bac_compile.compiler_unavailable('cpu')}")


@pytest.fixture
def obs():
    return {"obs": torch.randn(2, 2, 5, generator=torch.Generator().manual_seed(1))}


def _configs(steps_dir):
    optimal = dict(mode="optimal", optimal_steps_dir=str(steps_dir / "optimal_steps" / "cosine"), num_caches=3)
    return {
        "original": CacheConfig("original"),
        "threshold_1": CacheConfig("threshold", cache_threshold=1),
        "threshold_3": CacheConfig("threshold", cache_threshold=3),
        "threshold_3_exact": CacheConfig("threshold", cache_threshold=3, reuse_condition=False,
                                         fuse_cached_blocks=False),
        "optimal_3": CacheConfig(**optimal),
        "optimal_3_bu2": CacheConfig(**optimal, num_bu_blocks=2),
    }


def test_compiled_equals_eager_in_every_mode_with_a_bounded_set_of_graphs(obs, tmp_path):
    policy = make_policy()
    build_schedules(policy, obs, tmp_path)
    for label, config in _configs(tmp_path).items():
        apply_cache(policy, config)
        expected = sample(policy, obs)
        apply_cache(policy, dataclasses.replace(config, compile=True))
        torch.testing.assert_close(sample(policy, obs), expected, atol=1e-5, rtol=0, msg=label)
        # a second run under other noise: same graphs, still equal
        compiled_again = sample(policy, obs, seed=3)
        apply_cache(policy, config)
        torch.testing.assert_close(compiled_again, sample(policy, obs, seed=3), atol=1e-5, rtol=0, msg=label)
    # Every mode, every schedule above, and the runs again: no new graph (the set is bounded by the
    # step kinds, not by the schedules' distinct step plans).
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs >= 4  # forward, reuse step, full step, update: compiled for real, not a silent fallback
    for config in _configs(tmp_path).values():
        apply_cache(policy, dataclasses.replace(config, compile=True))
        sample(policy, obs, seed=5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


def test_compiled_cache_counts_the_blocks_it_computes(obs):
    policy = make_policy()
    apply_cache(policy, CacheConfig("threshold", cache_threshold=3, compile=True))
    sample(policy, obs)
    # full steps run as one compiled call that refills every cache: still counted per block
    assert set(cache_report(policy)["block_evaluations"].values()) == {len(range(0, N_STEPS, 3))}
    assert cache_report(policy)["compile"] == "auto"


def test_remove_cache_takes_the_compile_hooks_off(obs):
    policy = make_policy()
    expected = sample(policy, obs)
    apply_cache(policy, CacheConfig("original", compile=True))
    assert "forward" in policy.model.__dict__ and "forward" in policy.scheduler_update.__dict__
    remove_cache(policy)
    assert "forward" not in policy.model.__dict__ and "forward" not in policy.scheduler_update.__dict__
    assert torch.equal(sample(policy, obs), expected)


def test_unavailable_compiler_warns_once_and_runs_eagerly(obs, monkeypatch, capsys):
    monkeypatch.setattr(bac_compile, "compiler_unavailable", lambda device: "no C++ compiler (test)")
    monkeypatch.setattr(bac_compile, "_WARNED", set())
    policy = make_policy()
    apply_cache(policy, CacheConfig("threshold", cache_threshold=3))
    expected = sample(policy, obs)
    apply_cache(policy, CacheConfig("threshold", cache_threshold=3, compile=True))
    apply_cache(policy, CacheConfig("threshold", cache_threshold=3, compile=True))
    err = capsys.readouterr().err
    assert err.count("warning: --compile ignored: no C++ compiler (test); running eagerly") == 1
    assert "forward" not in policy.scheduler_update.__dict__  # no compile hook
    assert torch.equal(sample(policy, obs), expected)  # the same cache, eager


def test_a_failing_compilation_falls_back_to_eager_with_one_warning(monkeypatch, capsys):
    class CompileFailure(Exception):
        pass

    CompileFailure.__module__ = "torch._inductor.exc"

    def broken(*args):
        raise CompileFailure("C++ compile error: cannot find Python.h\nmore lines")

    monkeypatch.setattr(bac_compile, "_WARNED", set())
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: broken)
    function = bac_compile._CompiledFunction(lambda x: x + 1, None)
    assert function(torch.ones(1)).item() == 2 and function(torch.ones(1)).item() == 2
    err = capsys.readouterr().err
    assert err.count("torch.compile failed") == 1 and "cannot find Python.h" in err and "more lines" not in err
    # errors that are not the compiler's propagate
    function = bac_compile._CompiledFunction(lambda x: x + 1, None)
    monkeypatch.setattr(function, "compiled", lambda x: (_ for _ in ()).throw(ValueError("shape")))
    with pytest.raises(ValueError, match="shape"):
        function(torch.ones(1))


def test_compile_flags_round_trip_and_modes_are_checked():
    parser = flags.argparse.ArgumentParser()
    flags.add_cache_flags(parser)
    config = flags.cache_config_from_args(parser.parse_args(["--compile", "--compile_mode", "max-autotune"]))
    assert config.compile and config.compile_mode == "max-autotune"
    assert flags.cache_config_from_args(parser.parse_args(flags.cache_config_flags(config))) == config
    assert config.describe()["compile"] == "max-autotune"
    assert "compile" not in CacheConfig().describe()
    with pytest.raises(ValueError, match="unknown compile mode"):
        CacheConfig(compile=True, compile_mode="fast")


def test_default_compile_mode_uses_cuda_graphs_on_cuda_only():
    assert bac_compile.default_compile_mode(torch.device("cuda", 0)) == "reduce-overhead"
    assert bac_compile.default_compile_mode(torch.device("cpu")) is None


def test_host_to_device_on_cpu_keeps_values_and_converts_dtype():
    import numpy as np

    moved = host_to_device(np.arange(6, dtype=np.float64).reshape(2, 3), "cpu", torch.float32)
    assert moved.dtype == torch.float32 and moved.tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_script_refuses_without_cuda_in_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(["bash", "scripts/gpu_check.sh", str(tmp_path / "out")], capture_output=True, text=True,
                            env={**__import__("os").environ, "PYTHON": sys.executable}, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no CUDA device visible" in result.stderr
    assert not (tmp_path / "out" / "gpu_check.json").exists()
