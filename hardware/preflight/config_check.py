"""Pre-flight `config`: the env and hardware config validate; limits are within the robot's datasheet."""

from __future__ import annotations

import numpy as np

from hardware.config import ClockKind, DriverKind, load_hardware_config
from hardware.preflight.report import FAIL, PASS, WARN
from hardware.safety.limits import SafetyLimits
from robolearn.config import ConfigError, load_env_config
from robolearn.spec import EnvSpec


def check_config(pf) -> bool:
    try:
        cfg = load_env_config(pf.raw)
        hw = load_hardware_config(cfg)
        contract = EnvSpec.from_config(cfg)
        limits = SafetyLimits.from_config(hw.safety, contract.robot, command_hold_s=hw.driver.command_hold_s, control_hz=cfg.control_hz)
    except ConfigError as exc:
        pf.add("config", FAIL, str(exc))
        return False
    pf.cfg, pf.hw, pf.contract, pf.limits = cfg, hw, contract, limits
    robot = contract.robot
    vel = np.asarray(limits.velocity)
    share = float(np.max(vel / robot.dq_max))
    notes = [f"{robot.name}, {contract.control_mode.value} at {cfg.control_hz:g} Hz, driver {hw.driver.kind.value}",
             f"velocity <= {share:.0%} of datasheet", f"box {list(limits.workspace_min)}..{list(limits.workspace_max)} m",
             f"watchdog {limits.watchdog_timeout * 1000:.0f} ms, vendor hold {hw.driver.command_hold_s * 1000:.0f} ms"]
    status = PASS
    if contract.control_mode.value == "joint_velocity" and np.any(contract.command_limits > vel + 1e-12):
        notes.append("note: the safety layer clamps actions above its velocity limit")
    if hw.driver.kind is DriverKind.fake:
        status = WARN
        notes.append("fake driver: a dry run, not an arm")
    if hw.loop.clock is ClockKind.virtual:
        notes.append("checked on the wall clock (the config asks for a virtual clock)")
    pf.add("config", status, "; ".join(notes), velocity_limits=list(limits.velocity), datasheet=robot.dq_max.tolist())
    return True
