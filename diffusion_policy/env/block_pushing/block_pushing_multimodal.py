"""Multimodal block pushing: an xArm pushes two blocks into two targets (pybullet, DIRECT mode).

Our own implementation of the task from IBC/BET used by Diffusion Policy (`BlockPushMultimodal`):
same 16-d observation, 2-d action, reward, event info, seeding and reset distribution. Blocks,
targets and pusher are pybullet primitives instead of the original meshes (see README).

Observation (16,) float32, in this order (`OBS_LAYOUT`):
    block_translation 2, block_orientation 1, block2_translation 2, block2_orientation 1,
    effector_translation 2, effector_target_translation 2, target_translation 2,
    target_orientation 1, target2_translation 2, target2_orientation 1
Orientations are yaw angles modulo pi.
Action (2,): xy displacement of the effector target (or the absolute xy target with abs_action);
the new target is clipped to the workspace bounds, as the original does (the action itself is not).
Reward: 0.49 the first time a block enters a target (per block/target pair), 0.51 on the step where
both blocks sit in different targets. Like the original, any step reward >= 0.5 terminates the
episode (success, or two first entries in the same step: 0.98).
Info: step of first occurrence (-1 if never) of REACH_{b} (block b moved) and TARGET_{b}_{t}.
"""

from __future__ import annotations

import functools
import math

import gymnasium
import numpy as np
import pybullet
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from diffusion_policy.env.block_pushing.xarm_pusher import XArmPusher

OBS_LAYOUT = (
    ("block_translation", 2), ("block_orientation", 1),
    ("block2_translation", 2), ("block2_orientation", 1),
    ("effector_translation", 2), ("effector_target_translation", 2),
    ("target_translation", 2), ("target_orientation", 1),
    ("target2_translation", 2), ("target2_orientation", 1),
)
OBS_DIM = sum(dim for _, dim in OBS_LAYOUT)  # 16
EVENT_NAMES = ("REACH_0", "REACH_1", "TARGET_0_0", "TARGET_0_1", "TARGET_1_0", "TARGET_1_1")

WORKSPACE_BOUNDS = np.array([[0.15, -0.5], [0.7, 0.5]])  # (min xy, max xy) of the effector target
WORKSPACE_CENTER_X = 0.4
EFFECTOR_HEIGHT = 0.06
EFFECTOR_DOWN_XYZW = (0.0, 1.0, 0.0, 0.0)  # rotation by pi about y
EFFECTOR_START_XY = (0.3, -0.4)
BLOCK_SIZE = 0.04
BLOCK_MASS = 0.01
BLOCK_COLORS = ((0.9, 0.3, 0.3, 1.0), (0.4, 0.4, 1.0, 1.0))
TARGET_SIZE = 0.1
TARGET_HEIGHT = 0.02  # z of the target poses, as the original
TARGET_COLORS = ((0.0, 0.8, 0.0, 1.0), (0.9, 0.8, 0.0, 1.0))
# Reset distribution (original constants): blocks in front, targets behind, 0.24 m apart in x.
BLOCK_SHIFT_XY = (0.1, 0.15)
BLOCK_Y = -0.2
TARGET_SHIFT_XY = (0.005, 0.0075)
TARGET_Y = 0.2
TARGET_SIDE_OFFSET = 0.12
MIN_BLOCK_DIST = 0.1  # compared on x only, as the original
MIN_TARGET_DIST = 0.12
NUM_RESET_ATTEMPTS = 1000
STABILIZE_SIM_STEPS = 100
# Camera of the original: position, xyz euler, focal length 0.803 * width.
CAMERA_POSITION = (1.0, 0.0, 0.75)
CAMERA_EULER = (math.pi / 4, math.pi, -math.pi / 2)
RENDER_HW = (240, 320)


def _yaw_mod_pi(orientation_xyzw) -> float:
    return pybullet.getEulerFromQuaternion(orientation_xyzw)[2] % math.pi


