"""The two transformer policies, built from the shipped YAMLs with tiny sizes: shapes, action slicing,
DDPM/DDIM sampling, in-painting, state_dict keys, and fixed-seed outputs saved in tests/data.

Regenerate the saved outputs (only after an intended change of the numerics):
    python tests/test_policies.py
"""

import copy
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from diffusion_policy.common.checkpoint import set_noise_scheduler, set_num_inference_steps
from diffusion_policy.common.normalize_util import get_image_range_normalizer
from diffusion_policy.model.common.normalizer import LinearNormalizer
from diffusion_policy.workspace.launch import compose_config, fill_derived_values

REGRESSION_FILE = Path(__file__).parent / "data" / "policy_regression.pt"
KINDS = ["lowdim", "hybrid"]

# Tiny versions of the shipped workspace configs (2 layers, width 32; one 32x32 camera cropped to 28).
TINY_OVERRIDES = {
    "lowdim": (
        "train_diffusion_transformer_lowdim_workspace",
        ["task=pusht_lowdim", "horizon=8", "n_obs_steps=2", "n_action_steps=4",
         "policy.model.n_layer=2", "policy.model.n_head=2", "policy.model.n_emb=32"],
    ),
    "hybrid": (
        "train_diffusion_transformer_hybrid_workspace",
        ["task=lift_image", "~task.shape_meta.obs.robot0_eye_in_hand_image",
         "task.shape_meta.obs.agentview_image.shape=[3,32,32]", "policy.crop_shape=[28,28]",
         "horizon=8", "n_obs_steps=2", "n_action_steps=4",
         "policy.n_layer=2", "policy.n_head=2", "policy.n_emb=32"],
    ),
}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models run much faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_cfg(kind: str, overrides: tuple = ()) -> DictConfig:
    """The resolved workspace cfg of a tiny `kind` ('lowdim' | 'hybrid') policy."""
    config_name, base = TINY_OVERRIDES[kind]
    cfg = compose_config(config_name, base + list(overrides))
    fill_derived_values(cfg)
    OmegaConf.resolve(cfg)
    return cfg


def fitted_normalizer(cfg: DictConfig) -> LinearNormalizer:
    """A normalizer fitted on fixed pseudo-data of the cfg's shapes (images: [0, 1] -> [-1, 1]).

    Actions span [-2, 2], so saved outputs are O(1) and an absolute tolerance of 1e-5 is meaningful.
    """
    gen = torch.Generator().manual_seed(123)
    normalizer = LinearNormalizer()
    if "shape_meta" in cfg:
        fields = {"action": torch.rand(64, cfg.shape_meta.action.shape[0], generator=gen) * 4 - 2}
        for key, meta in cfg.shape_meta.obs.items():
            if meta.get("type", "low_dim") == "low_dim":
                fields[key] = torch.randn(64, *meta.shape, generator=gen) * 3 + 1
        normalizer.fit(fields)
        for key, meta in cfg.shape_meta.obs.items():
            if meta.get("type") == "rgb":
                normalizer[key] = get_image_range_normalizer()
    else:
        normalizer.fit({"obs": torch.randn(64, cfg.obs_dim, generator=gen) * 50 + 200,
                        "action": torch.rand(64, cfg.action_dim, generator=gen) * 4 - 2})
    return normalizer


def make_policy(cfg: DictConfig, seed: int = 0) -> torch.nn.Module:
    """cfg.policy with weights from `seed`, a fitted normalizer, in eval mode."""
    torch.manual_seed(seed)
    policy = hydra.utils.instantiate(cfg.policy)
    policy.set_normalizer(fitted_normalizer(cfg))
    return policy.eval()


def example_obs(cfg: DictConfig, batch_size: int = 2, n_steps: int | None = None) -> dict:
    """A fixed obs_dict of the cfg's shapes, (B, To, ...) per key."""
    gen = torch.Generator().manual_seed(7)
    To = cfg.n_obs_steps if n_steps is None else n_steps
    if "shape_meta" in cfg:
        obs = {}
        for key, meta in cfg.shape_meta.obs.items():
            shape = (batch_size, To, *meta.shape)
            obs[key] = torch.rand(shape, generator=gen) if meta.get("type") == "rgb" else torch.randn(shape, generator=gen)
        return obs
    return {"obs": torch.randn(batch_size, To, cfg.obs_dim, generator=gen) * 50 + 200}


def sample(policy, obs: dict, seed: int = 0) -> dict:
    with torch.no_grad():
        return policy.predict_action(obs, generator=torch.Generator().manual_seed(seed))


class ForwardCounter:
    """Counts the transformer's forward calls (one per denoising step)."""

    def __init__(self, model: torch.nn.Module):
        self.calls = 0
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, *args):
        self.calls += 1


@pytest.fixture(scope="module", params=KINDS)
def kind_cfg_policy(request):
    cfg = tiny_cfg(request.param)
    return request.param, cfg, make_policy(cfg)


def test_predict_action_shapes_and_action_slice(kind_cfg_policy):
    _, cfg, policy = kind_cfg_policy
    To, Ta, T = cfg.n_obs_steps, cfg.n_action_steps, cfg.horizon
    Da = policy.action_dim
    # the runner may send more obs steps than To; only the first To are used
    result = sample(policy, example_obs(cfg, batch_size=3, n_steps=To + 1))
    assert result["action"].shape == (3, Ta, Da)
    assert result["action_pred"].shape == (3, T, Da)
    torch.testing.assert_close(result["action"], result["action_pred"][:, To - 1 : To - 1 + Ta], rtol=0, atol=0)
    assert torch.isfinite(result["action_pred"]).all()
    # same seed, same sample; another seed, another sample
    obs = example_obs(cfg, batch_size=3)
    torch.testing.assert_close(sample(policy, obs, seed=1)["action"], sample(policy, obs, seed=1)["action"])
    assert not torch.allclose(sample(policy, obs, seed=1)["action"], sample(policy, obs, seed=2)["action"])


