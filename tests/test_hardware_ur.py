"""The UR driver (ur_rtde's calls) against the simulated UR controller: there is no UR simulator without Docker.

The simulated controller (hardware/drivers/ur_simulated.py) stands in for ur_rtde's three classes and
behaves like the real controller where the driver relies on it: speedJ speeds are tracked at the given
acceleration, the RTDE watchdog stops the control script when it is not kicked in time, protective stops
unlock only through the dashboard and only 5 s after they happened, and directTorque exists only from
PolyScope 5.23. Everything runs on a VirtualClock.
"""

from __future__ import annotations

import logging
import threading
import time
import types

import numpy as np
import pytest

from hardware.config import SafetyConfig, URDriverConfig
from hardware.drivers.base import DriverConnectError, DriverError, DriverFaultError
from hardware.drivers.ur import URDriver, polyscope_version
from hardware.drivers.ur_simulated import SimulatedURController, _Control
from hardware.safety.layer import ResetRefused, SafetyLayer
from hardware.safety.limits import SafetyLimits
from hardware.timing import MonotonicClock, VirtualClock
from robolearn.robots import PANDA, UR5E
from tests.fake_urcap import FakeURCap
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.8"


def rig(polyscope: str = "5.23.0", **cfg):
    clock = VirtualClock()
    controller = SimulatedURController(UR5E, clock, polyscope=polyscope)
    driver = URDriver(UR5E, clock, URDriverConfig(host=HOST, command_hold_s=0.2, **cfg), rtde=controller.rtde())
    return clock, controller, driver


@pytest.fixture
def ur():
    clock, controller, driver = rig()
    driver.connect()
    return clock, controller, driver


def names(controller) -> list[str]:
    return [call[0] for call in controller.calls]


def test_connect_arms_the_rtde_watchdog_at_the_command_hold_rate_and_reads_the_version(ur):
    _, controller, driver = ur
    assert ("control_connect", HOST, 500.0) in controller.calls
    assert ("setWatchdog", pytest.approx(5.0)) in controller.calls
    assert "polyscopeVersion" in names(controller)
    assert polyscope_version(driver.controller_status().software) == (5, 23, 0)


def test_speedj_moves_the_arm_and_every_command_kicks_the_watchdog(ur):
    clock, controller, driver = ur
    q0 = driver.read_state().q.copy()
    for _ in range(5):
        driver.set_joint_velocity([0.2, 0, 0, 0, 0, -0.1])
        clock.advance(0.1)
    calls = names(controller)
    assert calls.count("speedJ") == 5 and calls.count("kickWatchdog") == 5
    speedj = next(c for c in controller.calls if c[0] == "speedJ")
    # The leading axis may accelerate at the robot's largest joint limit: the safety layer shapes the motion.
    assert speedj[2:] == (float(np.max(UR5E.ddq_max)), 0.0)
    state = driver.read_state()
    ramp = 0.2**2 / (2 * 20.0)  # what the first 10 ms of acceleration cost, per joint at that speed
    np.testing.assert_allclose(state.q - q0, [0.1 - ramp, 0, 0, 0, 0, -0.05 + 0.1**2 / 40], atol=1e-9)
    assert state.seq == round(state.robot_time * 500) and driver.fault is None


def test_stale_rtde_state_shows_as_an_old_host_time(ur):
    clock, controller, driver = ur
    first = driver.read_state()
    controller.freeze_state()
    clock.advance(0.3)
    again = driver.read_state()
    assert again.seq == first.seq and again.host_time == first.host_time


def test_unkicked_watchdog_stops_the_script_and_the_arm_and_the_driver_latches(ur):
    clock, controller, driver = ur
    driver.set_joint_velocity([0.5, 0, 0, 0, 0, 0])
    clock.advance(1.0)  # no command, no kick: the script stops at 0.2 s and the arm brakes
    driver.read_state()
    assert not controller.program_running and controller.qd.tolist() == [0.0] * 6
    assert driver.fault.kind == "script_stopped" and "not running" in driver.fault.message
    with pytest.raises(DriverFaultError):
        driver.set_joint_velocity([0.1] * 6)
    driver.reset()  # explicit: re-uploads the script and re-arms the watchdog
    assert "reuploadScript" in names(controller) and driver.fault is None and controller.program_running


