"""Kinematics the hardware layer shares: the TCP position in plain Python floats, and the one Jacobian.

The workspace check runs on every command; `RobotDescription.forward_kinematics` builds 4x4 numpy
matrices (tens of µs). `TcpKinematics` computes the same position with scalar math over the same
modified-DH table, and a test keeps the two equal. `jacobian` serves end-effector teleop and homing.
"""

from __future__ import annotations

import math

import numpy as np

from robolearn.robots import RobotDescription


def jacobian(robot: RobotDescription, q, h: float = 1e-6) -> np.ndarray:
    """6xN geometric Jacobian (linear; angular) of the TCP in the base frame, by finite differences."""
    q = np.asarray(q, dtype=np.float64)
    pose = robot.forward_kinematics(q)
    J = np.zeros((6, robot.n_joints))
    for i in range(robot.n_joints):
        dq = q.copy()
        dq[i] += h
        moved = robot.forward_kinematics(dq)
        J[:3, i] = (moved[:3, 3] - pose[:3, 3]) / h
        dR = moved[:3, :3] @ pose[:3, :3].T
        J[3:, i] = 0.5 * np.array([dR[2, 1] - dR[1, 2], dR[0, 2] - dR[2, 0], dR[1, 0] - dR[0, 1]]) / h
    return J


class TcpKinematics:
    def __init__(self, robot: RobotDescription):
        self.n = robot.n_joints
        # Per frame: (a, d, cos alpha, sin alpha); the last frame is the flange (theta = 0).
        self._frames = [(float(a), float(d), math.cos(al), math.sin(al)) for a, d, al in robot.dh]
        self._tcp = float(robot.tcp_offset)
        # Upper bound on the distance from joint i's axis to the TCP: the chain length after it. The
        # TCP speed is then at most sum |dq_i| * reach_i, which lets most commands skip a second FK.
        lengths = [abs(float(a)) + abs(float(d)) for a, d, _ in robot.dh]
        self.reach = tuple(sum(lengths[i:]) + self._tcp for i in range(self.n))

    def position(self, q) -> tuple[float, float, float]:
        cos, sin = math.cos, math.sin
        # Rotation columns (x, y, z axes of the current frame) and origin, in the base frame.
        x0, x1, x2 = 1.0, 0.0, 0.0
        y0, y1, y2 = 0.0, 1.0, 0.0
        z0, z1, z2 = 0.0, 0.0, 1.0
        p0 = p1 = p2 = 0.0
        n = self.n
        for i, (a, d, ca, sa) in enumerate(self._frames):
            # Craig: RotX(alpha) TransX(a) RotZ(theta) TransZ(d).
            p0 += a * x0
            p1 += a * x1
            p2 += a * x2
            u0, u1, u2 = ca * y0 + sa * z0, ca * y1 + sa * z1, ca * y2 + sa * z2
            z0, z1, z2 = ca * z0 - sa * y0, ca * z1 - sa * y1, ca * z2 - sa * y2
            if i < n:
                th = q[i]
                ct, st = cos(th), sin(th)
                x0, x1, x2, y0, y1, y2 = (
                    ct * x0 + st * u0, ct * x1 + st * u1, ct * x2 + st * u2,
                    ct * u0 - st * x0, ct * u1 - st * x1, ct * u2 - st * x2,
                )
            else:
                y0, y1, y2 = u0, u1, u2
            p0 += d * z0
            p1 += d * z1
            p2 += d * z2
        t = self._tcp  # the hand's yaw turns about z and does not move the TCP
        return (p0 + t * z0, p1 + t * z1, p2 + t * z2)
