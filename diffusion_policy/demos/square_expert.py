"""Scripted NutAssemblySquare expert (robomimic's Square): grasp the nut's handle, lift, turn it square
to the peg, carry it over the peg, lower it down the peg, release, back off.

Same action convention and P-controller as the Lift and Can experts (robosuite OSC_POSE world-frame
deltas, gripper -1 open / +1 closed). The square nut is a 9 cm square ring with a handle along its
local x axis (robosuite's SquareNut: handle box centred 5.4 cm from the ring centre, 3.2 cm wide);
the fingers close across the handle, beyond the ring's wall. The peg is square too, so the nut must
be turned to a multiple of 90 degrees before it slides down: the expert turns it to the closest
multiple that does not point the handle away from the robot (the arm cannot reach beyond the peg).
The peg's position is fixed by the scene and not in the robomimic observation: the expert is given
it (`peg`, from the env).
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
    wrap_angle,
)

# robomimic Square's low-dim observation keys (the task config's obs_keys) and sizes
SQUARE_LOWDIM_SHAPES = {"object": 14, "robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2}
FINGERS_OPEN = 0.035  # robot0_gripper_qpos[0] once the fingers are (nearly) fully open (0.04)


@dataclass
class SquareEpisodeStyle:
    """Per-episode variation of the scripted motion."""

    hover_height: float  # m above the handle before descending
    grasp_height: float  # eef target z relative to the handle centre when grasping
    handle_offset: float  # grasp point along the nut's x axis from its centre (the free part: 4.4-7.9 cm)
    carry_height: float  # m above the peg's base while carrying
    release_height: float  # nut z relative to the peg's base where it is let go
    pos_gain: float
    rot_gain: float
    max_speed: float  # cap on |position action| (1 = 5 cm per step)
    close_steps: int
    action_noise: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "SquareEpisodeStyle":
        return cls(
            hover_height=rng.uniform(0.06, 0.10),
            grasp_height=rng.uniform(-0.006, 0.0),
            handle_offset=rng.uniform(0.058, 0.066),  # closer in, a finger lands on the ring's wall
            carry_height=rng.uniform(0.13, 0.16),
            release_height=rng.uniform(-0.012, 0.0),
            pos_gain=rng.uniform(0.7, 1.0),
            rot_gain=rng.uniform(0.5, 0.9),
            max_speed=rng.uniform(0.6, 1.0),
            close_steps=int(rng.integers(10, 15)),  # fewer: the handle slips out while the grip builds
            action_noise=rng.uniform(0.0, 0.04),
        )


def yaw_of(rot: np.ndarray) -> float:
    """Heading of a frame's x axis in the world xy plane."""
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


