"""Blocks kept exact (`recompute_blocks`) and the per-block sensitivity study built on them."""

import json

import pytest
import torch

from diffusion_policy.acceleration import CacheConfig, apply_cache, update_steps_for
from diffusion_policy.acceleration.hooks import decoder_blocks
from diffusion_policy.activation_utils.sensitivity import block_sensitivity, relative_action_error
from tests.test_acceleration import N_STEPS, make_policy, sample


@pytest.fixture
def obs():
    return {"obs": torch.randn(2, 2, 5, generator=torch.Generator().manual_seed(1))}


def test_recomputed_blocks_update_at_every_step_and_the_rest_keep_the_mode(obs):
    policy = make_policy()
    names = list(decoder_blocks(policy.model))
    config = CacheConfig("threshold", cache_threshold=4, recompute_blocks=("decoder.layers.1.ffn", "decoder.layers.0.sa"))
    steps = update_steps_for(policy, config)
    for name in names:
        expected = list(range(N_STEPS)) if name in config.recompute_blocks else list(range(0, N_STEPS, 4))
        assert steps[name] == expected, name
    assert config.describe()["recompute_blocks"] == ["decoder.layers.1.ffn", "decoder.layers.0.sa"]
    # every block recomputed: the uncached policy's actions (fused sums: float rounding only)
    reference = sample(policy, obs)
    apply_cache(policy, CacheConfig("threshold", cache_threshold=4, recompute_blocks=tuple(names)))
    torch.testing.assert_close(sample(policy, obs), reference, atol=1e-5, rtol=1e-5)
    apply_cache(policy, config)
    assert not torch.allclose(sample(policy, obs), reference, atol=1e-5)  # the other blocks are cached
    with pytest.raises(ValueError, match=r"--recompute_blocks: no block decoder\.layers\.9\.ffn in this model"):
        apply_cache(policy, CacheConfig("threshold", recompute_blocks=("decoder.layers.9.ffn",)))


def test_recompute_blocks_flag_round_trips():
    import diffusion_policy.cli.evaluate as eval_cli
    from diffusion_policy.cli import flags

    config = CacheConfig("threshold", cache_threshold=4, recompute_blocks=("decoder.layers.0.ffn", "decoder.layers.2.ca"))
    parsed = eval_cli.parse_args(["-c", "x.ckpt", "-o", "out", *flags.cache_config_flags(config)])
    assert flags.cache_config_from_args(parsed) == config
    import diffusion_policy.cli.suite as suite

    assert suite.setting_name(config) == "threshold_4_recompute_l0ffn_l2ca"


def test_block_sensitivity_measures_each_block_alone_and_spared(obs):
    policy = make_policy()
    config = CacheConfig("threshold", cache_threshold=4)
    report = block_sensitivity(policy, [obs], config, seeds=(0, 1), progress=lambda it, **_: it)
    names = list(decoder_blocks(policy.model))
    assert [b.block for b in report.blocks] == names and report.observations == 1 and report.seeds == [0, 1]
    assert all(b.update_steps == len(range(0, N_STEPS, 4)) for b in report.blocks)
    # each figure is the relative action error of the configuration it names, against the uncached policy
    references = [[sample(policy, obs, seed) for seed in (0, 1)]]  # the study left the policy uncached
    apply_cache(policy, CacheConfig("original"))
    torch.testing.assert_close(references[0][0], sample(policy, obs))
    apply_cache(policy, config)
    assert report.all_cached == pytest.approx(relative_action_error(policy, [obs], references, (0, 1)))
    first = report.blocks[0]
    apply_cache(policy, CacheConfig("threshold", cache_threshold=4, recompute_blocks=(first.block,)))
    assert first.spared == pytest.approx(relative_action_error(policy, [obs], references, (0, 1)))
    apply_cache(policy, CacheConfig("threshold", cache_threshold=4, recompute_blocks=tuple(names[1:])))
    assert first.alone == pytest.approx(relative_action_error(policy, [obs], references, (0, 1)))
    assert report.all_cached > 0 and all(b.alone > 0 for b in report.blocks)
    assert report.ranked()[0].spared == min(b.spared for b in report.blocks)
    with pytest.raises(ValueError, match="needs a caching setting"):
        block_sensitivity(policy, [obs], CacheConfig("original"))
    with pytest.raises(ValueError, match="no block decoder.layers.7.sa"):
        block_sensitivity(policy, [obs], config, blocks=["decoder.layers.7.sa"])


def test_sensitivity_cli_writes_the_report_and_the_plot(tmp_path, capsys):
    import diffusion_policy.cli.sensitivity as cli
    from tests.checkpoint_fixtures import write_tiny_checkpoint
    from tests.test_bad_input import one_error_line

    ckpt = write_tiny_checkpoint(tmp_path / "tiny.ckpt", "pusht_lowdim")
    out = tmp_path / "sensitivity"
    assert cli.main(["-c", str(ckpt), "-o", str(out), "--cache_mode", "threshold", "--cache_threshold", "3",
                     "--observations", "2", "--blocks", "decoder.layers.0.ffn,decoder.layers.0.sa"]) == 0
    report = json.loads((out / "sensitivity.json").read_text())
    assert [b["block"] for b in report["blocks"]] == ["decoder.layers.0.ffn", "decoder.layers.0.sa"]
    assert report["observations"] == 2 and report["cache"] == {"mode": "threshold", "cache_threshold": 3}
    assert (out / "sensitivity.png").read_bytes().startswith(b"\x89PNG")
    assert "every block cached: relative action error" in capsys.readouterr().out
    line = one_error_line(capsys, cli.main, ["-c", str(ckpt), "-o", str(tmp_path / "b"), "--observations", "1"])
    assert "needs a caching setting" in line
