"""Universal Robots backend on ur_rtde (RTDE: the 500 Hz loop runs on the controller).

- Velocity: `speedJ` with a bounded acceleration; the controller keeps the last speed until the next one.
- Torque: `directTorque`, only on controllers that have it (PolyScope >= 5.23), enabled explicitly.
- The RTDE watchdog is armed at connect (`setWatchdog(1 / command_hold_s)`) and kicked with every command,
  so the controller stops the arm on its own when commands stop arriving. While the arm is stopped (after
  `stop()`, between episodes), a keep-alive thread kicks it instead, or the watchdog would end the control
  script during every pause; while a command is in force only commands kick it.
- Gripper: a Robotiq 2F-85/2F-140 through the Robotiq URCap's socket server (hardware/drivers/robotiq.py).
- Protective and emergency stops, a stopped control script and a robot that is not RUNNING are latched;
  `reset()` unlocks a protective stop through the dashboard server only when asked, then re-uploads the
  control script.
- Torque mode: at connect the driver asks the controller's PolyScope version and refuses to start below
  5.23 (no directTorque there), naming the version; the controller's mass matrix and Coriolis torques
  feed the safety layer's torque prediction.
The RTDE classes are injectable: `simulated: true` runs the driver against an in-process simulated
controller (hardware/drivers/ur_simulated.py) for dry runs and tests (URSim needs Docker).
"""

from __future__ import annotations

import logging
import re
import threading
import types
from collections.abc import Sequence

import numpy as np

from hardware.config import URDriverConfig
from hardware.drivers.base import (
    ControllerStatus,
    DriverError,
    JointDynamics,
    RobotDriver,
    RobotState,
    call_with_timeout,
)
from hardware.drivers.robotiq import RobotiqGripper
from hardware.timing import Clock, VirtualClock
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
ROBOT_MODES = {
    -1: "NO_CONTROLLER",
    0: "DISCONNECTED",
    1: "CONFIRM_SAFETY",
    2: "BOOTING",
    3: "POWER_OFF",
    4: "POWER_ON",
    5: "IDLE",
    6: "BACKDRIVE",
    7: "RUNNING",
    8: "UPDATING_FIRMWARE",
}
_RUNNING = 7
# What the dashboard's "get robot model" answers for each description (e-Series answers without the "e").
VENDOR_MODELS = {"ur3e": "UR3", "ur5e": "UR5", "ur10e": "UR10", "ur16e": "UR16"}

log = logging.getLogger(__name__)


