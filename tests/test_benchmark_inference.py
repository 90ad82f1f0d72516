"""The benchmark helpers: every mode measured in one run, FLOPs of the work actually done."""

import torch

from diffusion_policy.acceleration import CacheConfig
from diffusion_policy.acceleration.benchmark import compare_modes, summarize, with_torch_decoder
from test_acceleration import make_policy, sample


def test_torch_decoder_reference_computes_the_same_actions():
    policy = make_policy()
    obs = {"obs": torch.randn(2, 2, 5, generator=torch.Generator().manual_seed(3))}
    reference = with_torch_decoder(policy)
    assert isinstance(reference.model.decoder, torch.nn.TransformerDecoder)
    torch.testing.assert_close(sample(reference, obs), sample(policy, obs), atol=1e-5, rtol=1e-5)


def test_compare_modes_rows():
    policy = make_policy()
    obs = {"obs": torch.randn(1, 2, 5)}
    configs = {"original": CacheConfig("original"), "threshold_3": CacheConfig("threshold", cache_threshold=3)}
    results = compare_modes(policy, obs, configs, repeats=3, warmup=1, torch_reference=True)
    rows = {r["label"]: r for r in summarize(results, n_action_steps=4)}
    assert set(rows) == {"original", "threshold_3", "original (torch decoder)"}
    assert all(r["n_repeats"] == 3 and r["latency_median_ms"] > 0 for r in rows.values())
    assert rows["original"]["speedup"] == 1.0 and rows["original"]["action_rel_error"] == 0.0
    assert rows["original (torch decoder)"]["action_rel_error"] < 1e-5
    assert rows["original"]["block_evaluations"] == 9 * 12 and rows["threshold_3"]["block_evaluations"] == 9 * 4
    assert rows["threshold_3"]["flops"] < rows["original"]["flops"] == rows["original (torch decoder)"]["flops"]
    assert rows["threshold_3"]["action_rel_error"] > 0