class BlockPushMultimodal(gymnasium.Env):
    """Two blocks, two targets; the episode succeeds when each target holds one block."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, control_frequency: float = 10.0, goal_dist_tolerance: float = 0.05,
                 abs_action: bool = False, render_hw: tuple[int, int] = RENDER_HW,
                 render_mode: str = "rgb_array", seed: int | None = None):
        self.goal_dist_tolerance = goal_dist_tolerance
        self.abs_action = abs_action
        self.render_hw = tuple(render_hw)
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Box(-5.0, 5.0, shape=(OBS_DIM,), dtype=np.float32)
        if abs_action:  # absolute xy of the effector target
            self.action_space = gymnasium.spaces.Box(
                WORKSPACE_BOUNDS[0].astype(np.float32), WORKSPACE_BOUNDS[1].astype(np.float32))
        else:  # xy displacement of the effector target
            self.action_space = gymnasium.spaces.Box(-0.1, 0.1, shape=(2,), dtype=np.float32)
        self._rng = np.random.RandomState(seed)

        self.client = BulletClient(connection_mode=pybullet.DIRECT)
        sim_frequency = 1.0 / self.client.getPhysicsEngineParameters()["fixedTimeStep"]
        if sim_frequency % control_frequency != 0:
            raise ValueError(f"control_frequency {control_frequency} must divide the physics rate "
                             f"{sim_frequency:.0f} Hz; use e.g. 10")
        self.sim_steps_per_action = int(sim_frequency // control_frequency)
        self._build_scene()
        self._initial_state = self.client.saveState()

        self._effector_target_xy = np.array(EFFECTOR_START_XY)
        self._target_poses = [(np.zeros(3), 0.0), (np.zeros(3), 0.0)]
        self._initial_block_dist = [0.0, 0.0]
        self._entered = np.zeros((2, 2), dtype=bool)  # [target, block]
        self._events = dict.fromkeys(EVENT_NAMES, -1)
        self._num_steps = 0

    # ----- scene -----
    def _build_scene(self) -> None:
        client = self.client
        client.setGravity(0, 0, -9.8)
        client.loadURDF(pybullet_data.getDataPath() + "/plane.urdf", [0, 0, -0.001])
        workspace = client.createVisualShape(pybullet.GEOM_BOX, halfExtents=[0.4, 0.6, 0.0005],
                                             rgbaColor=[0.2, 0.2, 0.2, 1])
        client.createMultiBody(baseVisualShapeIndex=workspace, basePosition=[0.35, 0, 0])
        self.robot = XArmPusher(client)
        # Targets are visual only (no collision), like the original zones.
        self.target_ids = []
        for color in TARGET_COLORS:
            visual = client.createVisualShape(pybullet.GEOM_BOX, rgbaColor=color,
                                              halfExtents=[TARGET_SIZE / 2, TARGET_SIZE / 2, 0.0005])
            self.target_ids.append(client.createMultiBody(baseVisualShapeIndex=visual,
                                                          basePosition=[0, 0, 0.001]))
        self.block_ids = []
        half = [BLOCK_SIZE / 2] * 3
        for i, color in enumerate(BLOCK_COLORS):
            collision = client.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half)
            visual = client.createVisualShape(pybullet.GEOM_BOX, halfExtents=half, rgbaColor=color)
            block = client.createMultiBody(baseMass=BLOCK_MASS, baseCollisionShapeIndex=collision,
                                           baseVisualShapeIndex=visual,
                                           basePosition=[WORKSPACE_CENTER_X, -0.1 * i, BLOCK_SIZE / 2])
            # The original block URDF's friction and (unit) inertia: blocks slide more than spin.
            client.changeDynamics(block, -1, lateralFriction=0.5, rollingFriction=0.0001,
                                  localInertiaDiagonal=[1.0, 1.0, 1.0])
            self.block_ids.append(block)
        self._step_physics(STABILIZE_SIM_STEPS)

    def _step_physics(self, n: int) -> None:
        for _ in range(n):
            self.client.stepSimulation()

    def _set_effector_target(self, xy) -> None:
        self._effector_target_xy = np.array(xy, dtype=np.float64)
        position = [xy[0], xy[1], EFFECTOR_HEIGHT]
        self.robot.set_target_effector_pose(position, EFFECTOR_DOWN_XYZW)

    # ----- state access (also for scripted oracles) -----
    def get_block_poses(self) -> list[tuple[np.ndarray, float]]:
        """[(position (3,), yaw mod pi)] of block 0 and block 1."""
        poses = []
        for block in self.block_ids:
            position, orientation = self.client.getBasePositionAndOrientation(block)
            poses.append((np.array(position), _yaw_mod_pi(orientation)))
        return poses

    def get_target_poses(self) -> list[tuple[np.ndarray, float]]:
        """[(position (3,), yaw mod pi)] of target 0 and target 1."""
        return [(position.copy(), yaw % math.pi) for position, yaw in self._target_poses]

    def get_effector_translation(self) -> np.ndarray:
        """Measured effector (flange) xy, (2,)."""
        return self.robot.effector_pose()[0][:2].copy()

    def get_effector_target_translation(self) -> np.ndarray:
        """Commanded effector xy, (2,)."""
        return self._effector_target_xy.copy()

    def set_block_pose(self, index: int, xy, yaw: float = 0.0) -> None:
        """Teleport block `index` (resting on the table) and zero its velocity."""
        orientation = pybullet.getQuaternionFromEuler([0, 0, yaw])
        self.client.resetBasePositionAndOrientation(
            self.block_ids[index], [xy[0], xy[1], BLOCK_SIZE / 2], orientation)
        self.client.resetBaseVelocity(self.block_ids[index], [0, 0, 0], [0, 0, 0])

    def _set_target_pose(self, index: int, position: np.ndarray, yaw: float) -> None:
        self._target_poses[index] = (position, yaw)
        self.client.resetBasePositionAndOrientation(
            self.target_ids[index], [position[0], position[1], 0.001],
            pybullet.getQuaternionFromEuler([0, 0, yaw]))

    def _observe(self) -> np.ndarray:
        (block0, yaw0), (block1, yaw1) = self.get_block_poses()
        (target0, target_yaw0), (target1, target_yaw1) = self.get_target_poses()
        return np.concatenate([
            block0[:2], [yaw0], block1[:2], [yaw1],
            self.get_effector_translation(), self._effector_target_xy,
            target0[:2], [target_yaw0], target1[:2], [target_yaw1],
        ]).astype(np.float32)

    # ----- reset -----
    def _sample_apart(self, sample_xy, avoid_x: float | None, min_dist: float) -> np.ndarray:
        """Draw xy from `sample_xy`, redrawing (up to 1000 times) while |x - avoid_x| <= min_dist."""
        xy = sample_xy()
        if avoid_x is not None:
            for _ in range(NUM_RESET_ATTEMPTS - 1):
                if abs(xy[0] - avoid_x) > min_dist:
                    break
                xy = sample_xy()
        return xy

    def _reset_blocks(self) -> None:
        def sample_xy():
            x = WORKSPACE_CENTER_X + self._rng.uniform(-BLOCK_SHIFT_XY[0], BLOCK_SHIFT_XY[0])
            y = BLOCK_Y + self._rng.uniform(-BLOCK_SHIFT_XY[1], BLOCK_SHIFT_XY[1])
            return np.array([x, y])

        for _ in range(NUM_RESET_ATTEMPTS):
            xy0 = self._sample_apart(sample_xy, None, MIN_BLOCK_DIST)
            # uniform(pi) is uniform(low=pi, high=1): yaw in (1, pi], kept to match the original.
            self.set_block_pose(0, xy0, self._rng.uniform(math.pi))
            xy1 = self._sample_apart(sample_xy, xy0[0], MIN_BLOCK_DIST)
            self.set_block_pose(1, xy1, self._rng.uniform(math.pi))
            if abs(xy0[0] - xy1[0]) > MIN_BLOCK_DIST:
                return
        raise RuntimeError("could not place the two blocks apart; check the reset constants")

    def _reset_targets(self) -> None:
        def sample_position(side):
            x = WORKSPACE_CENTER_X + side + self._rng.uniform(-TARGET_SHIFT_XY[0], TARGET_SHIFT_XY[0])
            y = TARGET_Y + self._rng.uniform(-TARGET_SHIFT_XY[1], TARGET_SHIFT_XY[1])
            return np.array([x, y])

        for _ in range(NUM_RESET_ATTEMPTS):
            side = TARGET_SIDE_OFFSET * self._rng.choice([-1, 1])  # which target goes left
            xy0 = self._sample_apart(functools.partial(sample_position, side), None, MIN_TARGET_DIST)
            yaw0 = math.pi + self._rng.uniform(-math.pi / 30, math.pi / 30)
            self._set_target_pose(0, np.array([xy0[0], xy0[1], TARGET_HEIGHT]), yaw0)
            xy1 = self._sample_apart(functools.partial(sample_position, -side), xy0[0], MIN_TARGET_DIST)
            yaw1 = math.pi + self._rng.uniform(-math.pi / 30, math.pi / 30)
            self._set_target_pose(1, np.array([xy1[0], xy1[1], TARGET_HEIGHT]), yaw1)
            if abs(xy0[0] - xy1[0]) > MIN_TARGET_DIST:
                return
        raise RuntimeError("could not place the two targets apart; check the reset constants")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Seeded reset: `seed` re-creates the RandomState that draws block and target poses."""
        super().reset(seed=seed)
        if options:
            raise ValueError(f"BlockPushMultimodal.reset takes no options (got {sorted(options)}); "
                             "initial conditions come from the seed")
        if seed is not None:
            self._rng = np.random.RandomState(seed)
        self.client.restoreState(self._initial_state)
        self._set_effector_target(EFFECTOR_START_XY)
        self._reset_blocks()
        self._reset_targets()
        self._step_physics(STABILIZE_SIM_STEPS)

        self._initial_block_dist = [np.linalg.norm(p[:2]) for p, _ in self.get_block_poses()]
        self._entered[:] = False
        self._events = dict.fromkeys(EVENT_NAMES, -1)
        self._num_steps = 0
        return self._observe(), dict(self._events)

    # ----- step -----
    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(2)
        target_xy = action if self.abs_action else self._effector_target_xy + action
        self._set_effector_target(np.clip(target_xy, WORKSPACE_BOUNDS[0], WORKSPACE_BOUNDS[1]))
        self._step_physics(self.sim_steps_per_action)
        self._num_steps += 1

        obs = self._observe()
        reward = self._update_progress(obs)
        terminated = reward >= 0.5
        return obs, reward, terminated, False, dict(self._events)

    def _update_progress(self, obs: np.ndarray) -> float:
        """Record REACH/TARGET events for this step and return its reward."""
        blocks_xy = [obs[0:2], obs[3:5]]
        targets_xy = [obs[10:12], obs[13:15]]
        for b, xy in enumerate(blocks_xy):
            moved = abs(np.linalg.norm(xy) - self._initial_block_dist[b]) > 1e-3
            if moved and self._events[f"REACH_{b}"] < 0:
                self._events[f"REACH_{b}"] = self._num_steps

        dist = np.array([[np.linalg.norm(blocks_xy[b] - targets_xy[t]) for b in range(2)]
                         for t in range(2)])  # [target, block]
        reward = 0.0
        newly_entered = (dist < self.goal_dist_tolerance) & ~self._entered
        for t, b in zip(*np.nonzero(newly_entered)):
            self._events[f"TARGET_{b}_{t}"] = self._num_steps
            reward += 0.49
        self._entered |= newly_entered

        closest_target = dist.argmin(axis=0)  # per block
        both_in = (dist.min(axis=0) < self.goal_dist_tolerance).all()
        if both_in and closest_target[0] != closest_target[1]:
            reward = 0.51
        return reward

    # ----- rendering -----
    def render(self) -> np.ndarray:
        """RGB (H, W, 3) uint8 from the original's fixed camera, via pybullet's TinyRenderer."""
        height, width = self.render_hw
        rotation = np.array(self.client.getMatrixFromQuaternion(
            self.client.getQuaternionFromEuler(CAMERA_EULER))).reshape(3, 3)
        look_direction = rotation @ np.array([0.0, 0.0, 1.0])
        up_direction = rotation @ np.array([0.0, -1.0, 0.0])
        view = self.client.computeViewMatrix(
            CAMERA_POSITION, (np.array(CAMERA_POSITION) + look_direction).tolist(),
            up_direction.tolist())
        focal_length = 0.803 * width
        fov_deg = math.degrees(2 * math.atan((height / 2) / focal_length))
        projection = self.client.computeProjectionMatrixFOV(fov_deg, width / height, 0.01, 10.0)
        _, _, rgba, _, _ = self.client.getCameraImage(
            width, height, viewMatrix=view, projectionMatrix=projection,
            renderer=pybullet.ER_TINY_RENDERER)
        return np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3].copy()

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client = None
