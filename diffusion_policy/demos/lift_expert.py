"""Scripted Lift expert: hover above the cube, descend, close the gripper, lift.

Actions are robosuite OSC_POSE deltas in the world frame (7,): position (3) in [-1, 1] scaled to
+-5 cm, axis-angle rotation (3) in [-1, 1] scaled to +-0.5 rad, gripper (1) -1 open / +1 closed.
A P-controller drives the end effector to the target of the current phase while keeping the
gripper pointing down, its yaw aligned with a face of the cube. Every episode draws its own gains,
heights, timings and action noise so that the demonstrations are diverse.
"""

from dataclasses import dataclass

import numpy as np

from diffusion_policy.demos.expert import ScriptedExpert
from diffusion_policy.demos.robomimic_recording import collect_robosuite_episode

OSC_MAX_POS_DELTA = 0.05  # m per step at action 1 (robosuite's OSC_POSE output_max)
OSC_MAX_ROT_DELTA = 0.5  # rad per step at action 1
GRIPPER_OPEN, GRIPPER_CLOSED = -1.0, 1.0
LIFT_SUCCESS_HEIGHT = 0.04  # Lift succeeds when the cube is this far above the table


def quat_xyzw_to_matrix(quat: np.ndarray) -> np.ndarray:
    """(4,) unit quaternion x, y, z, w -> (3, 3) rotation matrix."""
    x, y, z, w = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_rotvec(rot: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> (3,) axis-angle vector (angle in [0, pi])."""
    cos_angle = np.clip((np.trace(rot) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos_angle)
    if angle < 1e-8:
        return np.zeros(3)
    if np.pi - angle < 1e-4:  # near pi the antisymmetric part vanishes: read the axis off R + I
        column = np.argmax(np.diag(rot))
        axis = (rot[:, column] + np.eye(3)[column]) / np.sqrt(2 * (1 + rot[column, column]))
        return axis * angle
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]]) / (2 * np.sin(angle))
    return axis * angle


def wrap_angle(angle: float, period: float = 2 * np.pi) -> float:
    """`angle` wrapped into [-period / 2, period / 2)."""
    return (angle + period / 2) % period - period / 2


def top_down_gripper_matrix(yaw: float) -> np.ndarray:
    """Rotation of a Panda gripper pointing straight down, turned by `yaw` about world z.

    At yaw 0 the gripper frame is diag(1, -1, -1): fingers close along world y."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    return np.array([[cos, sin, 0.0], [sin, -cos, 0.0], [0.0, 0.0, -1.0]])


def gripper_yaw(rot: np.ndarray) -> float:
    """Yaw of a (roughly) top-down gripper: the heading of its x axis in the world xy plane."""
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def servo_action(target_pos: np.ndarray, yaw: float, gripper: float, eef_pos: np.ndarray, eef_rot: np.ndarray,
                 style, rng: np.random.Generator) -> np.ndarray:
    """(7,) OSC_POSE delta action driving the eef to `target_pos`, pointing down at `yaw`: a
    P-controller with the style's gains (pos_gain, rot_gain), speed cap (max_speed) and Gaussian
    action noise (action_noise), clipped to [-1, 1]; `gripper` last."""
    pos_action = style.pos_gain * (target_pos - eef_pos) / OSC_MAX_POS_DELTA
    speed = np.linalg.norm(pos_action)
    if speed > style.max_speed:
        pos_action *= style.max_speed / speed
    rot_error = matrix_to_rotvec(top_down_gripper_matrix(yaw) @ eef_rot.T)  # world frame
    rot_action = style.rot_gain * rot_error / OSC_MAX_ROT_DELTA
    motion = np.concatenate([pos_action, rot_action]) + rng.normal(0.0, style.action_noise, size=6)
    return np.concatenate([np.clip(motion, -1.0, 1.0), [gripper]]).astype(np.float32)


@dataclass
class LiftEpisodeStyle:
    """Per-episode variation of the scripted motion."""

    hover_height: float  # m above the cube centre before descending
    grasp_depth: float  # eef target z relative to the cube centre when grasping
    lift_height: float  # m the cube is raised above its start
    pos_gain: float  # fraction of the position error commanded per step
    rot_gain: float  # fraction of the orientation error commanded per step
    max_speed: float  # cap on |position action| (1 = 5 cm per step)
    close_steps: int  # steps spent closing the gripper before lifting
    action_noise: float  # std of Gaussian noise on the position/rotation actions
    yaw_offset: float  # small deliberate misalignment of the grasp yaw (rad)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "LiftEpisodeStyle":
        return cls(
            hover_height=rng.uniform(0.05, 0.12),
            grasp_depth=rng.uniform(-0.006, 0.006),
            lift_height=rng.uniform(0.08, 0.14),
            pos_gain=rng.uniform(0.7, 1.0),
            rot_gain=rng.uniform(0.5, 0.9),
            max_speed=rng.uniform(0.6, 1.0),
            close_steps=int(rng.integers(6, 11)),
            action_noise=rng.uniform(0.0, 0.08),
            yaw_offset=rng.uniform(-0.08, 0.08),
        )


class LiftExpert(ScriptedExpert):
    """Phase machine (approach -> descend -> grasp -> lift) over robomimic Lift observations;
    `act(obs)` -> (7,) OSC_POSE delta action.

    obs: dict with `object` (10,) = cube pos 3, cube quat xyzw 4, gripper-to-cube 3;
    `robot0_eef_pos` (3,); `robot0_eef_quat` (4,) xyzw.
    """

    style_class = LiftEpisodeStyle

    def start_episode(self) -> None:
        self.phase = "approach"
        self.phase_steps = 0
        self.grasp_yaw = None  # fixed once the descent starts
        self.cube_start_z = None

    def act(self, obs: dict) -> np.ndarray:
        cube_pos = np.asarray(obs["object"][:3], dtype=np.float64)
        cube_rot = quat_xyzw_to_matrix(obs["object"][3:7])
        eef_pos = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        eef_rot = quat_xyzw_to_matrix(obs["robot0_eef_quat"])
        if self.cube_start_z is None:
            self.cube_start_z = cube_pos[2]

        target_pos, gripper = self._phase_target(cube_pos, cube_rot, eef_pos, eef_rot)
        yaw = self.grasp_yaw if self.grasp_yaw is not None else self._aligned_yaw(cube_rot, eef_rot)
        self.phase_steps += 1
        return servo_action(target_pos, yaw, gripper, eef_pos, eef_rot, self.style, self.rng)

    def _aligned_yaw(self, cube_rot: np.ndarray, eef_rot: np.ndarray) -> float:
        """Gripper yaw that puts the fingers across a pair of cube faces, closest to the current yaw.

        The fingers close along the gripper's y axis (yaw - 90 deg); the cube's faces repeat every
        90 deg, so any yaw equal to the cube's modulo 90 deg works."""
        cube_yaw = float(np.arctan2(cube_rot[1, 0], cube_rot[0, 0]))
        current = gripper_yaw(eef_rot)
        return current + wrap_angle(cube_yaw - current, np.pi / 2) + self.style.yaw_offset

    def _next_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_steps = 0

    def _phase_target(self, cube_pos, cube_rot, eef_pos, eef_rot) -> tuple[np.ndarray, float]:
        """(eef target position (3,), gripper command) for this step; advances the phase."""
        style = self.style
        if self.phase == "approach":
            target = cube_pos + np.array([0.0, 0.0, style.hover_height])
            yaw_error = abs(wrap_angle(self._aligned_yaw(cube_rot, eef_rot) - gripper_yaw(eef_rot)))
            if np.linalg.norm((target - eef_pos)[:2]) < 0.01 and abs(target[2] - eef_pos[2]) < 0.02 and yaw_error < 0.1:
                self.grasp_yaw = self._aligned_yaw(cube_rot, eef_rot)
                self._next_phase("descend")
            return target, GRIPPER_OPEN
        if self.phase == "descend":
            target = cube_pos + np.array([0.0, 0.0, style.grasp_depth])
            if abs(target[2] - eef_pos[2]) < 0.008 and np.linalg.norm((target - eef_pos)[:2]) < 0.008:
                self._next_phase("grasp")
            return target, GRIPPER_OPEN
        if self.phase == "grasp":
            if self.phase_steps >= style.close_steps:
                self._next_phase("lift")
            return eef_pos.copy(), GRIPPER_CLOSED
        # lift: raise straight up above the cube's start
        target = np.array([eef_pos[0], eef_pos[1], self.cube_start_z + style.lift_height + style.grasp_depth])
        return target, GRIPPER_CLOSED


# The episode loop is the same for every robosuite task (kept under its first name for old recipes).
collect_lift_episode = collect_robosuite_episode
