"""Robot drivers behind one interface (`RobotDriver`): `fake`, `franka` (franky-control), `ur` (ur_rtde)."""

from __future__ import annotations

from hardware.config import DriverConfig, DriverKind
from hardware.drivers.base import (
    DriverConnectError,
    DriverError,
    DriverFault,
    DriverFaultError,
    RobotDriver,
    RobotState,
)
from hardware.timing import Clock
from robolearn.robots import RobotDescription


def make_driver(cfg: DriverConfig, robot: RobotDescription, clock: Clock, soft_limits=None) -> RobotDriver:
    """Build (not connect) the driver a validated config names. `soft_limits` = (q_min, q_max) for
    vendor-side joint-limit handling where the backend has one."""
    if cfg.kind is DriverKind.fake:
        from hardware.drivers.fake import FakeDriver

        f = cfg.fake
        n = robot.n_joints
        return FakeDriver(
            robot,
            clock,
            command_hold_s=cfg.command_hold_s,
            initial_q=f.initial_q,
            latency_s=f.latency_s,
            inertia=f.inertia[:n],
            damping=f.damping[:n],
            gripper=cfg.gripper,
            gripper_speed=f.gripper_speed,
        )
    if cfg.kind is DriverKind.franka:
        from hardware.drivers.franka import FrankaDriver

        o = cfg.franka
        lower, upper = soft_limits if soft_limits is not None else (None, None)
        return FrankaDriver(
            robot,
            clock,
            host=cfg.host,
            connect_timeout_s=cfg.connect_timeout_s,
            command_hold_s=cfg.command_hold_s,
            relative_dynamics_factor=o.relative_dynamics_factor,
            require_realtime_kernel=o.require_realtime_kernel,
            collision_torque_threshold=o.collision_torque_threshold,
            collision_force_threshold=o.collision_force_threshold,
            gripper=cfg.gripper,
            gripper_speed=cfg.gripper_speed,
            gripper_force=o.gripper_force,
            soft_q_min=lower,
            soft_q_max=upper,
        )
    if cfg.kind is DriverKind.ur:
        from hardware.drivers.ur import URDriver

        o = cfg.ur
        return URDriver(
            robot,
            clock,
            host=cfg.host,
            connect_timeout_s=cfg.connect_timeout_s,
            command_hold_s=cfg.command_hold_s,
            rtde_frequency=o.rtde_frequency,
            speedj_acceleration=o.speedj_acceleration,
            stop_deceleration=o.stop_deceleration,
            torque_control=o.torque_control,
        )
    raise ValueError(f"unknown driver kind {cfg.kind!r}")


__all__ = [
    "DriverConnectError",
    "DriverError",
    "DriverFault",
    "DriverFaultError",
    "RobotDriver",
    "RobotState",
    "make_driver",
]
