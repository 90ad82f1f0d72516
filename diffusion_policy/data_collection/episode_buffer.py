"""Dataset features (lerobot's feature dicts) and the buffer that collects one episode's frames.

A feature is `{"dtype": ..., "shape": (...), "names": ...}`: dtype float32/float64/int64/int32/
bool with a 1-D shape (shape (1,) is a scalar column), or "video" with shape (H, W, 3).
The writers add lerobot's bookkeeping features (DEFAULT_FEATURES) themselves.
"""

import copy

import numpy as np

DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": (1,), "names": None},
    "frame_index": {"dtype": "int64", "shape": (1,), "names": None},
    "episode_index": {"dtype": "int64", "shape": (1,), "names": None},
    "index": {"dtype": "int64", "shape": (1,), "names": None},
    "task_index": {"dtype": "int64", "shape": (1,), "names": None},
}
NUMERIC_DTYPES = ("float32", "float64", "int64", "int32", "bool")


def make_features(
    state_dim: int,
    action_dim: int,
    cameras: dict[str, tuple[int, int]] | None = None,
    state_names: list[str] | None = None,
    action_names: list[str] | None = None,
) -> dict:
    """The standard rollout features: observation.state, action, next.reward/done/success and one
    `observation.images.<cam>` video per camera {cam: (height, width)}."""
    features = {
        "observation.state": {
            "dtype": "float32",
            "shape": (state_dim,),
            "names": state_names or [f"state_{i}" for i in range(state_dim)],
        },
        "action": {
            "dtype": "float32",
            "shape": (action_dim,),
            "names": action_names or [f"action_{i}" for i in range(action_dim)],
        },
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    for cam, (height, width) in (cameras or {}).items():
        features[f"observation.images.{cam}"] = {
            "dtype": "video",
            "shape": (height, width, 3),
            "names": ["height", "width", "channels"],
        }
    return features


def check_features(features: dict) -> dict:
    """Validated copy of user features (shapes as tuples); raises ValueError naming the bad one."""
    checked = {}
    for key, feature in features.items():
        if key in DEFAULT_FEATURES:
            raise ValueError(f"feature {key!r} is added by the writer; remove it from `features`")
        if "/" in key:
            raise ValueError(f"feature name {key!r} must not contain '/'")
        feature = copy.deepcopy(feature)
        feature["shape"] = tuple(int(n) for n in feature["shape"])
        names = feature.get("names")
        feature["names"] = list(names) if isinstance(names, (list, tuple)) else names
        dtype, shape = feature["dtype"], feature["shape"]
        if dtype == "video":
            if len(shape) != 3 or shape[2] != 3:
                raise ValueError(f"video feature {key!r} needs shape (height, width, 3), got {shape}")
        elif dtype in NUMERIC_DTYPES:
            if len(shape) != 1 or shape[0] < 1:
                raise ValueError(f"feature {key!r} needs a 1-D shape like (7,), got {shape}")
        else:
            raise ValueError(f"feature {key!r} has dtype {dtype!r}; use one of {NUMERIC_DTYPES + ('video',)}")
        checked[key] = feature
    return checked


def as_video_frame(value, shape: tuple[int, int, int], key: str) -> np.ndarray:
    """(H, W, 3) uint8, or channel-first (3, H, W) / float in [0, 1] -> (H, W, 3) uint8."""
    frame = np.asarray(value)
    if frame.ndim == 3 and frame.shape[0] == 3 and frame.shape != shape:
        frame = frame.transpose(1, 2, 0)
    if frame.shape != shape:
        raise ValueError(f"frame[{key!r}] has shape {frame.shape}, expected {shape} (H, W, 3)")
    if frame.dtype != np.uint8:
        frame = np.clip(np.round(frame.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame)


def as_numeric(value, feature: dict, key: str) -> np.ndarray:
    array = np.asarray(value)
    shape = feature["shape"]
    if array.shape != shape and not (shape == (1,) and array.shape == ()):
        raise ValueError(f"frame[{key!r}] has shape {array.shape}, expected {shape}")
    if feature["dtype"] == "bool" and array.dtype != np.bool_:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"frame[{key!r}] is a bool feature, got {value!r}")
    return array.astype(feature["dtype"]).reshape(shape)


class EpisodeBuffer:
    """Frames of the episode being recorded, checked against the features as they arrive."""

    def __init__(self, features: dict):
        self.features = features
        self.columns: dict[str, list[np.ndarray]] = {key: [] for key in features}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def add(self, frame: dict) -> None:
        missing = sorted(set(self.features) - set(frame))
        unknown = sorted(set(frame) - set(self.features))
        if missing or unknown:
            raise ValueError(
                f"frame keys differ from the dataset features: missing {missing}, unknown {unknown}"
            )
        converted = {}
        for key, feature in self.features.items():
            if feature["dtype"] == "video":
                converted[key] = as_video_frame(frame[key], feature["shape"], key)
            else:
                converted[key] = as_numeric(frame[key], feature, key)
        for key, value in converted.items():
            self.columns[key].append(value)

    def arrays(self) -> dict[str, np.ndarray]:
        """Stacked columns: numeric (T,) for shape (1,) features else (T, D); videos (T, H, W, 3)."""
        stacked = {}
        for key, values in self.columns.items():
            array = np.stack(values)
            stacked[key] = array[:, 0] if self.features[key]["shape"] == (1,) else array
        return stacked

    def clear(self) -> None:
        for values in self.columns.values():
            values.clear()