def test_ddpm_and_ddim_sampling(kind_cfg_policy):
    _, cfg, policy = kind_cfg_policy
    policy = copy.deepcopy(policy)
    obs = example_obs(cfg)
    counter = ForwardCounter(policy.model)
    ddpm = sample(policy, obs)["action_pred"]
    assert counter.calls == 100  # one transformer forward per DDPM step

    set_noise_scheduler(policy, "ddim")
    set_num_inference_steps(policy, 10)
    assert type(policy.noise_scheduler).__name__ == "DDIMScheduler"
    assert policy.noise_scheduler.config.beta_schedule == "squaredcos_cap_v2"
    assert policy.noise_scheduler.config.clip_sample
    counter.calls = 0
    ddim = sample(policy, obs)["action_pred"]
    assert counter.calls == 10
    assert ddim.shape == ddpm.shape and torch.isfinite(ddim).all()
    assert not torch.allclose(ddim, ddpm)
    # DDIM is deterministic given the initial noise
    torch.testing.assert_close(ddim, sample(policy, obs)["action_pred"])

    set_noise_scheduler(policy, "ddpm")
    set_num_inference_steps(policy, 100)
    torch.testing.assert_close(sample(policy, obs)["action_pred"], ddpm)
    with pytest.raises(ValueError, match="outside"):
        set_num_inference_steps(policy, 101)
    with pytest.raises(ValueError, match="unknown scheduler"):
        set_noise_scheduler(policy, "euler")


def test_compute_loss_trains_every_parameter_group(kind_cfg_policy):
    kind, cfg, policy = kind_cfg_policy
    policy = copy.deepcopy(policy).train()
    obs = example_obs(cfg, batch_size=4, n_steps=cfg.horizon)
    batch = {"obs": obs["obs"] if kind == "lowdim" else obs,
             "action": torch.rand(4, cfg.horizon, policy.action_dim) * 2 - 1}
    loss = policy.compute_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert policy.model.input_emb.weight.grad is not None
    assert all(p.grad is None for p in policy.normalizer.parameters())
    if kind == "hybrid":
        assert policy.obs_encoder.obs_nets["agentview_image"].nets[3].weight.grad is not None
    optimizer = policy.get_optimizer(**cfg.optimizer)
    n_trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == n_trainable


def test_lowdim_inpainting_keeps_observed_steps():
    cfg = tiny_cfg("lowdim", ["obs_as_cond=False"])
    assert cfg.policy.model.input_dim == cfg.obs_dim + cfg.action_dim and cfg.policy.model.cond_dim == 0
    policy = make_policy(cfg)
    To, Do = cfg.n_obs_steps, cfg.obs_dim
    obs = example_obs(cfg)
    result = sample(policy, obs)
    assert result["action"].shape == (2, cfg.n_action_steps, cfg.action_dim)
    assert result["obs_pred"].shape == (2, cfg.horizon, Do)
    # the first To observation rows are in-painted, not generated
    torch.testing.assert_close(result["obs_pred"][:, :To], obs["obs"], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(result["action_obs_pred"], result["obs_pred"][:, To - 1 : To - 1 + cfg.n_action_steps])
    batch = {"obs": torch.randn(3, cfg.horizon, Do), "action": torch.randn(3, cfg.horizon, cfg.action_dim)}
    assert torch.isfinite(policy.train().compute_loss(batch))


def test_hybrid_state_dict_keys_follow_the_original():
    cfg = tiny_cfg("hybrid")
    keys = set(make_policy(cfg).state_dict())
    for key in ["obs_encoder.obs_nets.agentview_image.backbone.nets.0.weight",
                "obs_encoder.obs_nets.agentview_image.nets.3.weight",
                "mask_generator._dummy_variable", "_dummy_variable",
                "normalizer.params_dict.action.scale",
                "normalizer.params_dict.agentview_image.offset",
                "normalizer.params_dict.robot0_eef_pos.input_stats.min",
                "model.decoder.layers.1.multihead_attn.in_proj_weight"]:
        assert key in keys, key


# ----------------------------------------------------------------------------- saved outputs
def regression_outputs() -> dict[str, torch.Tensor]:
    """Fixed-seed predict_action outputs of both tiny policies, DDPM-100 and DDIM-10."""
    outputs = {}
    for kind in KINDS:
        cfg = tiny_cfg(kind)
        policy = make_policy(cfg, seed=0)
        obs = example_obs(cfg)
        outputs[f"{kind}/ddpm100/action_pred"] = sample(policy, obs, seed=0)["action_pred"]
        set_noise_scheduler(policy, "ddim")
        set_num_inference_steps(policy, 10)
        outputs[f"{kind}/ddim10/action_pred"] = sample(policy, obs, seed=0)["action_pred"]
    return outputs


def test_outputs_match_saved_regression():
    assert REGRESSION_FILE.is_file(), f"{REGRESSION_FILE} is missing; run `python tests/test_policies.py`"
    expected = torch.load(REGRESSION_FILE, weights_only=True)
    actual = regression_outputs()
    assert set(actual) == set(expected)
    for name, tensor in actual.items():
        error = (tensor - expected[name]).abs().max().item()
        assert error <= 1e-5, f"{name}: max abs difference {error:.2e} to the saved output"


if __name__ == "__main__":
    torch.set_num_threads(1)
    REGRESSION_FILE.parent.mkdir(parents=True, exist_ok=True)
    outputs = regression_outputs()
    torch.save(outputs, REGRESSION_FILE)
    print(f"wrote {REGRESSION_FILE}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in outputs.items()))