def test_protective_stop_latches_and_unlocks_only_on_explicit_reset_after_five_seconds(ur):
    clock, controller, driver = ur
    controller.protective_stop()
    state = driver.read_state()
    assert state.mode == "protective_stop" and driver.fault.kind == "protective_stop"
    assert "unlockProtectiveStop" not in names(controller)  # nothing unlocks it behind our back
    with pytest.raises(DriverError, match="Cannot unlock protective stop until 5s"):
        driver.reset()  # the controller's own rule, passed on in its words
    clock.advance(5.0)
    driver.reset()
    assert controller.safety_mode == 1 and driver.fault is None and controller.program_running


def test_a_joint_over_its_range_is_a_protective_stop_on_the_controller(ur):
    clock, controller, driver = ur
    near = UR5E.home.copy()
    near[5] = UR5E.q_max[5] - 0.01
    controller.move_by_hand(near)
    driver.set_joint_velocity([0, 0, 0, 0, 0, 0.5])
    clock.advance(0.1)
    driver.read_state()
    assert driver.fault.kind == "protective_stop" and controller.qd.tolist() == [0.0] * 6


def test_emergency_stop_cannot_be_reset_from_software_and_the_arm_must_be_powered_on_after(ur):
    clock, controller, driver = ur
    controller.emergency_stop()
    driver.read_state()
    assert driver.fault.kind == "emergency_stop"
    with pytest.raises(DriverError, match="robot_emergency_stop.*pendant"):
        driver.reset()
    controller.release_emergency_stop()  # the button is out; the arm is off
    with pytest.raises(DriverError, match="POWER_OFF.*power on"):
        driver.reset()
    assert driver.fault.kind == "emergency_stop"  # still the first fault, still latched
    controller.power_on()
    driver.reset()
    assert driver.fault is None


def test_a_robot_that_is_not_running_latches(ur):
    _, controller, driver = ur
    controller.power_off()
    driver.read_state()
    assert driver.fault.kind == "robot_error" and "POWER_OFF" in driver.fault.message


def test_torque_control_only_when_enabled(ur):
    _clock, controller, driver = ur
    with pytest.raises(DriverError, match="torque control is disabled"):
        driver.set_joint_torque([0.0] * 6)


def test_torque_mode_leaves_speed_mode_first_and_reports_the_controllers_model():
    clock, controller, driver = rig(torque_control=True)
    driver.connect()
    driver.set_joint_velocity([0.1] * 6)
    driver.set_joint_torque([1.0, 0, 0, 0, 0, 0])
    assert names(controller)[-3:] == ["speedStop", "directTorque", "kickWatchdog"]
    clock.advance(0.1)
    state = driver.read_state()
    assert state.dq[0] > 0  # the torque accelerates joint 1
    model = driver.joint_dynamics(state)
    np.testing.assert_allclose(model.mass, np.diag(controller.inertia))
    np.testing.assert_allclose(model.drift, -controller.damping * state.dq / controller.inertia)


@pytest.mark.parametrize("controller,needed", [("5.15.2", "5.23"), ("5.23.0", "5.26")])
def test_torque_control_on_an_old_polyscope_fails_at_connect_naming_the_version(controller, needed):
    _, _, driver = rig(polyscope=controller, torque_control=True, torque_min_polyscope=needed)
    with pytest.raises(DriverError, match=rf"needs PolyScope >= {needed}.*{controller}.*joint_velocity"):
        driver.connect()
    assert not driver.is_connected


