"""Training workspace of DiffusionTransformerHybridImagePolicy
(batches {'obs': {key: (B, T, 3, H, W) or (B, T, D)}, 'action': (B, T, Da)})."""

from diffusion_policy.workspace.train_diffusion_transformer_workspace import TrainDiffusionTransformerWorkspace


class TrainDiffusionTransformerHybridWorkspace(TrainDiffusionTransformerWorkspace):
    def policy_obs(self, batch: dict) -> dict:
        return batch["obs"]