def polyscope_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from the dashboard's answer, e.g. 'URSoftware 5.23.0.12345 (Jun 2025)'."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


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
    vendor_stop_fault = "script_stopped"  # the RTDE watchdog stops the arm by ending the control script

    def __init__(self, robot: RobotDescription, clock: Clock, cfg: URDriverConfig, *, soft_limits=None, rtde: types.SimpleNamespace | None = None):
        # soft_limits: the controller's own joint limits apply; the safety layer enforces the soft ones.
        super().__init__(robot, cfg.command_hold_s)
        self.cfg = cfg
        self.clock = clock
        self.host = cfg.host
        self.simulated_controller = None
        if rtde is None and cfg.simulated:
            from hardware.drivers.ur_simulated import SimulatedURController

            self.simulated_controller = SimulatedURController(robot, clock, payload_kg=1.0 if cfg.payload_kg is None else cfg.payload_kg)
            rtde = self.simulated_controller.rtde()
        self._rtde = rtde
        self._ctrl = None
        self._recv = None
        self._mode: str | None = None  # "velocity" | "torque"
        self._last_seq = -1
        self._seq_host_time = 0.0
        self._polyscope = ""
        accel = cfg.speedj_acceleration
        self._speedj_acceleration = float(np.max(robot.ddq_max)) if accel is None else float(accel)
        self._has_model = False  # the controller answers getMassMatrix / getCoriolisAndCentrifugalTorques
        self._io = threading.RLock()  # one exchange with the RTDE control interface at a time
        self._keepalive: threading.Thread | None = None
        self._keepalive_stop = threading.Event()
        self.gripper = RobotiqGripper(cfg.host, cfg.gripper_port, max_width=cfg.gripper_max_width, timeout_s=cfg.connect_timeout_s) if cfg.gripper else None
        self._gripper_width = 0.0
        self._gripper_read_at = -np.inf

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
        try:
            self._set_up()
        except BaseException:
            self.close()  # nothing half-connected stays behind (a second RTDE client is refused)
            raise
        self._mode = None
        self._connected_again()
        self.read_state()  # a stop already in force latches now, not at the first command
        if not isinstance(self.clock, VirtualClock):  # on virtual time nothing waits between commands
            self._keepalive_stop.clear()
            self._keepalive = threading.Thread(target=self._keep_alive, name=f"ur-keepalive:{self.host}", daemon=True)
            self._keepalive.start()

    def _set_up(self) -> None:
        joints = len(self._recv.getActualQ())
        if joints != self.robot.n_joints:
            raise DriverError(f"ur: the arm at {self.host} reports {joints} joints, robot {self.robot.name!r} has {self.robot.n_joints}")
        # The controller stops the arm when no input arrives at this rate; every command kicks it.
        if not self._ctrl.setWatchdog(1.0 / self.command_hold_s):
            raise DriverError("ur: the controller refused to arm the RTDE watchdog")
        self._polyscope = self._dashboard(lambda d: str(d.polyscopeVersion()), "asking the PolyScope version")
        if self.cfg.torque_control:
            self._check_torque_support()
        if self.gripper is not None:
            self.gripper.connect()
            self.gripper.activate()

    def _keep_alive(self) -> None:
        """Kick the RTDE watchdog while the arm is stopped; never while a command is in force."""
        while not self._keepalive_stop.wait(self.command_hold_s / 4):
            with self._io:
                ctrl = self._ctrl
                if ctrl is None or self._mode is not None:
                    continue
                try:
                    ctrl.kickWatchdog()
                except Exception:  # noqa: BLE001 - a dead link is latched by the next state read
                    pass

    def _check_torque_support(self) -> None:
        """Say at start-up, not at the first torque command, when this controller cannot take torques."""
        version = polyscope_version(self._polyscope)
        if not hasattr(self._ctrl, "directTorque"):
            raise DriverError("ur: torque control needs ur-rtde >= 1.6 (directTorque); this ur-rtde has none: pip install 'ur-rtde>=1.6'")
        needed = polyscope_version(self.cfg.torque_min_polyscope)
        if version is None or version < needed:
            raise DriverError(
                f"ur: torque control (directTorque) needs PolyScope >= {self.cfg.torque_min_polyscope}; "
                f"the controller at {self.host} runs {self._polyscope!r}. Update PolyScope, or run "
                "env.control_mode=joint_velocity with env.hardware.driver.torque_control=false"
            )
        try:
            self._model_at(np.asarray(self._recv.getActualQ()), np.zeros(self.robot.n_joints))
            self._has_model = True
        except Exception as exc:  # noqa: BLE001 - e.g. "unable to get state data" on PolyScope betas
            self._has_model = False
            log.warning("ur: the controller does not report its dynamics model (%s); torque near the speed limit is faded instead of predicted", exc)

    def _dashboard(self, ask, what: str):
        """One time-bound exchange with the dashboard server (port 29999)."""

        def exchange():
            dashboard = self._rtde.DashboardClient(self.host)
            dashboard.connect()
            try:
                return ask(dashboard)
            finally:
                dashboard.disconnect()

        return call_with_timeout(exchange, self.cfg.connect_timeout_s, f"ur: dashboard at {self.host}, {what}", "dashboard server reachable (port 29999)?")

    def close(self) -> None:
        self._keepalive_stop.set()
        if self._keepalive is not None and self._keepalive is not threading.current_thread():
            self._keepalive.join(timeout=1.0)
        self._keepalive = None
        if self.gripper is not None:
            self.gripper.close()
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
            robot_mode = int(recv.getRobotMode())
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
        elif robot_mode != _RUNNING:
            mode = ROBOT_MODES.get(robot_mode, f"robot mode {robot_mode}")
            self._latch("robot_error", f"robot mode {mode}, not RUNNING (power on and release the brakes on the pendant)", now)
        elif not running:
            # The RTDE control script ended (its watchdog fired, or someone stopped it on the pendant).
            self._latch("script_stopped", "the RTDE control script is not running on the controller (its watchdog fired, or it was stopped on the pendant)", now)
        return RobotState(
            q=q,
            dq=dq,
            tau=tau,
            gripper_width=self._read_gripper(now),
            host_time=self._seq_host_time,
            seq=seq,
            robot_time=robot_time,
            mode=SAFETY_MODES.get(safety_mode, str(safety_mode)),
        )

    def controller_status(self) -> ControllerStatus:
        recv, ctrl = self._require()

        def ask(d):
            return str(d.getRobotModel()), str(d.robotmode()), str(d.safetystatus()), bool(d.isInRemoteControl())

        model, robot_mode, safety, remote = self._dashboard(ask, "reading the controller's status")
        version = polyscope_version(self._polyscope)
        return ControllerStatus(
            model=model.strip(),
            expected_model=VENDOR_MODELS.get(self.robot.name, self.robot.name.upper()),
            software=self._polyscope,
            robot_mode=robot_mode.split(":")[-1].strip(),
            safety_status=safety.split(":")[-1].strip(),
            remote_control=remote,
            payload_kg=float(recv.getPayload()),
            torque_control=None if version is None else version >= polyscope_version(self.cfg.torque_min_polyscope),
        )

    def joint_dynamics(self, state: RobotState) -> JointDynamics | None:
        """The controller's own model (PolyScope >= 5.23); None where it has none (the layer then fades)."""
        if not (self.cfg.torque_control and self._has_model):
            return None
        return self._model_at(np.asarray(state.q), np.asarray(state.dq))

    def _model_at(self, q: np.ndarray, dq: np.ndarray) -> JointDynamics:
        _, ctrl = self._require()
        n = self.robot.n_joints
        mass = np.asarray(ctrl.getMassMatrix(q.tolist(), False), dtype=np.float64)
        coriolis = np.asarray(ctrl.getCoriolisAndCentrifugalTorques(q.tolist(), dq.tolist()), dtype=np.float64)
        if mass.size != n * n:
            raise DriverError(f"ur: the controller's mass matrix has {mass.size} entries, expected {n * n}")
        mass = mass.reshape(n, n)
        mobility = np.linalg.inv(mass)
        return JointDynamics(mass=mass, mobility=mobility, drift=-mobility @ coriolis)

    # -- commands ----------------------------------------------------------------------------------
    def set_joint_velocity(self, dq: Sequence[float]) -> None:
        target = self._vector(dq, "joint velocity").tolist()
        _, ctrl = self._require()
        self._refuse_if_faulted()
        with self._io:
            self._mode = "velocity"
            if not ctrl.speedJ(target, self._speedj_acceleration, 0.0):
                self._latch("robot_error", "speedJ rejected by the controller", self.clock.now())
            ctrl.kickWatchdog()

    def set_joint_torque(self, tau: Sequence[float]) -> None:
        torque = self._vector(tau, "joint torque").tolist()
        if not self.cfg.torque_control:
            raise DriverError("ur: torque control is disabled (env.hardware.driver.torque_control)")
        _, ctrl = self._require()
        self._refuse_if_faulted()
        with self._io:
            if self._mode == "velocity":
                ctrl.speedStop(self.cfg.stop_deceleration)
            self._mode = "torque"
            if not ctrl.directTorque(torque):
                self._latch("robot_error", "directTorque rejected (needs PolyScope >= 5.23)", self.clock.now())
            ctrl.kickWatchdog()

    def set_gripper(self, width: float) -> None:
        if self.gripper is None:
            return  # no gripper configured (env.hardware.driver.gripper: false)
        self._refuse_if_faulted()
        try:
            self.gripper.move_to_width(width)
        except DriverError as exc:
            self._latch("gripper", str(exc), self.clock.now())
            raise

    def _read_gripper(self, now: float) -> float:
        """The finger opening, read at most every 50 ms (each read is a round trip to the URCap server)."""
        if self.gripper is None:
            return 0.0
        if now - self._gripper_read_at >= 0.05:
            try:
                status = self.gripper.status()
            except DriverError as exc:
                self._latch("gripper", str(exc), now)
                return self._gripper_width
            self._gripper_width = self.gripper.position_to_width(status["pos"])
            self._gripper_read_at = now
            if status["flt"]:
                self._latch("gripper", self.gripper.fault() or f"gripper fault {status['flt']}", now)
        return self._gripper_width

    def stop(self) -> None:
        ctrl = self._ctrl
        if ctrl is None:
            return
        with self._io:
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
        answer = ""
        if int(recv.getSafetyMode()) == 3:

            def unlock(dashboard):
                dashboard.closeSafetyPopup()
                return str(dashboard.unlockProtectiveStop() or "")

            answer = self._dashboard(unlock, "unlocking the protective stop")
        mode = int(recv.getSafetyMode())
        if mode not in _OK_SAFETY_MODES:
            said = f" (the controller said: {answer!r})" if answer else ""
            raise DriverError(f"ur: controller still in {SAFETY_MODES.get(mode, mode)}{said}; clear it on the pendant")
        robot_mode = int(recv.getRobotMode())
        if robot_mode != _RUNNING:
            raise DriverError(f"ur: robot mode {ROBOT_MODES.get(robot_mode, robot_mode)}, not RUNNING: power on and release the brakes on the pendant")
        if not ctrl.isProgramRunning() and not ctrl.reuploadScript():
            raise DriverError("ur: could not restart the RTDE control script")
        if not ctrl.setWatchdog(1.0 / self.command_hold_s):
            raise DriverError("ur: the controller refused to arm the RTDE watchdog")
        if self.gripper is not None:
            if not self.gripper.is_connected:
                self.gripper.connect()
            self.gripper.activate()
            problem = self.gripper.fault()
            if problem:
                raise DriverError(f"ur: the gripper still reports {problem}")
            self._gripper_read_at = -np.inf
        self._mode = None
        self._clear_fault()

    def _require(self):
        if self._ctrl is None or self._recv is None:
            raise DriverError(f"ur: not connected to {self.host}")
        if not (self._ctrl.isConnected() and self._recv.isConnected()):
            self._latch("disconnected", "RTDE connection lost", self.clock.now())
            raise DriverError(f"ur: RTDE connection to {self.host} lost")
        return self._recv, self._ctrl