def test_a_controller_without_the_model_getters_falls_back_to_no_model(monkeypatch, caplog):
    def broken(self, *args):
        raise RuntimeError("unable to get state data for specified key: output_double_register_24")

    monkeypatch.setattr(_Control, "getMassMatrix", broken)
    clock, _, driver = rig(torque_control=True)
    with caplog.at_level(logging.WARNING):
        driver.connect()
    assert "does not report its dynamics model" in caplog.text
    assert driver.joint_dynamics(driver.read_state()) is None


def test_lost_link_latches_refuses_and_the_controllers_watchdog_stops_the_arm(ur):
    clock, controller, driver = ur
    driver.set_joint_velocity([0.3, 0, 0, 0, 0, 0])
    controller.cut_link()
    with pytest.raises(DriverError, match="connection to 127.0.0.8 lost"):
        driver.read_state()
    assert driver.fault.kind == "disconnected" and not driver.is_connected
    with pytest.raises(DriverError):
        driver.set_joint_velocity([0.3, 0, 0, 0, 0, 0])
    clock.advance(0.5)
    controller.advance()
    assert not controller.program_running and controller.qd.tolist() == [0.0] * 6


def test_two_faults_at_once_the_second_is_not_hidden_by_the_first(ur):
    """A protective stop and a dead link together: reconnecting ends only the link fault."""
    clock, controller, driver = ur
    limits = SafetyLimits.from_config(SafetyConfig(), UR5E, command_hold_s=0.2, control_hz=10)
    layer = SafetyLayer(driver, limits, clock, watchdog_thread=False)
    layer.command_velocity([0.1, 0, 0, 0, 0, 0])
    controller.protective_stop()
    controller.cut_link()
    clock.advance(0.05)
    layer.poll()
    assert layer.latched and "lost" in layer.fault.message
    controller.restore_link()
    with pytest.raises(ResetRefused, match="protective_stop"):
        layer.reset(reconnect=True)  # the link is back, the stop is still there
    assert layer.latched and driver.fault.kind == "protective_stop"
    clock.advance(5.0)
    layer.reset(reconnect=True, recover_robot_errors=True)
    assert not layer.latched and controller.safety_mode == 1


def test_joint_count_mismatch_fails_at_connect():
    clock = VirtualClock()
    controller = SimulatedURController(PANDA, clock)  # a controller reporting 7 joints
    driver = URDriver(UR5E, clock, URDriverConfig(host=HOST), rtde=controller.rtde())
    with pytest.raises(DriverError, match="reports 7 joints.*has 6"):
        driver.connect()


def test_connect_is_time_bound():
    clock = VirtualClock()
    never = threading.Event()
    rtde = SimulatedURController(UR5E, clock).rtde()
    blocked = types.SimpleNamespace(**vars(rtde))
    blocked.RTDEControlInterface = lambda host, frequency: never.wait() and rtde.RTDEControlInterface(host, frequency)
    driver = URDriver(UR5E, clock, URDriverConfig(host=HOST, connect_timeout_s=0.2), rtde=blocked)
    start = time.monotonic()
    with pytest.raises(DriverConnectError, match="RTDE control to 127.0.0.8: no answer within 0.2 s"):
        driver.connect()
    assert time.monotonic() - start < 2.0
    never.set()  # let the abandoned helper thread finish


def test_controller_status_reports_what_preflight_judges(ur):
    _, controller, driver = ur
    controller.remote_control = False
    controller.payload_kg = 1.2
    status = driver.controller_status()
    assert (status.model, status.expected_model) == ("UR5", "UR5")
    assert status.robot_mode == "RUNNING" and status.safety_status == "NORMAL"
    assert status.remote_control is False and status.payload_kg == 1.2 and status.torque_control is True


