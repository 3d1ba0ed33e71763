"""Scripted kettle-to-sink expert: the demonstrator for demo-augmented training.

It reads privileged state (kettle, handle and sink poses) and the joint encoders, plans tool-centre-point
waypoints with a small phase machine, and turns Cartesian velocity into joint commands with damped
least squares on MuJoCo Jacobians (its own MjData, so it never touches the env's state). In torque mode
a one-step computed-torque law at the policy rate tracks those joint velocities, with a disturbance
observer that learns the kettle's weight and anything else the model leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

import gymnasium as gym
import mujoco
import numpy as np

from robolearn.config import ControlMode
from robolearn.spec import split_privileged
from sim import kettle as kettle_entity
from sim.kitchen import SINK

OPEN, CLOSED = -1.0, 1.0


class Phase(Enum):
    APPROACH = auto()
    DESCEND = auto()
    GRASP = auto()
    LIFT = auto()
    TRANSPORT = auto()
    LOWER = auto()
    RELEASE = auto()
    RETREAT = auto()
    DONE = auto()


@dataclass
class ExpertGains:
    position: float = 2.5  # 1/s
    rotation: float = 2.5  # 1/s
    max_speed: float = 0.3  # m/s
    max_angular_speed: float = 1.2  # rad/s
    damping: float = 0.05  # damped least squares
    nullspace: float = 0.5  # pull toward the home posture, 1/s
    disturbance_gain: float = 0.1  # torque mode: fraction of the velocity error learned per step (slow: a late command is no disturbance)
    # Torque mode: fraction of the velocity error corrected per step. A whole step's correction (1.0) rings once
    # the command acts up to a step late (latency up to 100 ms); half stays damped at any latency in 0-100 ms.
    tracking: float = 0.5


class KettleSinkExpert:
    def __init__(self, env: gym.Env, gains: ExpertGains | None = None):
        self.env = env.unwrapped
        self.gains = gains or ExpertGains()
        self.model = self.env.model
        self.scene = self.env.scene
        self.contract = self.env.contract
        self.scratch = mujoco.MjData(self.model)
        self.dt = 1.0 / self.contract.control_hz
        self.reset()

    def reset(self) -> None:
        self.phase = Phase.APPROACH
        self.phase_steps = 0
        self.anchor: np.ndarray | None = None  # a waypoint fixed when its phase began
        self.disturbance = np.zeros(self.contract.n_joints)
        self.last_dq_des: np.ndarray | None = None

    def take_over(self, obs: dict[str, np.ndarray]) -> None:
        """Start mid-episode, from the state the episode is in (an intervention): a kettle already in the hand
        is lifted and carried on with, anything else starts with the approach to the handle."""
        self.reset()
        state = split_privileged(obs["privileged"] if "privileged" in obs else self.env.privileged_state())
        tcp, _ = self._kinematics(obs["joint_pos"].astype(np.float64), state)
        if self._holding(tcp, state, float(obs["gripper"][0])):
            self._enter(Phase.LIFT, tcp, state)

    @staticmethod
    def _holding(tcp: np.ndarray, state: dict[str, np.ndarray], gripper_width: float) -> bool:
        return bool(np.linalg.norm(tcp - state["handle_pos"]) < 0.04 and gripper_width < 2 * kettle_entity.HANDLE_HALF[1] + 0.01)

    # -- policy --------------------------------------------------------------------------------------
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        q = obs["joint_pos"].astype(np.float64)
        dq = obs["joint_vel"].astype(np.float64)
        state = split_privileged(obs["privileged"] if "privileged" in obs else self.env.privileged_state())
        tcp, tcp_rot = self._kinematics(q, state)
        target, gripper, speed_scale = self._plan(tcp, state, float(obs["gripper"][0]))
        dq_des = self._joint_velocity(q, tcp, tcp_rot, target, self._grasp_rotation(state, tcp_rot), speed_scale)
        if self.contract.control_mode is ControlMode.joint_velocity:
            command = dq_des
        else:
            command = self._torque(dq, dq_des)
        return self.contract.normalise_command(command, gripper)

    # -- planning ------------------------------------------------------------------------------------
    def _plan(self, tcp: np.ndarray, state: dict[str, np.ndarray], gripper_width: float):
        handle, kettle_pos = state["handle_pos"], state["kettle_pos"]
        kettle_bottom = kettle_pos[2] - kettle_entity.HALF_HEIGHT
        rim = SINK.rim_height
        self.phase_steps += 1
        p = self.phase
        holding = self._holding(tcp, state, gripper_width)

        if p in (Phase.LIFT, Phase.TRANSPORT, Phase.LOWER) and not holding:
            return self._enter(Phase.APPROACH, tcp, state)  # dropped it: start over

        if p is Phase.APPROACH:
            target = handle + [0, 0, 0.12]
            if self._reached(tcp, target, 0.02):
                return self._enter(Phase.DESCEND, tcp, state)
            return target, OPEN, 1.0
        if p is Phase.DESCEND:
            target = handle + [0, 0, -0.004]
            if self._reached(tcp, target, 0.008) or self.phase_steps > 40:
                return self._enter(Phase.GRASP, tcp, state)
            return target, OPEN, 0.5
        if p is Phase.GRASP:
            if self.phase_steps > 6:
                return self._enter(Phase.LIFT, tcp, state)
            return self.anchor, CLOSED, 0.5
        if p is Phase.LIFT:
            # Raise until the kettle's base clears the counter by 12 cm.
            target = self.anchor
            if kettle_bottom > rim + 0.1:
                return self._enter(Phase.TRANSPORT, tcp, state)
            return target, CLOSED, 0.6
        if p is Phase.TRANSPORT:
            offset = handle - kettle_pos  # keep the kettle, not the hand, over the basin centre
            target = np.array([SINK.centre[0] + offset[0], SINK.centre[1] + offset[1], self.anchor[2]])
            if self._reached(tcp, target, 0.015):
                return self._enter(Phase.LOWER, tcp, state)
            return target, CLOSED, 1.0
        if p is Phase.LOWER:
            floor = SINK.centre[2]
            target = np.array([self.anchor[0], self.anchor[1], tcp[2] - (kettle_bottom - floor) - 0.005])
            if kettle_bottom - floor < 0.005 or self.phase_steps > 60:
                return self._enter(Phase.RELEASE, tcp, state)
            return target, CLOSED, 0.5
        if p is Phase.RELEASE:
            if self.phase_steps > 5:
                return self._enter(Phase.RETREAT, tcp, state)
            return self.anchor, OPEN, 0.5
        if p is Phase.RETREAT:
            target = np.array([self.anchor[0], self.anchor[1], rim + 0.3])
            if self._reached(tcp, target, 0.02):
                return self._enter(Phase.DONE, tcp, state)
            return target, OPEN, 1.0
        return self.anchor, OPEN, 1.0

    def _enter(self, phase: Phase, tcp: np.ndarray, state: dict[str, np.ndarray]):
        self.phase, self.phase_steps = phase, 0
        self.anchor = tcp.copy()
        if phase is Phase.LIFT:
            kettle_bottom = state["kettle_pos"][2] - kettle_entity.HALF_HEIGHT
            self.anchor[2] += SINK.rim_height + 0.12 - kettle_bottom
        return self._plan(tcp, state, 0.0 if phase in (Phase.LIFT, Phase.TRANSPORT, Phase.LOWER) else 1.0)

    @staticmethod
    def _reached(tcp: np.ndarray, target: np.ndarray, tol: float) -> bool:
        return bool(np.linalg.norm(tcp - target) < tol)

    # -- kinematics and control ------------------------------------------------------------------------
    def _kinematics(self, q: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        d, s = self.scratch, self.scene
        d.qpos[s.arm_qpos] = q
        d.qpos[s.kettle_qpos : s.kettle_qpos + 3] = state["kettle_pos"]
        d.qpos[s.kettle_qpos + 3 : s.kettle_qpos + 7] = state["kettle_quat"]
        mujoco.mj_kinematics(self.model, d)
        mujoco.mj_comPos(self.model, d)
        return d.site_xpos[s.tcp_site].copy(), d.site_xmat[s.tcp_site].reshape(3, 3).copy()

    def _grasp_rotation(self, state: dict[str, np.ndarray], tcp_rot: np.ndarray) -> np.ndarray:
        """Fingers pointing down, closing across the handle bar (the kettle's local x axis)."""
        kettle_rot = np.empty(9)
        mujoco.mju_quat2Mat(kettle_rot, state["kettle_quat"])
        bar = kettle_rot.reshape(3, 3)[:, 0].copy()
        bar[2] = 0.0
        bar /= max(np.linalg.norm(bar), 1e-9)
        if bar @ tcp_rot[:, 0] < 0:  # the bar is symmetric: take the yaw closer to the current one
            bar = -bar
        z = np.array([0.0, 0.0, -1.0])
        return np.column_stack([bar, np.cross(z, bar), z])

    def _joint_velocity(self, q, tcp, tcp_rot, target, target_rot, speed_scale: float) -> np.ndarray:
        g, s = self.gains, self.scene
        v = g.position * (target - tcp)
        v *= min(1.0, speed_scale * g.max_speed / max(np.linalg.norm(v), 1e-9))
        rot_err = 0.5 * sum(np.cross(tcp_rot[:, i], target_rot[:, i]) for i in range(3))
        w = g.rotation * rot_err
        w *= min(1.0, g.max_angular_speed / max(np.linalg.norm(w), 1e-9))

        jacp = np.zeros((3, self.model.nv))
        jacr = np.zeros((3, self.model.nv))
        mujoco.mj_jacSite(self.model, self.scratch, jacp, jacr, s.tcp_site)
        jac = np.vstack([jacp, jacr])[:, s.arm_dof]
        jjt = jac @ jac.T + g.damping**2 * np.eye(6)
        pinv = jac.T @ np.linalg.solve(jjt, np.eye(6))
        dq = pinv @ np.concatenate([v, w])
        dq += (np.eye(len(q)) - pinv @ jac) @ (g.nullspace * (s.robot.home - q))
        # Scale the whole vector so the motion keeps its direction within the command limits.
        limits = self.contract.command_limits if self.contract.control_mode is ControlMode.joint_velocity else s.robot.dq_max * 0.5
        return dq / max(1.0, float(np.max(np.abs(dq) / limits)))

    def _torque(self, dq: np.ndarray, dq_des: np.ndarray) -> np.ndarray:
        """One-step computed torque: reach dq_des by the next policy step, plus learned disturbance."""
        m, d, s = self.model, self.scratch, self.scene
        mujoco.mj_crb(m, d)
        full = np.zeros((m.nv, m.nv))
        mujoco.mj_fullM(m, d, full)
        inertia = full[np.ix_(s.arm_dof, s.arm_dof)]
        if self.last_dq_des is not None:
            # What the last command failed to achieve is an unmodelled torque (load, friction, contact).
            self.disturbance += self.gains.disturbance_gain * inertia @ (self.last_dq_des - dq) / self.dt
        self.last_dq_des = dq_des
        damping = m.dof_damping[s.arm_dof]
        tau = self.gains.tracking * inertia @ (dq_des - dq) / self.dt + damping * dq_des + self.disturbance
        if not self.env.cfg.gravity_compensation:
            d.qvel[:] = 0.0
            mujoco.mj_rne(m, d, 0, d.qfrc_bias)
            tau += d.qfrc_bias[s.arm_dof]
        return tau
