"""Safety limits resolved from config and the robot's datasheet, checked before anything moves.

Defaults are fractions of the datasheet limits in `robolearn.robots`; absolute per-joint values may be
given instead, and a value above the datasheet is a config error naming the key and the joint.
Stored as tuples of Python floats: the per-command path does scalar math on them (no numpy overhead).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hardware.config import SafetyConfig
from robolearn.config import ConfigError
from robolearn.robots import RobotDescription


@dataclass(frozen=True)
class SafetyLimits:
    n: int
    velocity: tuple[float, ...]  # rad/s
    torque: tuple[float, ...]  # N·m
    acceleration: tuple[float, ...]  # rad/s^2
    jerk: tuple[float, ...]  # rad/s^3
    torque_rate: tuple[float, ...]  # N·m/s
    soft_q_min: tuple[float, ...]  # rad: the datasheet range shrunk by the margin
    soft_q_max: tuple[float, ...]
    taper_zone: float  # rad
    workspace_min: tuple[float, float, float]  # m, robot base frame
    workspace_max: tuple[float, float, float]
    workspace_breach: float  # m
    watchdog_timeout: float  # s
    watchdog_poll: float  # s
    max_state_age: float  # s
    tracking_tolerance: float  # rad/s
    tracking_timeout: float  # s
    horizon: float  # s: how long the vendor may execute one command (the workspace/limit look-ahead)
    nominal_period: float  # s: the command period rate limits are computed over, at most
    torque_speed_headroom: float = 0.9  # torque mode: predicted speeds stay within this fraction of `velocity`
    min_command_interval: float = 0.001  # s: commands closer together than the driver takes them (1 kHz) are refused

    @classmethod
    def from_config(
        cls,
        cfg: SafetyConfig,
        robot: RobotDescription,
        *,
        command_hold_s: float,
        control_hz: float,
        key: str = "env.hardware.safety",
    ) -> SafetyLimits:
        n = robot.n_joints
        velocity = _absolute_or_fraction(cfg.velocity_limits, cfg.velocity_fraction, robot.dq_max, f"{key}.velocity_limits", "rad/s", robot.name)
        torque = _absolute_or_fraction(cfg.torque_limits, cfg.torque_fraction, robot.tau_max, f"{key}.torque_limits", "N·m", robot.name)
        margin = cfg.joint_margin_rad
        span = robot.q_max - robot.q_min
        if np.any(2 * margin >= span):
            raise ConfigError(f"invalid value for {key}.joint_margin_rad: {margin!r} (leaves no range on some joint of {robot.name})")
        limits = cls(
            n=n,
            velocity=velocity,
            torque=torque,
            acceleration=_floats(robot.ddq_max * cfg.acceleration_fraction),
            jerk=_floats(robot.jerk_max * cfg.jerk_fraction),
            torque_rate=_floats(robot.dtau_max * cfg.torque_rate_fraction),
            soft_q_min=_floats(robot.q_min + margin),
            soft_q_max=_floats(robot.q_max - margin),
            taper_zone=float(cfg.taper_zone_rad),
            workspace_min=tuple(float(x) for x in cfg.workspace_min),
            workspace_max=tuple(float(x) for x in cfg.workspace_max),
            workspace_breach=float(cfg.workspace_breach_m),
            watchdog_timeout=float(cfg.watchdog_timeout_s),
            watchdog_poll=float(cfg.watchdog_poll_s),
            max_state_age=float(cfg.max_state_age_s),
            tracking_tolerance=float(cfg.tracking_tolerance),
            tracking_timeout=float(cfg.tracking_timeout_s),
            horizon=float(command_hold_s),
            nominal_period=1.0 / float(control_hz),
            torque_speed_headroom=float(cfg.torque_speed_headroom),
        )
        home_tcp = robot.tcp_position(robot.home)
        if not limits.inside_workspace(home_tcp, 0.0):
            raise ConfigError(
                f"invalid value for {key}.workspace_min/max: {list(limits.workspace_min)}..{list(limits.workspace_max)} "
                f"(does not contain the {robot.name} home TCP position {np.round(home_tcp, 3).tolist()})"
            )
        return limits

    def tightened(self, vendor: dict[str, np.ndarray] | None) -> SafetyLimits:
        """Never allow more than the vendor library enforces itself."""
        if not vendor:
            return self
        out = self
        if "dq_max" in vendor:
            out = replace(out, velocity=tuple(min(a, float(b)) for a, b in zip(out.velocity, vendor["dq_max"])))
        if "ddq_max" in vendor:
            out = replace(out, acceleration=tuple(min(a, float(b)) for a, b in zip(out.acceleration, vendor["ddq_max"])))
        return out

    def inside_workspace(self, p, tolerance: float) -> bool:
        lo, hi = self.workspace_min, self.workspace_max
        return all(lo[i] - tolerance <= p[i] <= hi[i] + tolerance for i in range(3))

    def pose_problems(self, q, tcp, *, joint_margin: float = 0.0, workspace_tolerance: float = 0.0) -> list[str]:
        """The one safe-pose check (reset targets, waypoints, pre-flight, fault clearing): every joint
        within its soft limits narrowed by `joint_margin`, the TCP `tcp` inside the workspace box widened
        by `workspace_tolerance`. Returns what is wrong; empty when the pose is safe."""
        problems = []
        for i in range(self.n):
            lo, hi = self.soft_q_min[i] + joint_margin, self.soft_q_max[i] - joint_margin
            if not lo <= q[i] <= hi:
                problems.append(f"joint {i + 1} at {q[i]:.3f} rad is outside its soft limits [{lo:.3f}, {hi:.3f}]")
        if not self.inside_workspace(tcp, workspace_tolerance):
            problems.append(f"its TCP {np.round(np.asarray(tcp, dtype=float), 3).tolist()} m is outside the workspace box")
        return problems


def _floats(values) -> tuple[float, ...]:
    return tuple(float(x) for x in values)


def _absolute_or_fraction(absolute, fraction: float, datasheet: np.ndarray, key: str, unit: str, robot: str) -> tuple[float, ...]:
    if absolute is None:
        return _floats(datasheet * fraction)
    if len(absolute) != len(datasheet):
        raise ConfigError(f"invalid value for {key}: {list(absolute)!r} (needs {len(datasheet)} values, one per joint of {robot})")
    for i, (value, cap) in enumerate(zip(absolute, datasheet)):
        if not value > 0:
            raise ConfigError(f"invalid value for {key}[{i}]: {value!r} (must be positive)")
        if value > cap:
            raise ConfigError(f"invalid value for {key}[{i}]: {value!r} {unit} (above the {robot} datasheet limit {float(cap)} {unit} for joint {i + 1})")
    return _floats(absolute)
