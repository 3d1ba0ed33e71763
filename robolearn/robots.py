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
    payload_max: float = 3.0  # kg, the manufacturer's rated payload (Panda and FR3: 3 kg)
    # Which driver family speaks to it ("franka", "ur"), and the link masses the sim builds it with (kg).
    family: str = "franka"
    link_masses: tuple[float, ...] = (4.97, 0.65, 3.23, 3.59, 1.23, 1.67, 0.74)  # Panda, approximate

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

    def tcp_positions(self, q: np.ndarray) -> np.ndarray:
        """(N, n_joints) joint angles -> (N, 3) tool centre points: forward_kinematics for a batch at once."""
        q = np.asarray(q, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != self.n_joints:
            raise ValueError(f"{self.name}: expected (N, {self.n_joints}) joint angles, got shape {q.shape}")
        pose = np.broadcast_to(np.eye(4), (len(q), 4, 4))
        for i, (a, d, alpha) in enumerate(self.dh):
            theta = q[:, i] if i < self.n_joints else np.zeros(len(q))
            ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
            link = np.zeros((len(q), 4, 4))
            link[:, 0, 0], link[:, 0, 1], link[:, 0, 3] = ct, -st, a
            link[:, 1, 0], link[:, 1, 1], link[:, 1, 2], link[:, 1, 3] = st * ca, ct * ca, -sa, -d * sa
            link[:, 2, 0], link[:, 2, 1], link[:, 2, 2], link[:, 2, 3] = st * sa, ct * sa, ca, d * ca
            link[:, 3, 3] = 1.0
            pose = pose @ link
        pose = pose @ _rot_z(self.hand_yaw)
        return pose[:, :3, 3] + pose[:, :3, 2] * self.tcp_offset


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


# -- Universal Robots e-Series ------------------------------------------------------------------------
# Kinematics and link masses: Universal Robots, "DH parameters for calculations of kinematics and
# dynamics" (support article 45257, e-Series software 5.1). UR publishes standard DH (Rz(theta) Tz(d)
# Tx(a) Rx(alpha) per joint); `_ur_dh` regroups it into the modified rows used here, which is exact
# because Tx(a) and Rx(alpha) commute (tests/test_robots.py checks it against the standard chain).
# Joint ranges (+-360 deg on every joint; UR3e's wrist 3 turns without end, limited here to the same)
# and joint speeds: each arm's e-Series user manual / datasheet ("Range of motion", "Speed").
# Rated payloads (3, 5, 12.5, 16 kg): the e-Series datasheets.
# Joint torques: Universal Robots support article "Max. joint torques" (joint sizes 0-4: 12, 28, 56,
# 150, 330 N·m). Acceleration, jerk and torque-rate limits are not published by UR: the values below are
# ours (of the Panda's order, lower for the large joints) and feed only the safety layer's rate limits.
_UR_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
_UR_ALPHA = (np.pi / 2, 0.0, 0.0, np.pi / 2, -np.pi / 2, 0.0)
_UR_RANGE = 2 * np.pi


def _ur_dh(d: tuple[float, ...], a: tuple[float, ...]) -> np.ndarray:
    """UR's standard DH (d, a per joint; alpha shared by the e-Series) as modified-DH rows + flange."""
    rows = [(0.0, d[0], 0.0)]
    rows += [(a[i - 1], d[i], _UR_ALPHA[i - 1]) for i in range(1, 6)]
    rows.append((a[5], 0.0, _UR_ALPHA[5]))
    out = np.array(rows, dtype=np.float64)
    out.setflags(write=False)
    return out


def _ur(name: str, d, a, speed_deg: tuple[float, ...], torque: tuple[float, ...], masses, home, ddq, payload) -> RobotDescription:
    ddq_max = _arr(*ddq)
    return RobotDescription(
        name=name,
        joint_names=_UR_JOINTS,
        q_min=_arr(*[-_UR_RANGE] * 6),
        q_max=_arr(*[_UR_RANGE] * 6),
        dq_max=_arr(*np.radians(speed_deg)),
        ddq_max=ddq_max,
        jerk_max=_arr(*(ddq_max * 500.0)),
        tau_max=_arr(*torque),
        dtau_max=_arr(*[1000.0] * 6),
        dh=_ur_dh(d, a),
        # Tool pointing down 35 cm in front of the base, 45 cm up (as the Panda's home), elbow up;
        # wrist 3 turned so the fingers close across the base's y axis. UR3e: 30 cm, 35 cm up (shorter reach).
        home=_arr(*home),
        # The sim mounts the same parallel-jaw hand as on the Panda (a Franka Hand's size) on the flange,
        # square to it (on a real UR: a Robotiq 2F-85 through its URCap, hardware/drivers/robotiq.py).
        hand_yaw=0.0,
        family="ur",
        link_masses=tuple(masses),
        payload_max=payload,
    )


UR3E = _ur(
    "ur3e",
    d=(0.15185, 0.0, 0.0, 0.13105, 0.08535, 0.0921),
    a=(0.0, -0.24355, -0.2132, 0.0, 0.0, 0.0),
    speed_deg=(180, 180, 180, 360, 360, 360),
    torque=(56, 56, 28, 12, 12, 12),
    masses=(1.98, 3.4445, 1.437, 0.871, 0.805, 0.261),
    home=(2.6895, -1.4234, 0.6247, -0.7721, -1.5708, -2.0229),
    ddq=(15, 15, 15, 25, 25, 25),
    payload=3.0,
)
UR5E = _ur(
    "ur5e",
    d=(0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996),
    a=(0.0, -0.425, -0.3922, 0.0, 0.0, 0.0),
    speed_deg=(180, 180, 180, 180, 180, 180),
    torque=(150, 150, 150, 28, 28, 28),
    masses=(3.761, 8.058, 2.846, 1.37, 1.3, 0.365),
    home=(2.7509, -1.9479, 1.7023, -1.3252, -1.5708, -1.9615),
    ddq=(10, 10, 10, 20, 20, 20),
    payload=5.0,
)
UR10E = _ur(
    "ur10e",
    d=(0.1807, 0.0, 0.0, 0.17415, 0.11985, 0.11655),
    a=(0.0, -0.6127, -0.57155, 0.0, 0.0, 0.0),
    speed_deg=(120, 120, 180, 180, 180, 180),
    torque=(330, 330, 150, 56, 56, 56),
    masses=(7.369, 13.051, 3.989, 2.1, 1.98, 0.615),
    home=(2.6208, -2.2557, 2.2299, -1.5450, -1.5708, -2.0916),
    ddq=(8, 8, 10, 15, 15, 15),
    payload=12.5,
)
UR16E = _ur(
    "ur16e",
    d=(0.1807, 0.0, 0.0, 0.17415, 0.11985, 0.11655),
    a=(0.0, -0.4784, -0.36, 0.0, 0.0, 0.0),
    speed_deg=(120, 120, 180, 180, 180, 180),
    torque=(330, 330, 150, 56, 56, 56),
    masses=(7.369, 10.45, 4.321, 2.18, 2.033, 0.907),
    home=(2.6208, -1.9422, 1.8212, -1.4498, -1.5708, -2.0916),
    ddq=(8, 8, 10, 15, 15, 15),
    payload=16.0,
)

ROBOTS: dict[str, RobotDescription] = {r.name: r for r in (PANDA, FR3, UR3E, UR5E, UR10E, UR16E)}


def get_robot(name: str) -> RobotDescription:
    try:
        return ROBOTS[name]
    except KeyError:
        raise ValueError(f"unknown robot {name!r}; known robots: {sorted(ROBOTS)}") from None
