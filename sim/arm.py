"""The arm (7-DoF Franka or 6-DoF UR) and parallel-jaw gripper, built with dm_control.mjcf from a RobotDescription.

Links are primitives (capsules and spheres): the Panda's visual meshes cost 35-50 ms per small render
here, primitives a few ms. Joint frames follow the description's modified DH parameters exactly, so the
sim's tool centre point equals `RobotDescription.forward_kinematics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dm_control import mjcf

from robolearn.config import ControlMode
from robolearn.robots import RobotDescription
from sim.geometry import look_at_xyaxes



@dataclass(frozen=True)
class JointModel:
    """What the datasheet leaves out, per joint (base to wrist): link radius (m), reflected rotor inertia
    (armature) and viscous friction, which also keep the light wrist stable at 2 ms steps, and the
    velocity-servo gain (N·m per rad/s; MuJoCo integrates it implicitly, so stiff gains are stable)."""

    radius: tuple[float, ...]
    armature: tuple[float, ...]
    damping: tuple[float, ...]
    velocity_kv: tuple[float, ...]


JOINT_MODELS = {
    "franka": JointModel(
        radius=(0.06, 0.06, 0.055, 0.055, 0.05, 0.045, 0.04),
        armature=(0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05),
        damping=(1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5),
        velocity_kv=(300.0, 300.0, 200.0, 200.0, 40.0, 40.0, 20.0),
    ),
    # Tuned on the UR5e (upper arm 8 kg, twice the Panda's heaviest link); used for every e-Series size.
    "ur": JointModel(
        radius=(0.075, 0.07, 0.06, 0.045, 0.045, 0.045),
        armature=(0.2, 0.2, 0.1, 0.05, 0.05, 0.05),
        damping=(2.0, 2.0, 1.0, 0.5, 0.5, 0.5),
        velocity_kv=(600.0, 600.0, 300.0, 60.0, 60.0, 40.0),
    ),
}

FINGER_TRAVEL = 0.04  # m per finger
ARM_COLOUR = (0.92, 0.92, 0.92, 1.0)
JOINT_COLOUR = (0.25, 0.25, 0.28, 1.0)

# Collision groups: the arm touches the world but not itself (adjacent capsules overlap at joints).
ARM_CONTYPE, ARM_CONAFFINITY = 2, 1


def _quat_rot_x(angle: float) -> list[float]:
    return [np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0]


def _quat_rot_z(angle: float) -> list[float]:
    return [np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)]


def build_arm(robot: RobotDescription, control_mode: ControlMode, gravity_compensation: bool) -> mjcf.RootElement:
    """Arm entity with actuators for the given control mode. Attach it to a site of the scene."""
    arm = mjcf.RootElement(model=robot.name)
    arm.compiler.angle = "radian"
    arm.default.geom.contype = ARM_CONTYPE
    arm.default.geom.conaffinity = ARM_CONAFFINITY
    arm.default.geom.rgba = ARM_COLOUR
    joints = JOINT_MODELS[robot.family]
    gravcomp = 1.0 if (gravity_compensation or control_mode is ControlMode.joint_velocity) else 0.0

    base = arm.worldbody.add("body", name="base")
    height = robot.dh[0][1]
    base.add("geom", name="base", type="cylinder", size=[0.07, height / 2], pos=[0, 0, height / 2], mass=4.0)

    parent = base
    for i in range(robot.n_joints):
        a, d, alpha = robot.dh[i]
        body = parent.add(
            "body",
            name=f"link{i + 1}",
            pos=[a, -np.sin(alpha) * d, np.cos(alpha) * d],
            quat=_quat_rot_x(alpha),
            gravcomp=gravcomp,
        )
        body.add(
            "joint",
            name=robot.joint_names[i],
            type="hinge",
            axis=[0, 0, 1],
            range=[robot.q_min[i], robot.q_max[i]],
            limited=True,
            armature=joints.armature[i],
            damping=joints.damping[i],
        )
        # One geom per link (each costs a draw call per render): a capsule toward the next joint's
        # origin, or a sphere where the next joint shares this one's origin.
        r = joints.radius[i]
        a_next, d_next, alpha_next = robot.dh[i + 1]
        to_next = np.array([a_next, -np.sin(alpha_next) * d_next, np.cos(alpha_next) * d_next])
        if np.linalg.norm(to_next) > 1e-6:
            body.add("geom", name=f"link{i + 1}", type="capsule", fromto=[0, 0, 0, *to_next], size=[r], mass=robot.link_masses[i])
        else:
            body.add("geom", name=f"link{i + 1}", type="sphere", size=[r], mass=robot.link_masses[i], rgba=JOINT_COLOUR)
        parent = body

    _add_hand(parent, robot, gravcomp)
    _add_actuators(arm, robot, control_mode, joints)
    return arm


def _add_hand(flange_parent, robot: RobotDescription, gravcomp: float) -> None:
    a, d, alpha = robot.dh[-1]
    flange = flange_parent.add(
        "body", name="hand", pos=[a, -np.sin(alpha) * d, np.cos(alpha) * d], quat=_quat_rot_z(robot.hand_yaw), gravcomp=gravcomp
    )
    flange.add("geom", name="hand_mount", type="cylinder", size=[0.04, 0.01], pos=[0, 0, 0.01], mass=0.1, rgba=JOINT_COLOUR)
    flange.add("geom", name="hand_body", type="box", size=[0.025, 0.1, 0.025], pos=[0, 0, 0.045], mass=0.6)
    flange.add("site", name="tcp", pos=[0, 0, robot.tcp_offset], size=[0.005], rgba=[1, 0, 0, 1], group=4)
    # Wrist camera: beside the hand, looking along the fingers (+z of the hand) at a point past the tips.
    cam_pos = (-0.075, 0.0, 0.03)
    flange.add("camera", name="wrist", pos=list(cam_pos), xyaxes=look_at_xyaxes(cam_pos, (0.0, 0.0, 0.2), up=(-1, 0, 0)), fovy=75)

    for side, sign in (("left", 1.0), ("right", -1.0)):
        finger = flange.add("body", name=f"finger_{side}", pos=[0, 0, 0.07], gravcomp=gravcomp)
        finger.add("joint", name=f"finger_{side}", type="slide", axis=[0, sign, 0], range=[0, FINGER_TRAVEL], damping=20, armature=0.01)
        # Pads reach 5 mm beyond the tool centre point; rubber-like friction with torsion (condim 4).
        finger.add(
            "geom",
            name=f"pad_{side}",
            type="box",
            size=[0.012, 0.006, 0.025],
            pos=[0, sign * 0.006, robot.tcp_offset - 0.07 - 0.02],
            mass=0.05,
            friction=[1.5, 0.02, 0.001],
            condim=4,
            rgba=JOINT_COLOUR,
        )


def _add_actuators(arm: mjcf.RootElement, robot: RobotDescription, control_mode: ControlMode, joints: JointModel) -> None:
    for i, name in enumerate(robot.joint_names):
        joint = arm.find("joint", name)
        if control_mode is ControlMode.joint_velocity:
            arm.actuator.add(
                "velocity",
                name=f"{name}_velocity",
                joint=joint,
                kv=joints.velocity_kv[i],
                ctrlrange=[-robot.dq_max[i], robot.dq_max[i]],
                forcerange=[-robot.tau_max[i], robot.tau_max[i]],
            )
        else:
            arm.actuator.add(
                "motor", name=f"{name}_torque", joint=joint, ctrlrange=[-robot.tau_max[i], robot.tau_max[i]]
            )

    left, right = arm.find("joint", "finger_left"), arm.find("joint", "finger_right")
    arm.equality.add("joint", name="fingers_coupled", joint1=left, joint2=right, solref=[0.005, 1])
    tendon = arm.tendon.add("fixed", name="grip")
    tendon.add("joint", joint=left, coef=0.5)
    tendon.add("joint", joint=right, coef=0.5)
    # Position servo on the mean finger opening; the force cap gives at most the gripper's rated grip force.
    f = 2 * robot.gripper_max_force
    arm.actuator.add(
        "position", name="gripper", tendon=tendon, kp=4000, dampratio=1.0, ctrlrange=[0, FINGER_TRAVEL], forcerange=[-f, f]
    )
