"""Universal Robots backend on ur_rtde (RTDE: the 500 Hz loop runs on the controller).

- Velocity: `speedJ` with a bounded acceleration; the controller keeps the last speed until the next one.
- Torque: `directTorque`, only on controllers that have it (PolyScope >= 5.23), enabled explicitly.
- The RTDE watchdog is armed at connect (`setWatchdog(1 / command_hold_s)`) and kicked with every command,
  so the controller stops the arm on its own when commands stop arriving.
- Protective and emergency stops are latched; `reset()` unlocks a protective stop through the dashboard
  server only when asked, then re-uploads the control script.
The RTDE classes are injectable so the driver is tested against fakes (there is no UR simulator here
without Docker).
"""

from __future__ import annotations

import types
from collections.abc import Sequence

import numpy as np

from hardware.config import URDriverConfig
from hardware.drivers.base import DriverError, RobotDriver, RobotState, call_with_timeout
from hardware.timing import Clock
from robolearn.robots import RobotDescription

# RTDE safety modes (UR Client Library / RTDE guide numbering).
SAFETY_MODES = {
    1: "normal",
    2: "reduced",
    3: "protective_stop",
    4: "recovery",
    5: "safeguard_stop",
    6: "system_emergency_stop",
    7: "robot_emergency_stop",
    8: "violation",
    9: "fault",
    10: "validate_joint_id",
    11: "undefined_safety_mode",
    12: "automatic_mode_safeguard_stop",
    13: "system_three_position_enabling_stop",
}
_OK_SAFETY_MODES = {1, 2}


def import_rtde() -> types.SimpleNamespace:
    try:
        import dashboard_client
        import rtde_control
        import rtde_receive
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise DriverError(f"ur driver needs ur-rtde (pip install ur-rtde): {exc}") from None
    return types.SimpleNamespace(
        RTDEControlInterface=rtde_control.RTDEControlInterface,
        RTDEReceiveInterface=rtde_receive.RTDEReceiveInterface,
        DashboardClient=dashboard_client.DashboardClient,
    )


