"""Training workspace of DiffusionTransformerLowdimPolicy (batches {'obs': (B, T, Do), 'action': (B, T, Da)})."""

from diffusion_policy.workspace.train_diffusion_transformer_workspace import TrainDiffusionTransformerWorkspace


class TrainDiffusionTransformerLowdimWorkspace(TrainDiffusionTransformerWorkspace):
    def policy_obs(self, batch: dict) -> dict:
        return {"obs": batch["obs"]}
