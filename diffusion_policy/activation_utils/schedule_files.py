"""Schedule files: what get_optimal_cache_update_steps.py writes and the cache reads.

Layout under an output dir (e.g. assets/<task>/):

    original/
        activation_summary.json          per-block shape, mean norm, caching error; N; block names
        similarity_<metric>.npz          every block's (N, N) matrix for that metric
    optimal_steps/<metric>/
        num_caches_<k>.json              ACS update steps of every block (a Schedule, strategy 'reuse')
        forecast_num_caches_<k>.json     update steps chosen for the forecasting cache (strategy 'forecast')
        bubbling_union.json              blocks ranked by caching error, for BU selection

All files are human-readable JSON except the matrices, and every write goes to a
temp file first, then os.replace.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from diffusion_policy.activation_utils.bubbling_union import (
    add_final_step,
    block_layer,
    bubbling_union,
    rank_blocks,
)
from diffusion_policy.activation_utils.similarity import METRICS, caching_error
from diffusion_policy.common.files import sha256_of_file, write_atomic  # noqa: F401 (re-exported)

FORMAT_VERSION = 2  # 2: schedules record model_fingerprint (the weights they were computed for)
RECOMPUTE_HINT = (
    "recompute with diffusion_policy/activation_utils/get_optimal_cache_update_steps.py "
    "-c CKPT -o DIR --force_recompute"
)


class ScheduleMismatchError(ValueError):
    """A schedule file does not fit the model/scheduler it is applied to."""


class ForeignScheduleError(ScheduleMismatchError):
    """A schedule file was computed for other weights than the policy's."""


# ---------------------------------------------------------------- paths


def original_dir(output_dir) -> Path:
    return Path(output_dir) / "original"


def optimal_steps_dir(output_dir, metric: str) -> Path:
    return Path(output_dir) / "optimal_steps" / metric


def schedule_file_name(num_caches: int, strategy: str = "reuse") -> str:
    return f"num_caches_{num_caches}.json" if strategy == "reuse" else f"{strategy}_num_caches_{num_caches}.json"


def schedule_path(output_dir, metric: str, num_caches: int, strategy: str = "reuse") -> Path:
    return optimal_steps_dir(output_dir, metric) / schedule_file_name(num_caches, strategy)


def bubbling_union_path(output_dir, metric: str) -> Path:
    return optimal_steps_dir(output_dir, metric) / "bubbling_union.json"


def similarity_path(output_dir, metric: str) -> Path:
    return original_dir(output_dir) / f"similarity_{metric}.npz"


def activation_summary_path(output_dir) -> Path:
    return original_dir(output_dir) / "activation_summary.json"


# ---------------------------------------------------------------- low-level io


