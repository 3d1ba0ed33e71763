"""Pre-flight `watchdog`: self-test with the arm held. A creep command (default 0.02 rad/s on the last joint
for at most the vendor hold time, < 0.01 rad) then silence: the safety layer's watchdog must trip within
its timeout, and the vendor's own watchdog must stop the arm when our watchdog is out of the way."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hardware.drivers import DriverError
from hardware.preflight.report import FAIL, PASS
from hardware.safety.layer import SafetyLayer


def _probe(pf) -> list[float]:
    """A creep on one joint, away from its nearer soft limit."""
    state = pf.driver.read_state()
    n = pf.limits.n
    j = pf.options.probe_joint % n
    room_up = pf.limits.soft_q_max[j] - state.q[j]
    room_down = state.q[j] - pf.limits.soft_q_min[j]
    probe = [0.0] * n
    probe[j] = pf.options.probe_speed if room_up >= room_down else -pf.options.probe_speed
    return probe

def _wait_moving(pf, threshold: float, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if np.max(np.abs(pf.driver.read_state().dq)) > threshold:
            return True
        time.sleep(0.002)
    return False

def _wait_rest(pf, timeout_s: float) -> tuple[bool, float, float]:
    """(at rest, seconds waited, last max speed)."""
    start = time.monotonic()
    speed = np.inf
    while True:
        speed = float(np.max(np.abs(pf.driver.read_state().dq)))
        waited = time.monotonic() - start
        if speed < pf.options.rest_speed:
            return True, waited, speed
        if waited > timeout_s:
            return False, waited, speed
        time.sleep(0.005)

def check_watchdogs(pf) -> None:
    limits = pf.limits.tightened(pf.driver.reported_limits)
    hold_s = pf.hw.driver.command_hold_s
    opts = pf.options
    data: dict[str, Any] = {}
    problems = []
    try:
        # 1. The safety layer's watchdog: one command, then silence.
        layer = SafetyLayer(pf.driver, limits, pf.clock, watchdog_thread=True)
        try:
            sent_at = time.monotonic()
            if not layer.command_velocity(_probe(pf)):
                problems.append(f"the self-test command was refused: {layer.fault.message if layer.fault else '?'}")
            else:
                bound = limits.watchdog_timeout + 2 * limits.watchdog_poll + 0.05
                while not layer.latched and time.monotonic() - sent_at < bound + 0.5:
                    time.sleep(0.001)
                fault = layer.fault
                if fault is None:
                    problems.append(f"safety watchdog did not trip within {(bound + 0.5) * 1000:.0f} ms of the last command")
                    layer.hold()
                elif fault.layer != "watchdog":
                    problems.append(f"the self-test latched {fault.layer}: {fault.message}")
                else:
                    latency = time.monotonic() - sent_at
                    data["safety_watchdog_trip_ms"] = round(latency * 1000, 1)
                    if latency > bound:
                        problems.append(f"safety watchdog tripped after {latency * 1000:.0f} ms (timeout {limits.watchdog_timeout * 1000:.0f} ms)")
        finally:
            layer.close()
        rest, _, speed = _wait_rest(pf, 1.0)
        if not rest:
            problems.append(f"arm still moving ({speed:.4f} rad/s) after the safety watchdog stop")
        # 2. The vendor's watchdog: one command through the layer (its own watchdog off), then
        #    silence; the arm must come to rest by itself within the hold time.
        layer = SafetyLayer(pf.driver, limits, pf.clock, watchdog_thread=False)
        try:
            sent_at = time.monotonic()
            if not layer.command_velocity(_probe(pf)):
                problems.append(f"the vendor self-test command was refused: {layer.fault.message if layer.fault else '?'}")
            elif not _wait_moving(pf, opts.probe_speed / 2, hold_s):
                problems.append(f"the self-test creep ({opts.probe_speed} rad/s) did not move the arm within {hold_s * 1000:.0f} ms")
                layer.hold()
            else:
                rest, _, speed = _wait_rest(pf, hold_s + opts.vendor_stop_margin_s - (time.monotonic() - sent_at))
                waited = time.monotonic() - sent_at
                if rest:
                    data["vendor_watchdog_stop_ms"] = round(waited * 1000, 1)
                else:
                    layer.hold()  # our stop, since the vendor's did not come
                    problems.append(f"vendor watchdog did not stop the arm: still moving at {speed:.4f} rad/s "
                                    f"{waited * 1000:.0f} ms after the only command (command_hold_s {hold_s * 1000:.0f} ms)")
        finally:
            layer.close()
        fault = pf.driver.fault
        # The fault a vendor's stop leaves by design (a UR's ended control script) is the stop we asked for.
        expected = pf.driver.vendor_stop_fault is not None and "vendor_watchdog_stop_ms" in data
        if fault is not None and not (expected and fault.kind == pf.driver.vendor_stop_fault):
            problems.append(f"the robot reported an error during the self-test: {fault.message}")
    except DriverError as exc:
        problems.append(f"driver error during the self-test: {exc}")
    if problems:
        pf.add("watchdog", FAIL, "; ".join(problems), **data)
    else:
        pf.add("watchdog", PASS, f"safety watchdog tripped {data['safety_watchdog_trip_ms']:.0f} ms after the last command "
                  f"(timeout {limits.watchdog_timeout * 1000:.0f} ms); vendor watchdog stopped the arm {data['vendor_watchdog_stop_ms']:.0f} ms "
                  f"after its only command (hold {hold_s * 1000:.0f} ms)", **data)
