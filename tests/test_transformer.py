"""TransformerForDiffusion: state_dict layout of the original, decoder equivalence with torch's."""

import pytest
import torch
from torch import nn

from diffusion_policy.model.diffusion.decoder import TransformerDecoder
from diffusion_policy.model.diffusion.transformer_for_diffusion import TransformerForDiffusion


def expected_keys(n_layer: int, causal: bool, memory_mask: bool) -> set[str]:
    """The original's key names (digest §2), written out independently of our module tree."""
    keys = {"_dummy_variable", "pos_emb", "cond_pos_emb", "input_emb.weight", "input_emb.bias",
            "cond_obs_emb.weight", "cond_obs_emb.bias", "encoder.0.weight", "encoder.0.bias",
            "encoder.2.weight", "encoder.2.bias", "ln_f.weight", "ln_f.bias", "head.weight", "head.bias"}
    if causal:
        keys.add("mask")
    if memory_mask:
        keys.add("memory_mask")
    per_layer = ["self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                 "self_attn.out_proj.bias", "multihead_attn.in_proj_weight", "multihead_attn.in_proj_bias",
                 "multihead_attn.out_proj.weight", "multihead_attn.out_proj.bias", "linear1.weight",
                 "linear1.bias", "linear2.weight", "linear2.bias", "norm1.weight", "norm1.bias",
                 "norm2.weight", "norm2.bias", "norm3.weight", "norm3.bias"]
    keys |= {f"decoder.layers.{i}.{k}" for i in range(n_layer) for k in per_layer}
    return keys


# (name, input_dim, cond_dim, horizon, n_obs_steps, n_emb): the original configs (digest §5)
CONFIGS = [
    ("pusht_lowdim", 2, 20, 16, 2, 256),
    ("blockpush_lowdim", 2, 16, 5, 3, 256),
    ("kitchen_lowdim", 9, 60, 16, 4, 768),
    ("lift_image", 7, 137, 10, 2, 256),
    ("transport_image", 20, 274, 10, 2, 256),
]