def _to_json_text(obj, indent: int = 0) -> str:
    """Indented JSON that keeps lists of numbers on one line (readable step lists)."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {_to_json_text(v, indent + 2)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(isinstance(v, (int, float)) for v in obj):
            return json.dumps(list(obj))
        items = [f"{inner}{_to_json_text(v, indent + 2)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj)


def write_json(path, obj) -> Path:
    text = _to_json_text(obj) + "\n"
    return write_atomic(Path(path), lambda f: f.write(text.encode("utf-8")))


def read_json(path, what: str) -> dict:
    """Parse a JSON object; missing or corrupt files raise one clear line with the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}; {RECOMPUTE_HINT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt {what} {path} ({err}); {RECOMPUTE_HINT}") from None
    if not isinstance(data, dict):
        raise ValueError(f"corrupt {what} {path} (top level is not a JSON object); {RECOMPUTE_HINT}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{what} {path} has format_version {version!r}, this code reads {FORMAT_VERSION}; {RECOMPUTE_HINT}"
        )
    return data


# ---------------------------------------------------------------- schedules


@dataclasses.dataclass
class Schedule:
    """ACS update steps of every block for one (metric, num_caches)."""

    metric: str
    num_caches: int
    num_steps: int  # denoising steps N the activations were recorded with
    num_layers: int  # decoder layers of the model
    scheduler: dict  # {"class": ..., "num_train_timesteps": ..., "num_inference_steps": ...}
    checkpoint_sha256: str  # the checkpoint file it was computed from
    model_fingerprint: str  # checkpoint.weights_fingerprint of the policy it was computed for
    block_names: list[str]
    steps: dict[str, list[int]]  # block -> sorted update steps, first 0
    block_errors: dict[str, float]  # block -> caching error (BU ranking)
    strategy: str = "reuse"  # the cache strategy the steps were chosen for ('reuse' | 'forecast')
    forecast_order: int = 0  # forecast: the extrapolation order the DP's costs were measured with
    # forecast: block -> per update step (aligned with steps[block]), whether its segment forecasts
    forecast_segments: dict[str, list[bool]] = dataclasses.field(default_factory=dict)
    calibration: dict = dataclasses.field(default_factory=dict)  # observations the costs came from
    path: Path | None = dataclasses.field(default=None, compare=False)

    def validate(self) -> None:
        """Raise ValueError (one line) if the fields are inconsistent."""
        where = f"schedule {self.path}" if self.path else "schedule"
        problems = []
        if self.metric not in METRICS:
            problems.append(f"unknown metric {self.metric!r}")
        if self.strategy not in ("reuse", "forecast"):
            problems.append(f"unknown strategy {self.strategy!r}")
        if not (isinstance(self.num_steps, int) and self.num_steps >= 1):
            problems.append(f"num_steps {self.num_steps!r} is not an integer >= 1")
        if not (isinstance(self.num_caches, int) and self.num_caches >= 1):
            problems.append(f"num_caches {self.num_caches!r} is not an integer >= 1")
        if not (isinstance(self.num_layers, int) and self.num_layers >= 1):
            problems.append(f"num_layers {self.num_layers!r} is not an integer >= 1")
        if problems:
            raise ValueError(f"invalid {where}: {'; '.join(problems)}; {RECOMPUTE_HINT}")

        for name in self.block_names:
            if block_layer(name) >= self.num_layers:
                problems.append(f"block {name} is beyond num_layers={self.num_layers}")
        if set(self.steps) != set(self.block_names):
            problems.append("'steps' keys differ from 'block_names'")
        if set(self.block_errors) != set(self.block_names):
            problems.append("'block_errors' keys differ from 'block_names'")
        expected_len = min(self.num_caches, self.num_steps)
        for name, steps in self.steps.items():
            ok = (
                len(steps) == expected_len
                and all(isinstance(s, (int, np.integer)) and 0 <= s < self.num_steps for s in steps)
                and steps[0] == 0
                and all(a < b for a, b in zip(steps[:-1], steps[1:]))
            )
            if not ok:
                problems.append(
                    f"steps of {name} must be {expected_len} increasing integers in [0, {self.num_steps}) "
                    f"starting at 0, got {steps}"
                )
                break
        if self.strategy == "forecast":
            if set(self.forecast_segments) != set(self.block_names) or any(
                    len(self.forecast_segments[name]) != len(self.steps[name]) for name in self.block_names):
                problems.append("'forecast_segments' must give one flag per update step of every block")
        if problems:
            raise ValueError(f"invalid {where}: {'; '.join(problems)}; {RECOMPUTE_HINT}")

    def forecast_flags(self, name: str, update_steps: list[int]) -> list[bool]:
        """Whether the segment after each of `update_steps` (the block's resolved steps: BU and the final
        step may add some) forecasts: that of the schedule segment it falls in (reuse if not 'forecast')."""
        if self.strategy != "forecast":
            return [False] * len(update_steps)
        own, flags = self.steps[name], self.forecast_segments[name]
        return [flags[max(i for i, start in enumerate(own) if start <= step)] for step in update_steps]

    def check_compatible(self, block_names: list[str], num_steps: int, num_layers: int) -> None:
        """Raise ScheduleMismatchError (one line) unless the schedule fits this model and scheduler."""
        differences = []
        if num_layers != self.num_layers:
            differences.append(f"decoder layers {self.num_layers} (schedule) vs {num_layers} (model)")
        if num_steps != self.num_steps:
            differences.append(f"denoising steps {self.num_steps} (schedule) vs {num_steps} (policy)")
        model_names = set(block_names)
        missing = [name for name in block_names if name not in self.steps]
        extra = [name for name in self.block_names if name not in model_names]
        name_parts = []
        if missing:
            name_parts.append(f"missing from schedule: {_short_list(missing)}")
        if extra:
            name_parts.append(f"unknown to model: {_short_list(extra)}")
        if name_parts:
            differences.append(f"block names differ ({'; '.join(name_parts)})")
        if differences:
            where = self.path if self.path else "schedule"
            raise ScheduleMismatchError(
                f"{where} does not match the model: {'; '.join(differences)}; {RECOMPUTE_HINT}"
            )

    def check_model(self, fingerprint: str) -> None:
        """Raise ForeignScheduleError (one line) unless the schedule was computed for these weights."""
        if fingerprint != self.model_fingerprint:
            where = self.path if self.path else "schedule"
            raise ForeignScheduleError(
                f"{where} was computed for the model with weights fingerprint {self.model_fingerprint[:12]}, "
                f"but this policy's weights are {fingerprint[:12]}; {RECOMPUTE_HINT} "
                "(or pass --allow_foreign_schedule to use it anyway)"
            )

    def to_json_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "metric": self.metric,
            "num_caches": self.num_caches,
            "num_steps": self.num_steps,
            "num_layers": self.num_layers,
            "scheduler": dict(self.scheduler),
            "checkpoint_sha256": self.checkpoint_sha256,
            "model_fingerprint": self.model_fingerprint,
            "block_names": list(self.block_names),
            "steps": {name: [int(s) for s in self.steps[name]] for name in self.block_names},
            "block_errors": {name: float(self.block_errors[name]) for name in self.block_names},
            "strategy": self.strategy,
            "forecast_order": int(self.forecast_order),
            "forecast_segments": {name: [bool(f) for f in self.forecast_segments[name]]
                                  for name in self.block_names if name in self.forecast_segments},
            "calibration": dict(self.calibration),
        }

    @classmethod
    def from_json_dict(cls, data: dict, path: Path | None = None) -> "Schedule":
        optional = {"path", "strategy", "forecast_order", "calibration", "forecast_segments"}  # absent from older files: reuse, one obs
        fields = [f.name for f in dataclasses.fields(cls) if f.name not in optional]
        missing = [name for name in fields if name not in data]
        if missing:
            raise ValueError(f"corrupt schedule {path} (missing keys {missing}); {RECOMPUTE_HINT}")
        try:
            schedule = cls(
                metric=str(data["metric"]),
                num_caches=data["num_caches"],
                num_steps=data["num_steps"],
                num_layers=data["num_layers"],
                scheduler=dict(data["scheduler"]),
                checkpoint_sha256=str(data["checkpoint_sha256"]),
                model_fingerprint=str(data["model_fingerprint"]),
                block_names=[str(name) for name in data["block_names"]],
                steps={str(name): list(steps) for name, steps in data["steps"].items()},
                block_errors={str(name): float(err) for name, err in data["block_errors"].items()},
                strategy=str(data.get("strategy", "reuse")),
                forecast_order=int(data.get("forecast_order", 0)),
                calibration=dict(data.get("calibration", {})),
                forecast_segments={str(name): [bool(f) for f in flags]
                                   for name, flags in dict(data.get("forecast_segments", {})).items()},
                path=path,
            )
        except (TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"corrupt schedule {path} ({err}); {RECOMPUTE_HINT}") from None
        schedule.validate()
        return schedule


