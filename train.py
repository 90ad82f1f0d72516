"""Train a transformer Diffusion Policy.

    python train.py --config-name=train_diffusion_transformer_lowdim_workspace task=lift_lowdim \
        training.device=cpu training.num_epochs=100

Configs live in diffusion_policy/config; outputs go to hydra's run dir (data/outputs/<date>/<time>_...).
"""

import hydra
from omegaconf import DictConfig

from diffusion_policy.workspace.launch import train


@hydra.main(version_base="1.3", config_path="diffusion_policy/config", config_name=None)
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
