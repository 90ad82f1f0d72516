"""What every training workspace has: a cfg, an output directory, and checkpoints of its state."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from diffusion_policy.common.checkpoint import CheckpointError, read_checkpoint, save_checkpoint


class BaseWorkspace:
    """Holds `cfg` and `output_dir`; saves/loads the attributes named in `checkpoint_attrs`
    (`state_dict()` objects, stored under 'state_dicts') and `checkpoint_values` (plain values,
    stored as dill bytes under 'pickles'), in the original Diffusion Policy payload format.
    """

    checkpoint_attrs: tuple[str, ...] = ()
    checkpoint_values: tuple[str, ...] = ("global_step", "epoch")

    def __init__(self, cfg: DictConfig, output_dir: str | None = None):
        self.cfg = cfg
        self._output_dir = output_dir

    @property
    def output_dir(self) -> str:
        if self._output_dir is None:
            if not HydraConfig.initialized():
                raise ValueError("this workspace has no output_dir; pass output_dir=... (outside a hydra run "
                                 "there is no hydra.run.dir to default to)")
            self._output_dir = HydraConfig.get().runtime.output_dir
        return self._output_dir

    def run(self) -> None:
        raise NotImplementedError

    def get_checkpoint_path(self, tag: str = "latest") -> Path:
        return Path(self.output_dir) / "checkpoints" / f"{tag}.ckpt"

    def save_checkpoint(self, path: str | None = None, tag: str = "latest", inference_only: bool = False) -> Path:
        """Write `<output_dir>/checkpoints/<tag>.ckpt` (or `path`)."""
        path = self.get_checkpoint_path(tag) if path is None else Path(path)
        state_dicts = {name: getattr(self, name).state_dict() for name in self.checkpoint_attrs
                       if getattr(self, name, None) is not None}
        pickles = {name: getattr(self, name) for name in self.checkpoint_values}
        pickles["_output_dir"] = str(self.output_dir)
        return save_checkpoint(path, self.cfg, state_dicts, pickles, inference_only=inference_only)

    def load_checkpoint(self, path: str | None = None, tag: str = "latest", trust_checkpoint: bool = False) -> None:
        """Restore every checkpointed attribute and value (to resume training). The output_dir is kept."""
        path = self.get_checkpoint_path(tag) if path is None else Path(path)
        # Only weights and counters are restored; the run keeps its own cfg, so the file's is not read.
        payload = read_checkpoint(path, trust_checkpoint=trust_checkpoint, cfg_is_used=False)
        for name in self.checkpoint_attrs:
            target = getattr(self, name, None)
            if target is None:
                continue
            if name not in payload.state_dicts:
                raise CheckpointError(f"checkpoint {path} has no state_dicts['{name}'] (an inference-only "
                                      "checkpoint?); training cannot resume from it")
            target.load_state_dict(payload.state_dicts[name])
        for name in self.checkpoint_values:
            if name in payload.pickles:
                setattr(self, name, payload.pickles[name])

    def load_weights(self, path: str, trust_checkpoint: bool = False) -> None:
        """Start from another checkpoint's model and EMA weights (fine-tuning); the optimizer, step,
        epoch and cfg stay this run's. An inference-only checkpoint's weights seed both copies."""
        path = Path(path)
        payload = read_checkpoint(path, trust_checkpoint=trust_checkpoint, cfg_is_used=False)
        weights = payload.state_dicts.get("model", payload.state_dicts.get("ema_model"))
        if weights is None:
            raise CheckpointError(f"checkpoint {path} has neither state_dicts['model'] nor ['ema_model']; "
                                  "pass a training or exported Diffusion Policy checkpoint as training.init_from")
        for name, state_dict in (("model", weights), ("ema_model", payload.state_dicts.get("ema_model", weights))):
            target = getattr(self, name, None)
            if target is None:
                continue
            try:
                target.load_state_dict(state_dict)
            except RuntimeError as error:
                first = str(error).strip().splitlines()[1].strip() if "\n" in str(error) else str(error)
                raise CheckpointError(f"training.init_from={path}: its weights do not fit this run's policy "
                                      f"({first}); use a checkpoint of the same model settings") from None
