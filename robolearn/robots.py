"""Robot descriptions shared by the simulation and the hardware layer.

One description per arm: joint order, datasheet limits and kinematics. The sim builds its arm from
these numbers and the hardware layer checks its limits against them, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RobotDescription:
    name: str
    joint_names: tuple[str, ...]
    q_min: np.ndarray  # rad
    q_max: np.ndarray  # rad
    dq_max: np.ndarray  # rad/s
    ddq_max: np.ndarray  # rad/s^2
    jerk_max: np.ndarray  # rad/s^3
    tau_max: np.ndarray  # N·m
    dtau_max: np.ndarray  # N·m/s
    # Modified DH (Craig) per joint: rows of (a_{i-1}, d_i, alpha_{i-1}); the last row is the flange.
    dh: np.ndarray
    home: np.ndarray  # rad
    # Tool centre point (between the fingertips) along the flange z axis, and the hand's yaw on the flange.
    tcp_offset: float = 0.1034
    hand_yaw: float = -np.pi / 4
    gripper_max_width: float = 0.08  # m, both fingers together
    gripper_max_force: float = 70.0  # N, continuous

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    def forward_kinematics(self, q: np.ndarray) -> np.ndarray:
        """4x4 pose of the tool centre point in the robot base frame."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.n_joints,):
            raise ValueError(f"{self.name}: expected {self.n_joints} joint angles, got shape {q.shape}")
        pose = np.eye(4)
        for i, (a, d, alpha) in enumerate(self.dh):
            theta = q[i] if i < self.n_joints else 0.0
            pose = pose @ _modified_dh(a, d, alpha, theta)
        pose = pose @ _rot_z(self.hand_yaw)
        pose[:3, 3] += pose[:3, 2] * self.tcp_offset
        return pose

    def tcp_position(self, q: np.ndarray) -> np.ndarray:
        return self.forward_kinematics(q)[:3, 3]


def _rot_z(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    return out


def _modified_dh(a: float, d: float, alpha: float, theta: float) -> np.ndarray:
    """Craig's convention: RotX(alpha) TransX(a) RotZ(theta) TransZ(d)."""
    ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
    return np.array(
        [
            [ct, -st, 0.0, a],
            [st * ca, ct * ca, -sa, -d * sa],
            [st * sa, ct * sa, ca, d * ca],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def _arr(*values: float) -> np.ndarray:
    out = np.array(values, dtype=np.float64)
    out.setflags(write=False)
    return out


_PANDA_DH = np.array(
    [
        [0.0, 0.333, 0.0],
        [0.0, 0.0, -np.pi / 2],
        [0.0, 0.316, np.pi / 2],
        [0.0825, 0.0, np.pi / 2],
        [-0.0825, 0.384, -np.pi / 2],
        [0.0, 0.0, np.pi / 2],
        [0.088, 0.0, np.pi / 2],
        [0.0, 0.107, 0.0],  # flange
    ]
)
_PANDA_DH.setflags(write=False)
_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
_HOME = _arr(0.0, -np.pi / 4, 0.0, -3 * np.pi / 4, 0.0, np.pi / 2, np.pi / 4)

PANDA = RobotDescription(
    name="panda",
    joint_names=_JOINTS,
    q_min=_arr(-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
    q_max=_arr(2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
    dq_max=_arr(2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61),
    ddq_max=_arr(15, 7.5, 10, 12.5, 15, 20, 20),
    jerk_max=_arr(7500, 3750, 5000, 6250, 7500, 10000, 10000),
    tau_max=_arr(87, 87, 87, 87, 12, 12, 12),
    dtau_max=_arr(*[1000.0] * 7),
    dh=_PANDA_DH,
    home=_HOME,
)

# FR3 is what franky-sim emulates. Same kinematics; position and velocity limits differ. Acceleration,
# jerk and torque limits are taken equal to the Panda's (FR3 datasheet values not verified here).
FR3 = RobotDescription(
    name="fr3",
    joint_names=_JOINTS,
    q_min=_arr(-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159),
    q_max=_arr(2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159),
    dq_max=_arr(2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26),
    ddq_max=PANDA.ddq_max,
    jerk_max=PANDA.jerk_max,
    tau_max=PANDA.tau_max,
    dtau_max=PANDA.dtau_max,
    dh=_PANDA_DH,
    home=_HOME,
)

ROBOTS: dict[str, RobotDescription] = {r.name: r for r in (PANDA, FR3)}


def get_robot(name: str) -> RobotDescription:
    try:
        return ROBOTS[name]
    except KeyError:
        raise ValueError(f"unknown robot {name!r}; known robots: {sorted(ROBOTS)}") from None