def _short_list(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def save_schedule(schedule: Schedule, output_dir) -> Path:
    """Write schedule to <output_dir>/optimal_steps/<metric>/num_caches_<k>.json; returns the path."""
    schedule.validate()
    path = schedule_path(output_dir, schedule.metric, schedule.num_caches, schedule.strategy)
    return write_json(path, schedule.to_json_dict())


def find_schedule_file(path_or_dir, metric: str, num_caches: int, strategy: str = "reuse") -> Path:
    """Locate [forecast_]num_caches_<k>.json given the file itself, the metric dir, optimal_steps/, or the
    task dir."""
    given = Path(path_or_dir)
    if given.is_file():
        return given
    if not given.is_dir():
        raise FileNotFoundError(f"schedule directory not found: {given}; {RECOMPUTE_HINT}")
    name = schedule_file_name(num_caches, strategy)
    candidates = [given / name, given / metric / name, given / "optimal_steps" / metric / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    available = sorted({p.name for d in candidates for p in d.parent.glob("*num_caches_*.json")})
    hint = f" (found: {', '.join(available)})" if available else ""
    strategy_flag = f" --strategy {strategy}" if strategy != "reuse" else ""
    raise FileNotFoundError(
        f"no {strategy} schedule for metric={metric} num_caches={num_caches} under {given}{hint}; "
        f"{RECOMPUTE_HINT} --num_caches {num_caches}{strategy_flag}"
    )


def load_schedule(path_or_dir, metric: str, num_caches: int, strategy: str = "reuse") -> Schedule:
    """Load and validate the schedule for (metric, num_caches) made for the cache `strategy`."""
    path = find_schedule_file(path_or_dir, metric, num_caches, strategy)
    schedule = Schedule.from_json_dict(read_json(path, "schedule file"), path=path)
    if schedule.strategy != strategy:
        raise ScheduleMismatchError(
            f"{path} was made for the '{schedule.strategy}' cache strategy, not '{strategy}': its update steps "
            f"minimise the other strategy's error; use the {strategy} schedule ({RECOMPUTE_HINT} "
            f"--strategy {strategy}) or --strategy {schedule.strategy}"
        )
    if schedule.metric != metric or schedule.num_caches != num_caches:
        raise ValueError(
            f"{path} holds metric={schedule.metric} num_caches={schedule.num_caches}, "
            f"but metric={metric} num_caches={num_caches} was requested; pass the matching "
            "--optimal_steps_dir/--metric/--num_caches"
        )
    return schedule


def resolve_update_steps(schedule: Schedule, num_bu_blocks: int, num_steps: int) -> dict[str, list[int]]:
    """Per-block update steps the cache uses in 'optimal' mode: ACS -> Bubbling Union -> final step."""
    if num_steps != schedule.num_steps:
        where = schedule.path if schedule.path else "schedule"
        raise ScheduleMismatchError(
            f"{where} does not match the model: denoising steps {schedule.num_steps} (schedule) "
            f"vs {num_steps} (policy); {RECOMPUTE_HINT}"
        )
    bu_steps = bubbling_union(schedule.steps, schedule.block_errors, num_bu_blocks)
    return add_final_step(bu_steps, num_steps)


# ---------------------------------------------------------------- BU ranking


def save_bubbling_union_info(output_dir, metric: str, block_errors: dict[str, float], num_steps: int) -> Path:
    """Write the BU ranking: blocks by caching error, with the FFN blocks each would merge."""
    ffn_blocks = [name for name in block_errors if name.endswith(".ffn")]
    ranking = []
    for rank, name in enumerate(rank_blocks(block_errors), start=1):
        layer = block_layer(name)
        ranking.append(
            {
                "rank": rank,
                "block": name,
                "layer": layer,
                "caching_error": float(block_errors[name]),
                "merges_ffn_blocks": [ffn for ffn in ffn_blocks if block_layer(ffn) >= layer],
            }
        )
    info = {
        "format_version": FORMAT_VERSION,
        "metric": metric,
        "num_steps": num_steps,
        "error": "caching_error = mean over step pairs of mean |a_i - a_j|",
        "selection": "with --num_bu_blocks m, the first m blocks of 'ranking' get the union of their "
        "steps and the steps of 'merges_ffn_blocks'",
        "ranking": ranking,
    }
    return write_json(bubbling_union_path(output_dir, metric), info)


def load_bubbling_union_info(output_dir, metric: str) -> dict:
    return read_json(bubbling_union_path(output_dir, metric), "Bubbling Union file")


# ---------------------------------------------------------------- original/: matrices and summary


def save_similarity_matrices(output_dir, metric: str, matrices: dict[str, np.ndarray]) -> Path:
    """One compressed .npz per metric holding every block's (N, N) matrix (keys = block names)."""
    arrays = {name: np.asarray(m, dtype=np.float64) for name, m in matrices.items()}
    return write_atomic(similarity_path(output_dir, metric), lambda f: np.savez_compressed(f, **arrays))


def load_similarity_matrices(output_dir, metric: str) -> dict[str, np.ndarray]:
    path = similarity_path(output_dir, metric)
    if not path.is_file():
        raise FileNotFoundError(f"similarity matrices not found: {path}; {RECOMPUTE_HINT}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"corrupt similarity file {path} ({err}); {RECOMPUTE_HINT}") from None


def summarize_activations(activations: dict[str, np.ndarray]) -> dict:
    """Per-block shape, mean per-step L2 norm and caching error; N and block names."""
    num_steps = {np.asarray(a).shape[0] for a in activations.values()}
    if len(num_steps) != 1:
        raise ValueError(f"blocks were recorded with different numbers of steps {sorted(num_steps)}")
    blocks = {}
    for name, acts in activations.items():
        acts = np.asarray(acts)
        step_norms = np.linalg.norm(acts.reshape(acts.shape[0], -1).astype(np.float64), axis=1)
        blocks[name] = {
            "shape": list(acts.shape),
            "mean_norm": float(step_norms.mean()),
            "caching_error": caching_error(acts),
        }
    return {
        "format_version": FORMAT_VERSION,
        "num_steps": num_steps.pop(),
        "block_names": list(activations),
        "blocks": blocks,
    }


def save_activation_summary(output_dir, summary: dict) -> Path:
    return write_json(activation_summary_path(output_dir), summary)


def load_activation_summary(output_dir) -> dict:
    return read_json(activation_summary_path(output_dir), "activation summary")
