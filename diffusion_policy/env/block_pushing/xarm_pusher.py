"""A pybullet xArm6 with a cylindrical pusher, driven by inverse kinematics.

The arm comes from `pybullet_data` (`xarm/xarm6_robot.urdf`). The pusher is a separate cylinder
body welded to the last link with a fixed constraint (as the original IBC/BET environment welds its
suction head), with collisions between pusher and arm switched off.
"""

from __future__ import annotations

import numpy as np
import pybullet
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

EFFECTOR_LINK = 6  # `link6`, the flange
# Joint angles that put the flange at (0.3, -0.4, 0.07) pointing down (from the original env).
INITIAL_JOINT_POSITIONS = (-0.92546, 0.69908, -1.10663, 0.00067, 0.39880, -4.06340)
MOTOR_FORCE = 5 * 240.0  # per joint, as the original
# Pusher geometry, along the flange's z axis (which points down when the effector points down).
PUSHER_RADIUS = 0.01
PUSHER_LENGTH = 0.05
PUSHER_OFFSET = 0.04  # weld frame (flange centre of mass) to cylinder centre: tip 6.5 cm below
PUSHER_MASS = 0.1
PUSHER_MAX_FORCE = 50.0  # strength of the weld, as the original


class XArmPusher:
    """Loads the arm and pusher into `client` and moves the flange with IK + position control."""

    def __init__(self, client: BulletClient):
        self.client = client
        self.arm_id = client.loadURDF(
            pybullet_data.getDataPath() + "/xarm/xarm6_robot.urdf", [0, 0, 0], useFixedBase=True
        )
        self.joint_ids = [
            j for j in range(client.getNumJoints(self.arm_id))
            if client.getJointInfo(self.arm_id, j)[2] == pybullet.JOINT_REVOLUTE
        ]
        for j in self.joint_ids:
            client.changeDynamics(self.arm_id, j, linearDamping=0, angularDamping=0)
        self.reset_joints(INITIAL_JOINT_POSITIONS)
        self.pusher_id = self._attach_pusher()

    def _attach_pusher(self) -> int:
        client = self.client
        collision = client.createCollisionShape(
            pybullet.GEOM_CYLINDER, radius=PUSHER_RADIUS, height=PUSHER_LENGTH,
            collisionFramePosition=[0, 0, PUSHER_OFFSET],
        )
        visual = client.createVisualShape(
            pybullet.GEOM_CYLINDER, radius=PUSHER_RADIUS, length=PUSHER_LENGTH,
            visualFramePosition=[0, 0, PUSHER_OFFSET], rgbaColor=[0.2, 0.2, 0.2, 1],
        )
        position, orientation = self.effector_pose()
        pusher_id = client.createMultiBody(
            baseMass=PUSHER_MASS, baseCollisionShapeIndex=collision, baseVisualShapeIndex=visual,
            basePosition=position.tolist(), baseOrientation=orientation.tolist(),
        )
        client.changeDynamics(pusher_id, -1, lateralFriction=1.0, rollingFriction=0.0001)
        for link in range(-1, client.getNumJoints(self.arm_id)):
            client.setCollisionFilterPair(self.arm_id, pusher_id, link, -1, enableCollision=0)
        weld = client.createConstraint(
            parentBodyUniqueId=self.arm_id, parentLinkIndex=EFFECTOR_LINK,
            childBodyUniqueId=pusher_id, childLinkIndex=-1, jointType=pybullet.JOINT_FIXED,
            jointAxis=(0, 0, 0), parentFramePosition=(0, 0, 0), childFramePosition=(0, 0, 0),
        )
        client.changeConstraint(weld, maxForce=PUSHER_MAX_FORCE)
        return pusher_id

    def reset_joints(self, joint_positions) -> None:
        """Teleport the joints (overrides physics; use only while resetting)."""
        for j, q in zip(self.joint_ids, joint_positions):
            self.client.resetJointState(self.arm_id, j, q)

    def joint_positions(self) -> np.ndarray:
        return np.array([s[0] for s in self.client.getJointStates(self.arm_id, self.joint_ids)])

    def effector_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Flange position (3,) (centre of mass, as the original) and quaternion xyzw (4,)."""
        state = self.client.getLinkState(self.arm_id, EFFECTOR_LINK)
        return np.array(state[0]), np.array(state[1])

    def set_target_effector_pose(self, position, orientation_xyzw) -> None:
        """Solve IK for the flange pose and send the joint targets to the position motors."""
        rest = [0.0, 0.0] + self.joint_positions()[2:].tolist()
        joint_targets = self.client.calculateInverseKinematics(
            self.arm_id, EFFECTOR_LINK, list(position), list(orientation_xyzw),
            lowerLimits=[-17] * 6, upperLimits=[17] * 6, jointRanges=[17] * 6, restPoses=rest,
            maxNumIterations=100, residualThreshold=1e-10,
        )
        self.client.setJointMotorControlArray(
            self.arm_id, self.joint_ids, pybullet.POSITION_CONTROL,
            targetPositions=joint_targets, forces=[MOTOR_FORCE] * len(self.joint_ids),
        )