class URDriver(RobotDriver):
    kind = "ur"

    def __init__(self, robot: RobotDescription, clock: Clock, cfg: URDriverConfig, *, soft_limits=None, rtde: types.SimpleNamespace | None = None):
        # soft_limits: the controller's own joint limits apply; the safety layer enforces the soft ones.
        super().__init__(robot, cfg.command_hold_s)
        self.cfg = cfg
        self.clock = clock
        self.host = cfg.host
        self._rtde = rtde
        self._ctrl = None
        self._recv = None
        self._mode: str | None = None  # "velocity" | "torque"
        self._last_seq = -1
        self._seq_host_time = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------
    def connect(self) -> None:
        rtde = self._rtde = self._rtde or import_rtde()
        self.close()
        hint = "robot off or unreachable, not in remote control, or another RTDE client connected?"
        self._recv = call_with_timeout(
            lambda: rtde.RTDEReceiveInterface(self.host, self.cfg.rtde_frequency),
            self.cfg.connect_timeout_s,
            f"ur: connecting RTDE receive to {self.host}",
            hint,
        )
        self._ctrl = call_with_timeout(
            lambda: rtde.RTDEControlInterface(self.host, self.cfg.rtde_frequency),
            self.cfg.connect_timeout_s,
            f"ur: connecting RTDE control to {self.host}",
            hint,
        )
        joints = len(self._recv.getActualQ())
        if joints != self.robot.n_joints:
            self.close()
            raise DriverError(f"ur: the arm at {self.host} reports {joints} joints, robot {self.robot.name!r} has {self.robot.n_joints}")
        # The controller stops the arm when no input arrives at this rate; every command kicks it.
        if not self._ctrl.setWatchdog(1.0 / self.command_hold_s):
            raise DriverError("ur: the controller refused to arm the RTDE watchdog")
        self._mode = None
        self._connected_again()

    def close(self) -> None:
        if self._ctrl is not None:
            try:
                self.stop()
                self._ctrl.stopScript()
                self._ctrl.disconnect()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        if self._recv is not None:
            try:
                self._recv.disconnect()
            except Exception:  # noqa: BLE001
                pass
        self._ctrl = None
        self._recv = None

    @property
    def is_connected(self) -> bool:
        return self._ctrl is not None and self._recv is not None and self._ctrl.isConnected() and self._recv.isConnected()

    # -- state -------------------------------------------------------------------------------------
    def read_state(self) -> RobotState:
        recv, ctrl = self._require()
        now = self.clock.now()
        try:
            robot_time = float(recv.getTimestamp())
            q = np.array(recv.getActualQ(), dtype=np.float64)
            dq = np.array(recv.getActualQd(), dtype=np.float64)
            tau = np.array(ctrl.getJointTorques(), dtype=np.float64)
            safety_mode = int(recv.getSafetyMode())
            running = bool(ctrl.isProgramRunning())
        except Exception as exc:  # noqa: BLE001 - the RTDE bindings raise RuntimeError on a dead link
            self._latch("disconnected", f"cannot read state: {exc}", now)
            raise DriverError(f"ur: cannot read state from {self.host}: {exc}") from None
        seq = int(round(robot_time * self.cfg.rtde_frequency))
        if seq != self._last_seq:
            self._last_seq = seq
            self._seq_host_time = now
        if safety_mode not in _OK_SAFETY_MODES:
            name = SAFETY_MODES.get(safety_mode, f"safety mode {safety_mode}")
            kind = "emergency_stop" if "emergency" in name else "protective_stop" if "stop" in name else "robot_error"
            self._latch(kind, f"controller in {name}", now)
        elif not running:
            # The RTDE control script ended (its watchdog fired, or someone stopped it on the pendant).
            self._latch("robot_error", "the RTDE control script is not running on the controller", now)
        return RobotState(
            q=q,
            dq=dq,
            tau=tau,
            gripper_width=0.0,  # no gripper backend for UR arms yet
            host_time=self._seq_host_time,
            seq=seq,
            robot_time=robot_time,
            mode=SAFETY_MODES.get(safety_mode, str(safety_mode)),
        )

    # -- commands ----------------------------------------------------------------------------------
    def set_joint_velocity(self, dq: Sequence[float]) -> None:
        target = self._vector(dq, "joint velocity").tolist()
        _, ctrl = self._require()
        self._refuse_if_faulted()
        self._mode = "velocity"
        if not ctrl.speedJ(target, self.cfg.speedj_acceleration, 0.0):
            self._latch("robot_error", "speedJ rejected by the controller", self.clock.now())
        ctrl.kickWatchdog()

    def set_joint_torque(self, tau: Sequence[float]) -> None:
        torque = self._vector(tau, "joint torque").tolist()
        if not self.cfg.torque_control:
            raise DriverError("ur: torque control is disabled (env.hardware.driver.torque_control)")
        _, ctrl = self._require()
        self._refuse_if_faulted()
        if self._mode == "velocity":
            ctrl.speedStop(self.cfg.stop_deceleration)
        self._mode = "torque"
        if not ctrl.directTorque(torque):
            self._latch("robot_error", "directTorque rejected (needs PolyScope >= 5.23)", self.clock.now())
        ctrl.kickWatchdog()

    def set_gripper(self, width: float) -> None:
        pass  # no gripper backend for UR arms yet (config validation keeps `gripper: false` for them)

    def stop(self) -> None:
        ctrl = self._ctrl
        if ctrl is None:
            return
        try:
            if self._mode == "torque":
                ctrl.directTorque([0.0] * self.robot.n_joints)
            ctrl.speedStop(self.cfg.stop_deceleration)
            ctrl.kickWatchdog()
        except Exception as exc:  # noqa: BLE001 - best effort: the RTDE watchdog stops the arm anyway
            self._latch("disconnected", f"stop failed: {exc}", self.clock.now())
        self._mode = None

    def reset(self) -> None:
        recv, ctrl = self._require()
        if int(recv.getSafetyMode()) == 3:
            dashboard = self._rtde.DashboardClient(self.host)
            dashboard.connect()
            try:
                dashboard.closeSafetyPopup()
                dashboard.unlockProtectiveStop()
            finally:
                dashboard.disconnect()
        mode = int(recv.getSafetyMode())
        if mode not in _OK_SAFETY_MODES:
            raise DriverError(f"ur: controller still in {SAFETY_MODES.get(mode, mode)}; clear it on the pendant")
        if not ctrl.isProgramRunning() and not ctrl.reuploadScript():
            raise DriverError("ur: could not restart the RTDE control script")
        if not ctrl.setWatchdog(1.0 / self.command_hold_s):
            raise DriverError("ur: the controller refused to arm the RTDE watchdog")
        self._mode = None
        self._clear_fault()

    def _require(self):
        if self._ctrl is None or self._recv is None:
            raise DriverError(f"ur: not connected to {self.host}")
        if not (self._ctrl.isConnected() and self._recv.isConnected()):
            self._latch("disconnected", "RTDE connection lost", self.clock.now())
            raise DriverError(f"ur: RTDE connection to {self.host} lost")
        return self._recv, self._ctrl
