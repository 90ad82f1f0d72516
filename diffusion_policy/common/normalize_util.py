"""Normalizers built from per-dim statistics, as the robomimic datasets use them.

`stat` arguments are dicts {'min','max','mean','std'} of (D,) numpy arrays (see `array_to_stats`).
"""

import numpy as np

from diffusion_policy.model.common.normalizer import SingleFieldLinearNormalizer


def array_to_stats(array: np.ndarray) -> dict:
    """Per-dim stats over the leading axis of an (N, D) array (std is the population std)."""
    array = np.asarray(array)
    return {
        "min": np.min(array, axis=0),
        "max": np.max(array, axis=0),
        "mean": np.mean(array, axis=0),
        "std": np.std(array, axis=0),
    }


def _range_scale_offset(stat: dict, output_max=1.0, output_min=-1.0, range_eps=1e-7):
    """scale/offset mapping [min, max] to [output_min, output_max]; dims whose range is below
    `range_eps` are shifted to the output midpoint instead."""
    input_min = stat["min"]
    input_range = stat["max"] - input_min
    ignore_dim = input_range < range_eps
    input_range = np.where(ignore_dim, output_max - output_min, input_range)
    scale = (output_max - output_min) / input_range
    offset = output_min - scale * input_min
    offset = np.where(ignore_dim, (output_max + output_min) / 2 - input_min, offset)
    return scale.astype(input_min.dtype), offset.astype(input_min.dtype)


def _identity_scale_offset_stats(example: np.ndarray):
    """Identity map for dims already in [-1, 1]; reported input stats are the nominal ones."""
    ones = np.ones_like(example)
    stats = {"min": -ones, "max": ones.copy(), "mean": np.zeros_like(example), "std": ones.copy()}
    return ones.copy(), np.zeros_like(example), stats


def get_range_normalizer_from_stat(stat: dict, output_max=1.0, output_min=-1.0, range_eps=1e-7):
    """Per-dim [min, max] -> [output_min, output_max]."""
    scale, offset = _range_scale_offset(stat, output_max, output_min, range_eps)
    return SingleFieldLinearNormalizer.create_manual(scale, offset, stat)


def get_identity_normalizer_from_stat(stat: dict) -> SingleFieldLinearNormalizer:
    """x -> x, keeping the data's own stats as input stats."""
    scale = np.ones_like(stat["min"])
    offset = np.zeros_like(stat["min"])
    return SingleFieldLinearNormalizer.create_manual(scale, offset, stat)


def get_image_range_normalizer() -> SingleFieldLinearNormalizer:
    """Images in [0, 1] -> [-1, 1] (scale 2, offset -1; one element broadcasts over C,H,W)."""
    scale = np.array([2], dtype=np.float32)
    offset = np.array([-1], dtype=np.float32)
    stat = {
        "min": np.array([0], dtype=np.float32),
        "max": np.array([1], dtype=np.float32),
        "mean": np.array([0.5], dtype=np.float32),
        "std": np.array([np.sqrt(1 / 12)], dtype=np.float32),  # uniform on [0, 1]
    }
    return SingleFieldLinearNormalizer.create_manual(scale, offset, stat)


def get_max_abs_normalizer_from_stat(stat: dict) -> SingleFieldLinearNormalizer:
    """One global scale 1 / max|x| for every dim, no offset (robomimic low-dim observations)."""
    max_abs = max(np.max(stat["max"]), np.max(np.abs(stat["min"])))
    scale = np.full_like(stat["max"], fill_value=1 / max_abs)
    offset = np.zeros_like(stat["max"])
    return SingleFieldLinearNormalizer.create_manual(scale, offset, stat)


def _abs_action_arm_params(stat: dict, start: int, width: int) -> tuple:
    """scale, offset, stats of one arm's `width` dims starting at `start` (pos 3 | rotation | gripper 1):
    position range-normalized to [-1, 1], rotation and gripper passed through."""
    pos_stat = {name: value[start : start + 3] for name, value in stat.items()}
    pos_scale, pos_offset = _range_scale_offset(pos_stat)
    rest_scale, rest_offset, rest_stats = _identity_scale_offset_stats(stat["max"][start + 3 : start + width])
    scale = np.concatenate([pos_scale, rest_scale])
    offset = np.concatenate([pos_offset, rest_offset])
    stats = {name: np.concatenate([pos_stat[name], rest_stats[name]]) for name in pos_stat}
    return scale, offset, stats


def _abs_action_normalizer(stat: dict, n_arms: int) -> SingleFieldLinearNormalizer:
    width = stat["max"].shape[-1] // n_arms
    arms = [_abs_action_arm_params(stat, arm * width, width) for arm in range(n_arms)]
    scale = np.concatenate([arm[0] for arm in arms])
    offset = np.concatenate([arm[1] for arm in arms])
    stats = {name: np.concatenate([arm[2][name] for arm in arms]) for name in arms[0][2]}
    return SingleFieldLinearNormalizer.create_manual(scale, offset, stats)


def robomimic_abs_action_only_normalizer_from_stat(stat: dict) -> SingleFieldLinearNormalizer:
    """Absolute single-arm action, e.g. (10,) = pos 3 | rot6d 6 | gripper 1."""
    return _abs_action_normalizer(stat, n_arms=1)


def robomimic_abs_action_only_dual_arm_normalizer_from_stat(stat: dict) -> SingleFieldLinearNormalizer:
    """Absolute dual-arm action, e.g. (20,): two single-arm halves, normalized per arm."""
    return _abs_action_normalizer(stat, n_arms=2)


def robomimic_abs_action_normalizer_from_stat(stat: dict) -> SingleFieldLinearNormalizer:
    """Absolute action normalizer; more than 10 dims means two arms (as in the original)."""
    n_arms = 2 if stat["max"].shape[-1] > 10 else 1
    return _abs_action_normalizer(stat, n_arms)
