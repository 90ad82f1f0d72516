"""Keep the k best checkpoints of a run by a monitored metric."""

import os
import re
from pathlib import Path


class TopKCheckpointManager:
    """Names the checkpoint file for this epoch's metrics if it makes the top k, deleting the one
    it displaces.

    `get_ckpt_path({'epoch': 50, 'test_mean_score': 0.8, ...})` returns
    `<save_dir>/epoch=0050-test_mean_score=0.800.ckpt` (with the default format) or None. Files
    already in `save_dir` whose name carries `<monitor_key>=<value>` count as ranked entries, so a
    resumed run keeps at most k of them.
    """

    def __init__(
        self,
        save_dir: str,
        monitor_key: str,
        mode: str = "min",
        k: int = 1,
        format_str: str = "epoch={epoch:03d}-train_loss={train_loss:.3f}.ckpt",
    ):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.save_dir = Path(save_dir)
        self.monitor_key = monitor_key
        self.mode = mode
        self.k = k
        self.format_str = format_str
        self.path_value_map: dict[str, float] = self._existing_checkpoints()

    def _existing_checkpoints(self) -> dict[str, float]:
        if not self.save_dir.is_dir():
            return {}
        pattern = re.compile(re.escape(self.monitor_key) + r"=([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")
        found = {}
        for path in sorted(self.save_dir.glob("*.ckpt")):
            match = pattern.search(path.stem)
            if match:
                found[str(path)] = float(match.group(1))
        return found

    def _worst(self) -> tuple[str, float]:
        pick = min if self.mode == "max" else max
        return pick(self.path_value_map.items(), key=lambda item: item[1])

    def _better(self, value: float, than: float) -> bool:
        return value > than if self.mode == "max" else value < than

    def get_ckpt_path(self, data: dict) -> str | None:
        """Path to save this epoch's checkpoint at, or None (k == 0, metric absent, or not top-k)."""
        if self.k == 0 or self.monitor_key not in data:
            return None
        value = float(data[self.monitor_key])
        ckpt_path = str(self.save_dir / self.format_str.format(**data))
        if len(self.path_value_map) >= self.k:
            worst_path, worst_value = self._worst()
            if not self._better(value, worst_value):
                return None
            del self.path_value_map[worst_path]
            if os.path.exists(worst_path) and worst_path != ckpt_path:
                os.remove(worst_path)
        self.path_value_map[ckpt_path] = value
        self.save_dir.mkdir(parents=True, exist_ok=True)
        return ckpt_path