class SquareExpert(ScriptedExpert):
    """Phase machine approach -> descend -> grasp -> lift -> carry -> lower -> release (and back off)
    over robomimic NutAssemblySquare observations; `act(obs)` -> (7,) OSC_POSE delta action.

    obs: `object` (14,) = robosuite 1.5's nut object-state: nut-to-eef pos 3, nut-to-eef quat 4, nut
    pos 3, nut quat xyzw 4 (as Can's); `robot0_eef_pos` (3,); `robot0_eef_quat` (4,) xyzw;
    `robot0_gripper_qpos` (2,). `peg`: the square peg's base position (see `square_peg`).
    """

    style_class = SquareEpisodeStyle

    def __init__(self, peg, rng: np.random.Generator | None = None):
        self.peg = np.asarray(peg, dtype=np.float64)
        super().__init__(rng)

    def start_episode(self) -> None:
        self.phase = "approach"
        self.phase_steps = 0
        self.grasp_yaw = None  # gripper yaw fixed when the descent starts
        self.place_yaw = None  # gripper yaw that squares the nut to the peg, fixed once lifted

    def act(self, obs: dict) -> np.ndarray:
        nut_pos = np.asarray(obs["object"][7:10], dtype=np.float64)
        nut_rot = quat_xyzw_to_matrix(obs["object"][10:14])
        eef_pos = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        eef_rot = quat_xyzw_to_matrix(obs["robot0_eef_quat"])
        fingers = float(obs["robot0_gripper_qpos"][0])
        target_pos, yaw, gripper = self._phase_target(nut_pos, nut_rot, eef_pos, gripper_yaw(eef_rot), fingers)
        self.phase_steps += 1
        return servo_action(target_pos, yaw, gripper, eef_pos, eef_rot, self.style, self.rng)

    def _next_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_steps = 0

    def _phase_target(self, nut_pos, nut_rot, eef_pos, eef_yaw: float, fingers: float):
        """(eef target position (3,), gripper yaw, gripper command) for this step; advances the phase."""
        style = self.style
        nut_yaw = yaw_of(nut_rot)
        if self.phase in ("approach", "descend"):
            handle = nut_pos + nut_rot[:, 0] * style.handle_offset
            # fingers close along the gripper's y axis: across the handle when the gripper's x axis
            # is along the nut's (either way round)
            yaw = eef_yaw + wrap_angle(nut_yaw - eef_yaw, np.pi)
            if self.phase == "approach":
                target = handle + np.array([0.0, 0.0, style.hover_height])
                aligned = abs(wrap_angle(yaw - eef_yaw)) < 0.08
                if np.linalg.norm((target - eef_pos)[:2]) < 0.01 and abs(target[2] - eef_pos[2]) < 0.02 and aligned:
                    self.grasp_yaw = yaw
                    self._next_phase("descend")
                return target, yaw, GRIPPER_OPEN
            target = handle + np.array([0.0, 0.0, style.grasp_height])
            xy_error, z_error = np.linalg.norm((target - eef_pos)[:2]), abs(target[2] - eef_pos[2])
            if (z_error < 0.006 and xy_error < 0.004) or (self.phase_steps > 50 and xy_error < 0.008):
                self._next_phase("grasp")
            return target, self.grasp_yaw, GRIPPER_OPEN
        if self.phase == "grasp":
            if self.phase_steps >= style.close_steps:
                self._next_phase("lift")
            return eef_pos.copy(), self.grasp_yaw, GRIPPER_CLOSED

        if self.place_yaw is None:  # the nut's misalignment, turned by the closest allowed quarter
            turns = [wrap_angle(c - nut_yaw) for c in (np.pi / 2, np.pi, -np.pi / 2)]  # handle not along +x
            self.place_yaw = eef_yaw + min(turns, key=abs)
        over_peg = self.peg + (eef_pos - nut_pos)  # the eef position that puts the nut's centre over the peg
        carry_z = self.peg[2] + style.carry_height
        if self.phase == "lift":  # straight up, still at the grasp yaw
            target = np.array([eef_pos[0], eef_pos[1], carry_z])
            if abs(target[2] - eef_pos[2]) < 0.03:
                self._next_phase("carry")
            return target, self.grasp_yaw, GRIPPER_CLOSED
        if self.phase == "carry":  # turn the nut square while carrying it over the peg
            target = np.array([over_peg[0], over_peg[1], carry_z])
            squared = abs(wrap_angle(nut_yaw, np.pi / 2)) < 0.05
            if (np.linalg.norm((nut_pos - self.peg)[:2]) < 0.006 and squared) or self.phase_steps > 120:
                self._next_phase("lower")
            return target, self.place_yaw, GRIPPER_CLOSED
        if self.phase == "lower":  # down the peg, keeping the nut centred on it
            release_z = self.peg[2] + style.release_height
            target = np.array([over_peg[0], over_peg[1], release_z + eef_pos[2] - nut_pos[2]])
            if nut_pos[2] < release_z + 0.008 or self.phase_steps > 40:
                self._next_phase("release")
            return target, self.place_yaw, GRIPPER_CLOSED
        # release: open in place until the fingers are open (rising earlier drags the nut up the
        # peg), then back off upwards (the task counts the nut as placed only once the gripper is away)
        if self.phase_steps < style.close_steps or (fingers < FINGERS_OPEN and self.phase_steps < 25):
            return eef_pos.copy(), self.place_yaw, GRIPPER_OPEN
        return np.array([eef_pos[0], eef_pos[1], carry_z]), self.place_yaw, GRIPPER_OPEN


def square_peg(recorder) -> np.ndarray:
    """The square peg's base position (robosuite's peg1), from the env."""
    env = recorder.env.env
    return np.array(env.sim.data.body_xpos[env.peg1_body_id], dtype=np.float64)
