"""Pre-flight `robot`: the arm answers within its connect timeout, reports no error, sends fresh state, sits
inside its soft joint limits and the workspace box, at rest."""

from __future__ import annotations

import time

import numpy as np

from hardware.config import NetworkDriverConfig
from hardware.drivers import DriverConnectError, DriverError, make_driver
from hardware.preflight.report import FAIL, PASS
from hardware.safety.kinematics import TcpKinematics


def check_robot(pf) -> bool:
    hw, limits, robot = pf.hw, pf.limits, pf.contract.robot
    try:
        pf.driver = driver = make_driver(hw.driver, robot, pf.clock, soft_limits=(limits.soft_q_min, limits.soft_q_max))
        pf.hook("driver", driver)
        start = time.monotonic()
        driver.connect()
    except DriverConnectError as exc:
        pf.add("robot", FAIL, f"unreachable at {hw.driver.host if isinstance(hw.driver, NetworkDriverConfig) else '(fake)'}: {exc}")
        return False
    except DriverError as exc:
        pf.add("robot", FAIL, f"driver error: {exc}")
        return False
    connect_ms = (time.monotonic() - start) * 1000.0
    try:
        first = driver.read_state()
        time.sleep(pf.options.state_window_s)
        state = driver.read_state()
    except DriverError as exc:
        pf.add("robot", FAIL, f"connected but the state cannot be read: {exc}")
        return False
    fault = driver.fault
    if fault is not None:
        pf.add("robot", FAIL, f"robot reports an error: {fault.message} (inspect the arm and clear it on purpose; pre-flight never clears errors)")
        return False
    problems = []
    if state.seq == first.seq:
        problems.append(f"state not updating (sequence number stuck at {state.seq})")
    age = pf.clock.now() - state.host_time
    if age > limits.max_state_age:
        problems.append(f"state {age * 1000:.0f} ms old (limit {limits.max_state_age * 1000:.0f} ms)")
    q = state.q.tolist()
    tcp = TcpKinematics(robot).position(q)
    problems += limits.pose_problems(q, tcp)
    moving = float(np.max(np.abs(state.dq)))
    if moving > pf.options.rest_speed:
        problems.append(f"arm is moving ({moving:.4f} rad/s)")
    if problems:
        pf.add("robot", FAIL, "; ".join(problems))
        return False
    reported = driver.reported_limits
    note = ""
    if reported and "dq_max" in reported:
        tighter = [i + 1 for i, (a, b) in enumerate(zip(limits.velocity, reported["dq_max"])) if float(b) < a]
        if tighter:
            note = f"; the vendor's velocity limits are lower on joints {tighter} (the safety layer uses them)"
    pf.add("robot", PASS, f"{driver.kind} connected in {connect_ms:.0f} ms, no error, state {age * 1000:.1f} ms old, at rest, TCP {np.round(tcp, 3).tolist()} m{note}",
           connect_ms=round(connect_ms, 1), state_age_ms=round(age * 1000, 2), q=q)
    return True
