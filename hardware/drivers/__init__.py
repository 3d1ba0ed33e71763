"""Robot drivers behind one interface (`RobotDriver`): `fake`, `franka` (franky-control), `ur` (ur_rtde)."""

from __future__ import annotations

from importlib import import_module

from hardware.config import DriverConfig
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

# Driver class per config kind (hardware.config.DRIVER_CONFIGS), imported when first built: a vendor
# library is needed only by the kind that uses it.
DRIVERS = {
    "fake": "hardware.drivers.fake:FakeDriver",
    "franka": "hardware.drivers.franka:FrankaDriver",
    "ur": "hardware.drivers.ur:URDriver",
}


def make_driver(cfg: DriverConfig, robot: RobotDescription, clock: Clock, soft_limits=None) -> RobotDriver:
    """Build (not connect) the driver a validated config names. `soft_limits` = (q_min, q_max) for
    vendor-side joint-limit handling where the backend has one."""
    module, name = DRIVERS[cfg.kind.value].split(":")
    return getattr(import_module(module), name)(robot, clock, cfg, soft_limits=soft_limits)


__all__ = [
    "DRIVERS",
    "DriverConnectError",
    "DriverError",
    "DriverFault",
    "DriverFaultError",
    "RobotDriver",
    "RobotState",
    "make_driver",
]
