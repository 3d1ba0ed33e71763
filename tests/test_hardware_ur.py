"""The UR driver (ur_rtde) against fakes of the RTDE classes: there is no UR simulator without Docker.

The fake controller behaves like the real one where the driver relies on it: speedJ speeds integrate
into joint positions, the RTDE watchdog stops the control script when it is not kicked in time, and
protective stops are unlocked only through the dashboard server.
"""

from __future__ import annotations

import threading
import time
import types

import numpy as np
import pytest

from hardware.config import SafetyConfig, URDriverConfig
from hardware.drivers.base import DriverConnectError, DriverError, DriverFaultError
from hardware.drivers.ur import URDriver
from hardware.safety.layer import ResetRefused, SafetyLayer
from hardware.safety.limits import SafetyLimits
from hardware.timing import VirtualClock
from robolearn.robots import RobotDescription

pytestmark = pytest.mark.timeout(30)


def _arr(*values):
    return np.array(values, dtype=np.float64)


# A 6-joint arm for these tests (UR5e-like ranges and limits; kinematics simplified to a planar chain).
ARM6 = RobotDescription(
    name="test-ur6",
    joint_names=tuple(f"joint{i}" for i in range(1, 7)),
    q_min=_arr(*[-2 * np.pi] * 6),
    q_max=_arr(*[2 * np.pi] * 6),
    dq_max=_arr(*[np.pi] * 6),
    ddq_max=_arr(*[10.0] * 6),
    jerk_max=_arr(*[5000.0] * 6),
    tau_max=_arr(150, 150, 150, 28, 28, 28),
    dtau_max=_arr(*[1000.0] * 6),
    dh=np.array([[0, 0.16, 0], [0, 0, np.pi / 2], [0.42, 0, 0], [0.39, 0.13, 0], [0, 0.1, np.pi / 2], [0, 0.1, -np.pi / 2], [0, 0, 0]]),
    home=_arr(0.0, -1.2, 1.5, -1.9, -1.57, 0.0),
    tcp_offset=0.0,
)


class FakeController:
    """The robot side: joint state, the active speed, the RTDE watchdog, safety mode."""

    def __init__(self, clock: VirtualClock, joints: int = 6):
        self.clock = clock
        self.q = ARM6.home.copy()[:joints] if joints == 6 else np.zeros(joints)
        self.qd = np.zeros(joints)
        self.t = clock.now()
        self.safety_mode = 1
        self.program_running = True
        self.connected = True
        self.watchdog_period: float | None = None
        self.last_kick = clock.now()
        self.calls: list[tuple] = []
        self.direct_torque_supported = True

    def advance(self):
        now = self.clock.now()
        if self.watchdog_period is not None and self.program_running and now - self.last_kick > self.watchdog_period:
            self.program_running = False  # the script stops, and with it the arm
            self.qd[:] = 0.0
        self.q += self.qd * (now - self.t)
        self.t = now


class FakeRTDEControl:
    def __init__(self, controller: FakeController, host: str, frequency: float):
        self.c = controller
        controller.calls.append(("control_connect", host, frequency))

    def _log(self, *call):
        self.c.advance()
        self.c.calls.append(call)

    def setWatchdog(self, min_frequency):
        self._log("setWatchdog", min_frequency)
        self.c.watchdog_period = 1.0 / min_frequency
        self.c.last_kick = self.c.clock.now()
        return True

    def kickWatchdog(self):
        self._log("kickWatchdog")
        self.c.last_kick = self.c.clock.now()
        return True

    def speedJ(self, qd, acceleration, time_):
        self._log("speedJ", list(qd), acceleration, time_)
        if not self.c.program_running or self.c.safety_mode != 1:
            return False
        self.c.qd = np.asarray(qd, dtype=np.float64)
        return True

    def speedStop(self, a):
        self._log("speedStop", a)
        self.c.qd[:] = 0.0
        return True

    def directTorque(self, torque):
        self._log("directTorque", list(torque))
        return self.c.direct_torque_supported

    def getJointTorques(self):
        self.c.advance()
        return [0.5] * len(self.c.q)

    def isProgramRunning(self):
        self.c.advance()
        return self.c.program_running

    def isConnected(self):
        return self.c.connected

    def reuploadScript(self):
        self._log("reuploadScript")
        self.c.program_running = True
        self.c.last_kick = self.c.clock.now()
        return True

    def stopScript(self):
        self._log("stopScript")

    def disconnect(self):
        self._log("control_disconnect")


