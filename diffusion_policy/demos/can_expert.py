"""Scripted PickPlaceCan expert: above the can, descend, grasp, lift, carry over its bin, release.

Same action convention as the Lift expert (robosuite OSC_POSE world-frame deltas, gripper -1 open /
+1 closed) and the same P-controller; the can is a vertical cylinder, so the gripper keeps its yaw.
The can's goal (the centre of its quadrant of bin 2) is not in the robomimic observation: the
expert is given it (`goal`, from the env) when the episode starts.
"""

from dataclasses import dataclass

import numpy as np

from diffusion_policy.demos.expert import ScriptedExpert
from diffusion_policy.demos.lift_expert import (
    GRIPPER_CLOSED,
    GRIPPER_OPEN,
    gripper_yaw,
    quat_xyzw_to_matrix,
    servo_action,
)


# robomimic Can's low-dim observation keys (the task config's obs_keys) and sizes
CAN_LOWDIM_SHAPES = {"object": 14, "robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2}


@dataclass
class CanEpisodeStyle:
    """Per-episode variation of the scripted motion."""

    hover_height: float  # m above the can centre before descending
    grasp_height: float  # eef target z relative to the can centre when grasping
    cross_height: float  # m above the goal's z while crossing the wall between the bins
    carry_height: float  # m above the goal's z while carrying inside the goal bin
    release_height: float  # m above the goal's z where the can is let go
    pos_gain: float
    rot_gain: float
    max_speed: float  # cap on |position action| (1 = 5 cm per step)
    close_steps: int
    action_noise: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "CanEpisodeStyle":
        return cls(
            hover_height=rng.uniform(0.06, 0.12),
            grasp_height=rng.uniform(-0.01, 0.01),
            cross_height=rng.uniform(0.19, 0.22),
            carry_height=rng.uniform(0.13, 0.16),  # the arm reaches the far corner of the bin only this low
            release_height=rng.uniform(0.07, 0.10),
            pos_gain=rng.uniform(0.7, 1.0),
            rot_gain=rng.uniform(0.5, 0.9),
            max_speed=rng.uniform(0.6, 1.0),
            close_steps=int(rng.integers(6, 11)),
            action_noise=rng.uniform(0.0, 0.06),
        )


class CanExpert(ScriptedExpert):
    """Phase machine approach -> descend -> grasp -> lift -> cross -> carry -> lower -> release (and
    back off) over robomimic
    PickPlaceCan observations; `act(obs)` -> (7,) OSC_POSE delta action.

    obs: `object` (14,) = robosuite 1.5's PickPlace object-state: can-to-eef pos 3, can-to-eef quat 4,
    can pos 3, can quat 4 (robosuite 1.2, which robomimic's datasets come from, put pos and quat first);
    `robot0_eef_pos` (3,); `robot0_eef_quat` (4,) xyzw. `goal`: the can's target position (fixed
    by the scene: see `can_goal`).
    """

    style_class = CanEpisodeStyle

    def __init__(self, goal, rng: np.random.Generator | None = None):
        self.goal = np.asarray(goal, dtype=np.float64)
        super().__init__(rng)

    def start_episode(self) -> None:
        self.phase = "approach"
        self.phase_steps = 0
        self.yaw = None  # the gripper yaw of the episode (kept: the can is round)

    def act(self, obs: dict) -> np.ndarray:
        can_pos = np.asarray(obs["object"][7:10], dtype=np.float64)
        eef_pos = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        eef_rot = quat_xyzw_to_matrix(obs["robot0_eef_quat"])
        if self.yaw is None:
            self.yaw = gripper_yaw(eef_rot)
        target_pos, gripper = self._phase_target(can_pos, eef_pos)
        self.phase_steps += 1
        return servo_action(target_pos, self.yaw, gripper, eef_pos, eef_rot, self.style, self.rng)

    def _next_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_steps = 0

    def _phase_target(self, can_pos: np.ndarray, eef_pos: np.ndarray) -> tuple[np.ndarray, float]:
        style, goal = self.style, self.goal
        if self.phase == "approach":
            target = can_pos + np.array([0.0, 0.0, style.hover_height])
            if np.linalg.norm((target - eef_pos)[:2]) < 0.01 and abs(target[2] - eef_pos[2]) < 0.02:
                self._next_phase("descend")
            return target, GRIPPER_OPEN
        if self.phase == "descend":
            target = can_pos + np.array([0.0, 0.0, style.grasp_height])
            close = abs(target[2] - eef_pos[2]) < 0.01 and np.linalg.norm((target - eef_pos)[:2]) < 0.01
            if close or (self.phase_steps > 40 and abs(target[2] - eef_pos[2]) < 0.03):  # stalled low enough
                self._next_phase("grasp")
            return target, GRIPPER_OPEN
        if self.phase == "grasp":
            if self.phase_steps >= style.close_steps:
                self._next_phase("lift")
            return eef_pos.copy(), GRIPPER_CLOSED
        carry_z = goal[2] + style.carry_height
        cross_z = goal[2] + style.cross_height
        if self.phase == "lift":
            target = np.array([eef_pos[0], eef_pos[1], cross_z])
            if abs(target[2] - eef_pos[2]) < 0.03:
                self._next_phase("cross")
            return target, GRIPPER_CLOSED
        if self.phase == "cross":  # high over the wall between the bins, towards the goal
            target = np.array([goal[0] + eef_pos[0] - can_pos[0], goal[1] + eef_pos[1] - can_pos[1], cross_z])
            if abs(can_pos[1] - goal[1]) < 0.12 or self.phase_steps > 80:
                self._next_phase("carry")
            return target, GRIPPER_CLOSED
        if self.phase == "carry":  # the can hangs below the eef: steer the can over the goal
            target = np.array([goal[0] + eef_pos[0] - can_pos[0], goal[1] + eef_pos[1] - can_pos[1], carry_z])
            # the goal region is a bin quadrant (+-10 cm); near its edge the arm may not get closer
            if np.linalg.norm((target - eef_pos)[:2]) < 0.03 or self.phase_steps > 80:
                self._next_phase("lower")
            return target, GRIPPER_CLOSED
        if self.phase == "lower":
            target = np.array([goal[0] + eef_pos[0] - can_pos[0], goal[1] + eef_pos[1] - can_pos[1],
                               goal[2] + style.release_height])
            if abs(target[2] - eef_pos[2]) < 0.015:
                self._next_phase("release")
            return target, GRIPPER_CLOSED
        # release: open in place, then back off upwards (the task counts the can as placed only once
        # the gripper is more than ~4 cm away from it)
        if self.phase_steps < style.close_steps:
            return eef_pos.copy(), GRIPPER_OPEN
        return np.array([eef_pos[0], eef_pos[1], carry_z]), GRIPPER_OPEN


def can_goal(recorder) -> np.ndarray:
    """Where the can goes: the centre of its quadrant of bin 2, from the robosuite env."""
    env = recorder.env.env
    return np.asarray(env.target_bin_placements[env.object_to_id["can"]], dtype=np.float64)
