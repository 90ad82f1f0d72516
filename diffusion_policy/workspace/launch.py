"""Config -> training run, with or without hydra's command line.

    cfg = compose_config("train_diffusion_transformer_lowdim_workspace", ["task=lift_lowdim"])
    train(cfg, output_dir="data/outputs/lift")

`python train.py --config-name=... task=...` does the same through `@hydra.main`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from diffusion_policy.workspace.base_workspace import BaseWorkspace

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose a workspace config from diffusion_policy/config (unresolved, as hydra.main gives it)."""
    with hydra.initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra.compose(config_name=config_name, overrides=list(overrides))


def fill_derived_values(cfg: DictConfig) -> DictConfig:
    """Fill the `???` entries that the original YAMLs computed with `${eval:...}`.

    Values given explicitly (e.g. on the command line) are kept. In place; returns cfg.
    """
    n_latency_steps = cfg.get("n_latency_steps", 0)
    derived = {
        # SequenceSampler padding: the first sample starts To-1 steps before the episode, the last
        # ends Ta-1 steps after it (repeating the edge frames).
        "task.dataset.pad_before": lambda: cfg.n_obs_steps - 1 + n_latency_steps,
        "task.dataset.pad_after": lambda: cfg.n_action_steps - 1,
        # Lowdim transformer: obs condition the model, or join the trajectory for in-painting.
        "policy.model.input_dim": lambda: cfg.action_dim if cfg.obs_as_cond else cfg.obs_dim + cfg.action_dim,
        "policy.model.cond_dim": lambda: cfg.obs_dim if cfg.obs_as_cond else 0,
        # Hybrid policy: the chunk also covers the latency steps the runner drops.
        "policy.n_action_steps": lambda: cfg.n_action_steps + n_latency_steps,
    }
    for key, value_fn in derived.items():
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None, throw_on_missing=False)
        if isinstance(parent, DictConfig) and OmegaConf.is_missing(parent, leaf):
            parent[leaf] = value_fn()
    return cfg


def train(cfg: DictConfig, output_dir: str | None = None) -> BaseWorkspace:
    """Resolve `cfg`, build the workspace named by `cfg._target_` and run it; returns the workspace.

    `output_dir` defaults to hydra's run directory when called under `@hydra.main`.
    """
    fill_derived_values(cfg)
    OmegaConf.resolve(cfg)
    workspace_cls = hydra.utils.get_class(cfg._target_)
    workspace = workspace_cls(cfg, output_dir=output_dir)
    workspace.run()
    return workspace
