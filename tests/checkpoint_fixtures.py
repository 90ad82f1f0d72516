"""Tiny randomly initialised checkpoints of the shipped workspace configs, for tests that need a
real checkpoint file (evaluation, data collection).

    path = write_tiny_checkpoint(tmp_path / "pusht.ckpt", "pusht_lowdim")
    policy, cfg = load_checkpoint(path)

Each kind composes a shipped config (diffusion_policy/config) with small sizes (2 layers, width 32,
horizon 8, To 2, Ta 4, 8 denoising steps), builds its policy with a fixed seed and a normalizer
fitted on pseudo-data spanning the task's real ranges (so actions land inside the env's action
space), and saves it in the original payload format (inference-only).
"""

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from diffusion_policy.common.checkpoint import save_checkpoint
from diffusion_policy.common.normalize_util import get_image_range_normalizer
from diffusion_policy.model.common.normalizer import LinearNormalizer
from diffusion_policy.workspace.launch import compose_config, fill_derived_values

SMALL = ["horizon=8", "n_obs_steps=2", "n_action_steps=4", "policy.num_inference_steps=8"]
TINY_CONFIGS = {
    # Push-T keypoints: 20-d obs and 2-d target positions, both in [0, 512] pixels.
    "pusht_lowdim": (
        "train_diffusion_transformer_lowdim_workspace",
        ["task=pusht_lowdim", *SMALL, "policy.model.n_layer=2", "policy.model.n_head=2", "policy.model.n_emb=32"],
        {"obs": (0.0, 512.0), "action": (0.0, 512.0)},
    ),
    # Lift on state (19-d: object 10, eef pos 3, eef quat 4, gripper 2); delta actions in [-1, 1].
    "lift_lowdim": (
        "train_diffusion_transformer_lowdim_workspace",
        ["task=lift_lowdim", *SMALL, "policy.model.n_layer=2", "policy.model.n_head=2", "policy.model.n_emb=32"],
        {"obs": (-1.0, 1.0), "action": (-1.0, 1.0)},
    ),
    # Lift with two 84x84 cameras (cropped to 76) and proprioception; delta actions in [-1, 1].
    "lift_image": (
        "train_diffusion_transformer_hybrid_workspace",
        ["task=lift_image", *SMALL, "policy.crop_shape=[76,76]",
         "policy.n_layer=2", "policy.n_head=2", "policy.n_emb=32"],
        {"low_dim": (-1.0, 1.0), "action": (-1.0, 1.0)},
    ),
}


def tiny_config(kind: str, overrides: tuple = ()) -> DictConfig:
    """The resolved workspace cfg of a tiny `kind` policy (a key of TINY_CONFIGS)."""
    config_name, base, _ = TINY_CONFIGS[kind]
    cfg = compose_config(config_name, base + list(overrides))
    fill_derived_values(cfg)
    OmegaConf.resolve(cfg)
    return cfg


def _uniform(gen: torch.Generator, n: int, dim: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, dim, generator=gen) * (high - low) + low


def range_normalizer(cfg: DictConfig, ranges: dict) -> LinearNormalizer:
    """Normalizer fitted on uniform pseudo-data in `ranges`; images map [0, 1] -> [-1, 1]."""
    gen = torch.Generator().manual_seed(123)
    normalizer = LinearNormalizer()
    if "shape_meta" not in cfg:
        normalizer.fit({
            "obs": _uniform(gen, 256, cfg.obs_dim, *ranges["obs"]),
            "action": _uniform(gen, 256, cfg.action_dim, *ranges["action"]),
        })  # fmt: skip
        return normalizer
    fields = {"action": _uniform(gen, 256, cfg.shape_meta.action.shape[0], *ranges["action"])}
    rgb_keys = []
    for key, meta in cfg.shape_meta.obs.items():
        if meta.get("type", "low_dim") == "rgb":
            rgb_keys.append(key)
        else:
            fields[key] = _uniform(gen, 256, meta.shape[0], *ranges["low_dim"])
    normalizer.fit(fields)
    for key in rgb_keys:
        normalizer[key] = get_image_range_normalizer()
    return normalizer


def write_tiny_checkpoint(path, kind: str, overrides: tuple = (), seed: int = 0) -> Path:
    """Save a tiny `kind` policy (random weights from `seed`) as an inference-only checkpoint."""
    cfg = tiny_config(kind, overrides)
    torch.manual_seed(seed)
    policy = hydra.utils.instantiate(cfg.policy)
    policy.set_normalizer(range_normalizer(cfg, TINY_CONFIGS[kind][2]))
    state_dict = policy.state_dict()
    return save_checkpoint(path, cfg, {"model": state_dict, "ema_model": state_dict},
                           {"global_step": 0, "epoch": 0}, inference_only=True)
