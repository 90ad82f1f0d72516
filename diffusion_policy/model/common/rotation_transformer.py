"""Rotation representation conversion in numpy (no pytorch3d), with pytorch3d's conventions:

- axis_angle (..., 3): rotation axis times angle in radians.
- quaternion (..., 4): (w, x, y, z), real part first; outputs have w >= 0.
- matrix (..., 3, 3): rotation matrix acting on column vectors.
- rotation_6d (..., 6): the first two ROWS of the matrix, flattened (Zhou et al. 2019); decoded
  with Gram-Schmidt, so any non-degenerate 6-vector maps to a valid rotation.
"""

import numpy as np
import torch

REPRESENTATIONS = ("axis_angle", "quaternion", "matrix", "rotation_6d")


def axis_angle_to_quaternion(axis_angle: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
    half = angle / 2
    small = np.abs(angle) < 1e-6
    # sin(angle/2)/angle, with its Taylor expansion near 0 to avoid 0/0
    safe_angle = np.where(small, 1.0, angle)
    sin_half_over_angle = np.where(small, 0.5 - angle**2 / 48, np.sin(half) / safe_angle)
    return np.concatenate([np.cos(half), axis_angle * sin_half_over_angle], axis=-1)


def quaternion_to_axis_angle(quaternion: np.ndarray) -> np.ndarray:
    quaternion = standardize_quaternion(quaternion)
    norm_xyz = np.linalg.norm(quaternion[..., 1:], axis=-1, keepdims=True)
    half = np.arctan2(norm_xyz, quaternion[..., :1])
    angle = 2 * half
    small = np.abs(angle) < 1e-6
    safe_angle = np.where(small, 1.0, angle)
    sin_half_over_angle = np.where(small, 0.5 - angle**2 / 48, np.sin(half) / safe_angle)
    return quaternion[..., 1:] / sin_half_over_angle


def standardize_quaternion(quaternion: np.ndarray) -> np.ndarray:
    """Pick the sign with non-negative real part (q and -q are the same rotation)."""
    return np.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    w, x, y, z = np.moveaxis(quaternion, -1, 0)
    two_s = 2.0 / np.sum(quaternion * quaternion, axis=-1)
    rows = [
        1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
        two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
        two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
    ]  # fmt: skip
    return np.stack(rows, axis=-1).reshape(quaternion.shape[:-1] + (3, 3))


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """Shepperd's method: compute from the largest of |w|,|x|,|y|,|z| for numerical stability."""
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 * squared components, each from the diagonal
    four_sq = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=-1)
    best = np.argmax(four_sq, axis=-1)
    root = np.sqrt(np.maximum(np.take_along_axis(four_sq, best[..., None], -1)[..., 0], 1e-12))
    # every candidate is (4 * component_best) * q; dividing by 2 * root gives q
    candidates = np.stack(
        [
            np.stack([four_sq[..., 0], m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            np.stack([m[..., 2, 1] - m[..., 1, 2], four_sq[..., 1], m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1),
            np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], four_sq[..., 2], m[..., 2, 1] + m[..., 1, 2]], -1),
            np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], four_sq[..., 3]], -1),
        ],
        axis=-2,
    )  # fmt: skip
    chosen = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    return standardize_quaternion(chosen / (2 * root[..., None]))


def matrix_to_rotation_6d(matrix: np.ndarray) -> np.ndarray:
    return matrix[..., :2, :].reshape(matrix.shape[:-2] + (6,)).copy()


def rotation_6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), 1e-12)
    b2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = b2 / np.maximum(np.linalg.norm(b2, axis=-1, keepdims=True), 1e-12)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-2)


_TO_MATRIX = {
    "axis_angle": lambda x: quaternion_to_matrix(axis_angle_to_quaternion(x)),
    "quaternion": quaternion_to_matrix,
    "matrix": lambda x: x,
    "rotation_6d": rotation_6d_to_matrix,
}
_FROM_MATRIX = {
    "axis_angle": lambda m: quaternion_to_axis_angle(matrix_to_quaternion(m)),
    "quaternion": matrix_to_quaternion,
    "matrix": lambda m: m,
    "rotation_6d": matrix_to_rotation_6d,
}


class RotationTransformer:
    """Convert rotations `from_rep` -> `to_rep` (`forward`) and back (`inverse`).

    Works on numpy arrays (..., D) (matrices: (..., 3, 3)); torch tensors are converted through
    numpy and returned as tensors of the same dtype and device.
    """

    def __init__(self, from_rep: str = "axis_angle", to_rep: str = "rotation_6d"):
        for rep in (from_rep, to_rep):
            if rep not in REPRESENTATIONS:
                raise ValueError(f"unknown rotation representation {rep!r}; use one of {REPRESENTATIONS}")
        if from_rep == to_rep:
            raise ValueError(f"from_rep and to_rep are both {from_rep!r}; nothing to convert")
        self.from_rep = from_rep
        self.to_rep = to_rep

    @staticmethod
    def _convert(x, src: str, dst: str):
        if isinstance(x, torch.Tensor):
            out = RotationTransformer._convert(x.detach().cpu().double().numpy(), src, dst)
            return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)
        x = np.asarray(x)
        out = _FROM_MATRIX[dst](_TO_MATRIX[src](x.astype(np.float64)))
        return out.astype(x.dtype) if np.issubdtype(x.dtype, np.floating) else out

    def forward(self, x):
        return self._convert(x, self.from_rep, self.to_rep)

    def inverse(self, x):
        return self._convert(x, self.to_rep, self.from_rep)