@pytest.mark.parametrize("name,input_dim,cond_dim,horizon,n_obs,n_emb", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_state_dict_matches_original(name, input_dim, cond_dim, horizon, n_obs, n_emb):
    model = TransformerForDiffusion(input_dim, input_dim, horizon, n_obs, cond_dim, n_layer=8, n_head=4,
                                    n_emb=n_emb, p_drop_emb=0.0, p_drop_attn=0.3, causal_attn=True,
                                    time_as_cond=True, obs_as_cond=True)
    sd = model.state_dict()
    assert set(sd) == expected_keys(8, causal=True, memory_mask=True)
    E, Tc = n_emb, 1 + n_obs
    assert sd["_dummy_variable"].shape == (0,)
    assert sd["pos_emb"].shape == (1, horizon, E)
    assert sd["cond_pos_emb"].shape == (1, Tc, E)
    assert sd["mask"].shape == (horizon, horizon)
    assert sd["memory_mask"].shape == (horizon, Tc)
    assert sd["cond_obs_emb.weight"].shape == (E, cond_dim)
    assert sd["encoder.0.weight"].shape == (4 * E, E)
    assert sd["encoder.2.weight"].shape == (E, 4 * E)
    assert sd["decoder.layers.7.self_attn.in_proj_weight"].shape == (3 * E, E)
    assert sd["decoder.layers.7.linear1.weight"].shape == (4 * E, E)
    assert sd["decoder.layers.7.linear2.weight"].shape == (E, 4 * E)
    assert sd["head.weight"].shape == (input_dim, E)
    # An original-layout state_dict (same keys/shapes) loads strictly into a fresh model.
    fresh = TransformerForDiffusion(input_dim, input_dim, horizon, n_obs, cond_dim, n_layer=8, n_head=4,
                                    n_emb=n_emb, causal_attn=True)
    fresh.load_state_dict({k: v.clone() for k, v in sd.items()}, strict=True)


def test_parameter_count_of_default_hybrid_transformer():
    model = TransformerForDiffusion(7, 7, 10, 2, 137, n_layer=8, n_head=4, n_emb=256, causal_attn=True)
    layer = sum(p.numel() for p in model.decoder.layers[0].parameters())
    assert layer == 1_053_440  # 2 x MHA (263,168) + FFN (525,568) + 3 LayerNorms (1,536)
    assert 8.9e6 < sum(p.numel() for p in model.parameters()) < 9.1e6


def test_masks_follow_original_semantics():
    model = TransformerForDiffusion(2, 2, 4, 2, 5, n_layer=1, n_head=2, n_emb=16, causal_attn=True)
    allowed = model.mask == 0
    assert torch.equal(allowed, torch.ones(4, 4, dtype=torch.bool).tril())
    # action token t sees cond token s (0 = time, 1..To = obs) iff t >= s - 1
    mm = model.memory_mask == 0
    assert mm[0].tolist() == [True, True, False]
    assert mm[1].tolist() == [True, True, True]
    assert mm[3].tolist() == [True, True, True]


def test_no_mask_buffers_when_not_causal():
    model = TransformerForDiffusion(2, 2, 4, 2, 5, n_layer=1, n_head=2, n_emb=16, causal_attn=False)
    assert "mask" not in model.state_dict() and model.mask is None and model.memory_mask is None


def _torch_decoder_with_same_weights(ours: TransformerDecoder, E: int, n_head: int) -> nn.TransformerDecoder:
    layer = nn.TransformerDecoderLayer(E, n_head, 4 * E, dropout=0.1, activation="gelu",
                                       batch_first=True, norm_first=True)
    ref = nn.TransformerDecoder(layer, num_layers=len(ours.layers))
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ref.eval()


@pytest.mark.parametrize("masked", [False, True])
def test_decoder_equals_torch_transformer_decoder(masked):
    torch.manual_seed(0)
    E, H, T, S = 32, 4, 6, 3
    ours = TransformerDecoder(E, H, 4 * E, dropout=0.1, num_layers=3)
    for p in ours.parameters():  # random, non-trivial weights everywhere (norms and biases too)
        nn.init.normal_(p, std=0.3)
    ours.eval()
    ref = _torch_decoder_with_same_weights(ours, E, H)
    x, memory = torch.randn(2, T, E), torch.randn(2, S, E)
    model = TransformerForDiffusion(2, 2, T, S - 1, 4, n_layer=1, n_head=H, n_emb=E, causal_attn=True)
    tgt_mask = model.mask if masked else None
    memory_mask = model.memory_mask if masked else None
    with torch.no_grad():
        expected = ref(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask)
        actual = ours(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_blocks_are_named_and_hold_no_parameters():
    model = TransformerForDiffusion(2, 2, 4, 2, 5, n_layer=2, n_head=2, n_emb=16, causal_attn=True)
    names = {n for n, _ in model.named_modules()}
    for i in range(2):
        for kind in ("sa", "ca", "ffn"):
            assert f"decoder.layers.{i}.{kind}" in names
            block = model.get_submodule(f"decoder.layers.{i}.{kind}")
            assert list(block.parameters()) == []


def test_forward_shapes_and_timestep_forms():
    model = TransformerForDiffusion(3, 3, 8, 2, 5, n_layer=2, n_head=2, n_emb=16, causal_attn=True).eval()
    x, cond = torch.randn(4, 8, 3), torch.randn(4, 2, 5)
    with torch.no_grad():
        a = model(x, torch.tensor(7), cond)
        b = model(x, 7, cond)
        c = model(x, torch.full((4,), 7), cond)
    assert a.shape == (4, 8, 3)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_bert_mode_and_cond_encoder_layers():
    bert = TransformerForDiffusion(3, 3, 8, n_layer=2, n_head=2, n_emb=16, time_as_cond=False, causal_attn=True)
    assert bert.decoder is None and bert.pos_emb.shape == (1, 9, 16)
    assert bert(torch.randn(2, 8, 3), 5).shape == (2, 8, 3)
    enc = TransformerForDiffusion(3, 3, 8, 2, 5, n_layer=2, n_head=2, n_emb=16, n_cond_layers=2)
    assert "encoder.layers.1.self_attn.in_proj_weight" in enc.state_dict()
    assert enc(torch.randn(2, 8, 3), 5, torch.randn(2, 2, 5)).shape == (2, 8, 3)


def test_optim_groups_cover_every_parameter_once():
    model = TransformerForDiffusion(3, 3, 8, 2, 5, n_layer=2, n_head=2, n_emb=16, causal_attn=True)
    decay, no_decay = model.get_optim_groups(weight_decay=0.1)
    n_params = len(list(model.parameters()))
    assert len(decay["params"]) + len(no_decay["params"]) == n_params
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any(p is model.pos_emb for p in no_decay["params"])
    assert any(p is model.decoder.layers[0].self_attn.in_proj_weight for p in decay["params"])