class FakeRTDEReceive:
    def __init__(self, controller: FakeController, host: str, frequency: float):
        self.c = controller

    def getTimestamp(self):
        self.c.advance()
        return self.c.t

    def getActualQ(self):
        self.c.advance()
        return self.c.q.tolist()

    def getActualQd(self):
        return self.c.qd.tolist()

    def getSafetyMode(self):
        return self.c.safety_mode

    def isConnected(self):
        return self.c.connected

    def disconnect(self):
        pass


class FakeDashboard:
    def __init__(self, controller: FakeController, host: str):
        self.c = controller

    def connect(self):
        self.c.calls.append(("dashboard_connect",))

    def closeSafetyPopup(self):
        self.c.calls.append(("closeSafetyPopup",))

    def unlockProtectiveStop(self):
        self.c.calls.append(("unlockProtectiveStop",))
        if self.c.safety_mode == 3:
            self.c.safety_mode = 1

    def disconnect(self):
        pass


def fake_rtde(controller: FakeController, block_connect: threading.Event | None = None):
    def control(host, frequency):
        if block_connect is not None:
            block_connect.wait()
        return FakeRTDEControl(controller, host, frequency)

    return types.SimpleNamespace(
        RTDEControlInterface=control,
        RTDEReceiveInterface=lambda host, frequency: FakeRTDEReceive(controller, host, frequency),
        DashboardClient=lambda host: FakeDashboard(controller, host),
    )


@pytest.fixture
def ur():
    clock = VirtualClock()
    controller = FakeController(clock)
    driver = URDriver(ARM6, clock, URDriverConfig(host="127.0.0.8", command_hold_s=0.2, rtde_frequency=500.0), rtde=fake_rtde(controller))
    driver.connect()
    return clock, controller, driver


def test_connect_arms_the_rtde_watchdog_at_the_command_hold_rate(ur):
    _, controller, _ = ur
    assert ("control_connect", "127.0.0.8", 500.0) in controller.calls
    assert ("setWatchdog", pytest.approx(5.0)) in controller.calls


def test_speedj_moves_the_arm_and_every_command_kicks_the_watchdog(ur):
    clock, controller, driver = ur
    q0 = driver.read_state().q.copy()
    for _ in range(5):
        driver.set_joint_velocity([0.2, 0, 0, 0, 0, -0.1])
        clock.advance(0.1)
    calls = [c[0] for c in controller.calls]
    assert calls.count("speedJ") == 5 and calls.count("kickWatchdog") == 5
    speedj = next(c for c in controller.calls if c[0] == "speedJ")
    assert speedj[2:] == (1.5, 0.0)  # bounded acceleration, returns at once
    state = driver.read_state()
    np.testing.assert_allclose(state.q - q0, [0.1, 0, 0, 0, 0, -0.05], atol=1e-9)
    assert state.seq == round(state.robot_time * 500) and driver.fault is None


def test_stale_rtde_state_shows_as_an_old_host_time(ur):
    clock, controller, driver = ur
    first = driver.read_state()
    controller.advance = lambda: None  # the controller's clock stops (link frozen)
    clock.advance(0.3)
    again = driver.read_state()
    assert again.seq == first.seq and again.host_time == first.host_time


def test_unkicked_watchdog_stops_the_script_and_the_driver_latches(ur):
    clock, controller, driver = ur
    driver.set_joint_velocity([0.2, 0, 0, 0, 0, 0])
    clock.advance(0.5)  # no command, no kick
    driver.read_state()
    assert controller.qd.tolist() == [0.0] * 6
    assert driver.fault.kind == "robot_error" and "not running" in driver.fault.message
    with pytest.raises(DriverFaultError):
        driver.set_joint_velocity([0.1] * 6)
    driver.reset()  # explicit: re-uploads the script and re-arms the watchdog
    assert ("reuploadScript",) in controller.calls and driver.fault is None


