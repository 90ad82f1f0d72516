"""Absolute end-effector actions: the policy's rotation_6d form <-> robosuite's axis-angle form.

Per arm, robosuite's absolute OSC_POSE action is 7-d: position (3), axis-angle (3), gripper (1).
The policies are trained on 10-d actions: position (3), rotation_6d (6), gripper (1). Two-arm
tasks (Transport) concatenate the arms: 14-d <-> 20-d.
"""

import numpy as np

from diffusion_policy.model.common.rotation_transformer import RotationTransformer

ROBOSUITE_ARM_DIM = 7  # pos 3 + axis-angle 3 + gripper 1
POLICY_ARM_DIM = 10  # pos 3 + rotation_6d 6 + gripper 1


def _convert_arms(action: np.ndarray, in_dim: int, out_dim: int, convert_rotation) -> np.ndarray:
    action = np.asarray(action)
    if action.shape[-1] % in_dim != 0:
        raise ValueError(
            f"expected actions of {in_dim} (one arm) or {2 * in_dim} (two arms) dims, got {action.shape[-1]}"
        )
    n_arms = action.shape[-1] // in_dim
    arms = action.reshape(action.shape[:-1] + (n_arms, in_dim))  # (..., n_arms, in_dim)
    pos, rot, gripper = arms[..., :3], arms[..., 3:-1], arms[..., -1:]
    converted = np.concatenate([pos, convert_rotation(rot), gripper], axis=-1)  # (..., n_arms, out_dim)
    return converted.reshape(action.shape[:-1] + (n_arms * out_dim,))


def undo_transform_action(action: np.ndarray) -> np.ndarray:
    """(..., 10 * n_arms) policy actions -> (..., 7 * n_arms) robosuite actions."""
    rotation = RotationTransformer(from_rep="axis_angle", to_rep="rotation_6d")
    return _convert_arms(action, POLICY_ARM_DIM, ROBOSUITE_ARM_DIM, rotation.inverse)


def transform_action(action: np.ndarray) -> np.ndarray:
    """(..., 7 * n_arms) robosuite actions -> (..., 10 * n_arms) policy actions."""
    rotation = RotationTransformer(from_rep="axis_angle", to_rep="rotation_6d")
    return _convert_arms(action, ROBOSUITE_ARM_DIM, POLICY_ARM_DIM, rotation.forward)
