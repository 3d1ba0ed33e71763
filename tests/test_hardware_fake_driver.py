"""The fake arm: exact integration within the datasheet limits, its own watchdog, and its fault hooks."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.config import FakeDriverConfig
from hardware.drivers.base import DriverConnectError, DriverError, DriverFaultError
from hardware.drivers.fake import FakeDriver
from hardware.timing import VirtualClock
from robolearn.robots import PANDA


@pytest.fixture
def arm():
    clock = VirtualClock()
    driver = FakeDriver(PANDA, clock, FakeDriverConfig(command_hold_s=0.2, inertia=[2.0] * 7, damping=[4.0] * 7))
    driver.connect()
    return clock, driver


def numeric(driver: FakeDriver, command, mode: str, duration: float, dt: float = 1e-5):
    """Brute-force Euler integration of the same dynamics, to check the closed form."""
    q, dq = driver.read_state().q.copy(), np.zeros(7)
    for _ in range(int(round(duration / dt))):
        if mode == "velocity":
            dq = dq + np.clip(command - dq, -PANDA.ddq_max * dt, PANDA.ddq_max * dt)
        else:
            dq = dq + (command - 4.0 * dq) / 2.0 * dt
        q = q + dq * dt
    return q, dq


@pytest.mark.parametrize("mode, command", [("velocity", [0.8, -0.5, 0.2, 0.0, 1.0, -1.2, 0.3]), ("torque", [4.0, -2.0, 1.0, 0.0, 0.5, -0.5, 0.2])])
def test_closed_form_matches_brute_force_integration(arm, mode, command):
    clock, driver = arm
    command = np.array(command)
    q_ref, dq_ref = numeric(driver, command, mode, 0.15)
    (driver.set_joint_velocity if mode == "velocity" else driver.set_joint_torque)(command)
    clock.advance(0.15)
    state = driver.read_state()
    np.testing.assert_allclose(state.q, q_ref, atol=1e-4)
    np.testing.assert_allclose(state.dq, dq_ref, atol=1e-3)


def test_state_has_a_tick_sequence_and_timestamps(arm):
    clock, driver = arm
    a = driver.read_state()
    clock.advance(0.0125)
    b = driver.read_state()
    assert b.seq - a.seq == 12 and b.host_time - a.host_time == pytest.approx(0.0125)


def test_the_arm_holds_a_velocity_command_only_for_command_hold(arm):
    clock, driver = arm
    driver.set_joint_velocity([0.5, 0, 0, 0, 0, 0, 0])
    clock.advance(0.19)
    assert driver.read_state().dq[0] == pytest.approx(0.5)
    clock.advance(0.2)
    assert driver.read_state().dq[0] == 0.0 and driver.fault is None  # stopped on its own, no fault


def test_a_broken_vendor_watchdog_keeps_executing_stale_commands(arm):
    clock, driver = arm
    driver.break_vendor_watchdog()
    driver.set_joint_velocity([0.5, 0, 0, 0, 0, 0, 0])
    clock.advance(2.0)
    assert driver.read_state().dq[0] == pytest.approx(0.5)  # what a pre-flight check must catch


def test_torque_signal_loss_is_a_fault(arm):
    clock, driver = arm
    driver.set_joint_torque([1.0] + [0.0] * 6)
    clock.advance(0.25)
    assert driver.fault.kind == "signal_timeout"
    with pytest.raises(DriverFaultError):
        driver.set_joint_torque([0.0] * 7)
    driver.reset()
    driver.set_joint_torque([0.0] * 7)


def test_latency_delays_the_effect_of_a_command(arm):
    clock, driver = arm
    driver.latency_s = 0.05
    driver.set_joint_velocity([0.5, 0, 0, 0, 0, 0, 0])
    clock.advance(0.049)
    assert driver.read_state().dq[0] == 0.0
    clock.advance(0.02)
    assert driver.read_state().dq[0] > 0.0


def test_leaving_the_joint_range_is_a_reflex(arm):
    clock, driver = arm
    q = PANDA.home.copy()
    q[0] = PANDA.q_max[0] - 0.01
    driver.move_by_hand(q)
    driver.set_joint_velocity([0.5, 0, 0, 0, 0, 0, 0])
    clock.advance(0.1)
    state = driver.read_state()
    assert state.q[0] == pytest.approx(PANDA.q_max[0]) and state.dq[0] == 0.0
    assert driver.fault.kind == "reflex" and "joint 1 position limit" in driver.fault.message


def test_hooks_disconnect_freeze_and_reflex(arm):
    clock, driver = arm
    driver.freeze_state()
    frozen = driver.read_state()
    clock.advance(0.5)
    again = driver.read_state()
    assert (again.seq, again.host_time) == (frozen.seq, frozen.host_time)  # the same sample: stale
    driver.unfreeze_state()
    driver.inject_reflex("collision")
    assert driver.fault.message == "fake: collision"
    driver.reset()
    driver.cut_link()
    with pytest.raises(DriverError, match="not connected"):
        driver.read_state()
    with pytest.raises(DriverConnectError):
        driver.connect()
    driver.restore_link()
    assert not driver.is_connected  # reconnecting is explicit
    driver.connect()
    assert driver.fault is None  # a fresh connection ends the 'disconnected' fault


def test_initial_pose_outside_the_range_is_refused():
    q = PANDA.home.copy()
    q[3] = 0.5
    with pytest.raises(DriverError, match="outside the panda joint range"):
        FakeDriver(PANDA, VirtualClock(), FakeDriverConfig(initial_q=q))