def test_protective_stop_latches_and_is_unlocked_only_on_explicit_reset(ur):
    _clock, controller, driver = ur
    controller.safety_mode = 3
    state = driver.read_state()
    assert state.mode == "protective_stop" and driver.fault.kind == "protective_stop"
    assert ("unlockProtectiveStop",) not in controller.calls  # nothing unlocks it behind our back
    driver.reset()
    assert ("unlockProtectiveStop",) in controller.calls and controller.safety_mode == 1
    assert driver.fault is None


def test_emergency_stop_cannot_be_reset_from_software(ur):
    _, controller, driver = ur
    controller.safety_mode = 7
    driver.read_state()
    assert driver.fault.kind == "emergency_stop"
    with pytest.raises(DriverError, match="robot_emergency_stop.*pendant"):
        driver.reset()


def test_torque_control_only_when_enabled(ur):
    _clock, controller, driver = ur
    with pytest.raises(DriverError, match="torque control is disabled"):
        driver.set_joint_torque([0.0] * 6)
    driver.cfg.torque_control = True
    driver.set_joint_velocity([0.1] * 6)
    driver.set_joint_torque([1.0, 0, 0, 0, 0, 0])
    assert controller.calls[-3][0] == "speedStop"  # leaving speed mode first
    assert controller.calls[-2] == ("directTorque", [1.0, 0, 0, 0, 0, 0]) and controller.calls[-1][0] == "kickWatchdog"
    controller.direct_torque_supported = False  # an older PolyScope
    driver.set_joint_torque([1.0, 0, 0, 0, 0, 0])
    assert "PolyScope" in driver.fault.message


def test_lost_connection_latches_and_refuses(ur):
    _, controller, driver = ur
    controller.connected = False
    with pytest.raises(DriverError, match="connection to 127.0.0.8 lost"):
        driver.read_state()
    assert driver.fault.kind == "disconnected" and not driver.is_connected


def test_joint_count_mismatch_fails_at_connect():
    clock = VirtualClock()
    controller = FakeController(clock, joints=7)
    driver = URDriver(ARM6, clock, URDriverConfig(host="127.0.0.8"), rtde=fake_rtde(controller))
    with pytest.raises(DriverError, match="reports 7 joints.*has 6"):
        driver.connect()


def test_connect_is_time_bound():
    clock = VirtualClock()
    never = threading.Event()
    driver = URDriver(ARM6, clock, URDriverConfig(host="127.0.0.8", connect_timeout_s=0.2), rtde=fake_rtde(FakeController(clock), block_connect=never))
    start = time.monotonic()
    with pytest.raises(DriverConnectError, match="RTDE control to 127.0.0.8: no answer within 0.2 s"):
        driver.connect()
    assert time.monotonic() - start < 1.0
    never.set()  # let the abandoned helper thread finish


def test_safety_layer_wraps_the_ur_driver(ur):
    clock, controller, driver = ur
    limits = SafetyLimits.from_config(
        SafetyConfig(workspace_min=[-1, -1, -1], workspace_max=[1, 1, 1.5]), ARM6, command_hold_s=0.2, control_hz=10
    )
    layer = SafetyLayer(driver, limits, clock, watchdog_thread=False)
    assert layer.command_velocity([10.0, 0, 0, 0, 0, 0])
    sent = next(c for c in reversed(controller.calls) if c[0] == "speedJ")[1]
    assert sent[0] <= limits.velocity[0] and layer.counters["clamped"] == 1
    controller.safety_mode = 3
    clock.advance(0.05)
    layer.poll()
    assert layer.latched and "protective_stop" in layer.fault.message
    with pytest.raises(ResetRefused, match="recover_robot_errors"):
        layer.reset()
    layer.reset(recover_robot_errors=True)
    assert not layer.latched