def test_safety_layer_wraps_the_ur_driver(ur):
    clock, controller, driver = ur
    limits = SafetyLimits.from_config(SafetyConfig(), UR5E, command_hold_s=0.2, control_hz=10)
    layer = SafetyLayer(driver, limits, clock, watchdog_thread=False)
    assert layer.command_velocity([10.0, 0, 0, 0, 0, 0])
    sent = next(c for c in reversed(controller.calls) if c[0] == "speedJ")[1]
    assert sent[0] <= limits.velocity[0] and layer.counters["clamped"] == 1
    assert not layer.command_velocity([float("nan")] * 6)  # layer 1: nothing sent, latched
    assert layer.latched and sum(1 for c in controller.calls if c[0] == "speedJ") == 1
    layer.reset()
    assert layer.command_velocity([0.1, 0, 0, 0, 0, 0])
    controller.protective_stop()
    clock.advance(0.05)
    layer.poll()  # moving: the watchdog reads the state and finds the stop without waiting for a command
    assert layer.latched and "protective_stop" in layer.fault.message
    with pytest.raises(ResetRefused, match="recover_robot_errors"):
        layer.reset()
    clock.advance(5.0)
    layer.reset(recover_robot_errors=True)
    assert not layer.latched


def test_a_robotiq_gripper_through_its_urcap_moves_reports_and_its_fault_latches():
    server = FakeURCap()
    clock = VirtualClock()
    controller = SimulatedURController(UR5E, clock)
    driver = URDriver(UR5E, clock, URDriverConfig(host="127.0.0.1", gripper=True, gripper_port=server.port), rtde=controller.rtde())
    try:
        driver.connect()
        assert server.vars["STA"] == 3  # activated at connect
        assert driver.read_state().gripper_width == pytest.approx(0.085)  # open
        driver.set_gripper(0.0)
        assert server.vars["PRE"] == 255 and server.vars["GTO"] == 1
        for _ in range(4):  # the fake closes 100 steps per position read; reads are 50 ms apart at most
            driver.set_joint_velocity([0.0] * 6)  # a policy loop at rest (virtual time has no keep-alive thread)
            clock.advance(0.05)
            width = driver.read_state().gripper_width
        assert width == 0.0 and driver.fault is None
        server.vars["FLT"] = 14
        driver.set_joint_velocity([0.0] * 6)
        clock.advance(0.05)
        driver.read_state()
        assert driver.fault.kind == "gripper" and "overcurrent" in driver.fault.message
        with pytest.raises(DriverFaultError):
            driver.set_gripper(0.08)
        with pytest.raises(DriverError, match="gripper still reports.*overcurrent"):
            driver.reset()
        server.vars["FLT"] = 0
        driver.reset()
        assert driver.fault is None
    finally:
        driver.close()
        server.stop()


def test_the_rtde_watchdog_is_kicked_while_stopped_but_only_commands_kick_it_in_motion():
    """On the wall clock: idle pauses (between episodes) keep the control script alive; a policy that
    goes silent in motion does not."""
    clock = MonotonicClock()
    controller = SimulatedURController(UR5E, clock)
    driver = URDriver(UR5E, clock, URDriverConfig(host=HOST, command_hold_s=0.2), rtde=controller.rtde())
    driver.connect()
    try:
        time.sleep(0.7)  # three and a half watchdog periods at rest
        driver.read_state()
        assert driver.fault is None and controller.program_running
        driver.set_joint_velocity([0.05, 0, 0, 0, 0, 0])
        wait_for(lambda: driver.read_state() and driver.fault is not None, 2.0, "the RTDE watchdog to end the script")
        assert driver.fault.kind == "script_stopped"
        wait_for(lambda: not np.any(driver.read_state().dq), 1.0, "the arm at rest after the script stopped")
    finally:
        driver.close()


def test_a_connect_that_fails_half_way_leaves_no_rtde_client_behind(monkeypatch):
    from hardware.drivers.ur_simulated import _Dashboard

    def unreachable(self, timeout_ms=2000):
        raise RuntimeError("dashboard: connection refused")

    monkeypatch.setattr(_Dashboard, "connect", unreachable)
    _, controller, driver = rig()
    with pytest.raises(DriverError, match="dashboard at 127.0.0.8.*connection refused"):
        driver.connect()
    assert controller.clients == 0 and not driver.is_connected  # the control client was closed again
