"""The robot driver interface every arm backend implements, and the state it reports.

A driver is a thin, honest adapter: it forwards commands to the vendor library, reports state with a
host monotonic timestamp and a sequence number (so staleness is visible), and latches the faults the
vendor reports. It never clears a robot error by itself: `reset()` is the explicit recovery request.
Limits and interventions live in `hardware.safety`, which wraps any driver.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from robolearn.robots import RobotDescription


class DriverError(RuntimeError):
    """A driver operation failed; the message names the backend and what to check."""


class DriverConnectError(DriverError):
    """Could not connect (unreachable, refused, or timed out)."""


class DriverFaultError(DriverError):
    """A command was refused because the driver has a latched fault."""


@dataclass(frozen=True)
class DriverFault:
    kind: str  # disconnected | reflex | robot_error | signal_timeout | stale_state | ...
    message: str
    time: float  # host monotonic time it was latched


class RobotState:
    """One sample of the arm. Arrays are float64 and owned by the state (drivers hand out copies)."""

    __slots__ = ("dq", "gripper_width", "host_time", "mode", "q", "robot_time", "seq", "tau")

    def __init__(self, q, dq, tau, gripper_width: float, host_time: float, seq: int, robot_time: float | None = None, mode: str = ""):
        self.q = q  # rad
        self.dq = dq  # rad/s
        self.tau = tau  # N·m, measured joint torque
        self.gripper_width = gripper_width  # m, both fingers together
        self.host_time = host_time  # host monotonic time the sample was taken (s)
        self.seq = seq  # increases with every new sample from the robot; equal seq = same sample
        self.robot_time = robot_time  # the controller's own clock (s), when it reports one
        self.mode = mode  # the controller's mode as the vendor names it

    def __repr__(self) -> str:
        return f"RobotState(seq={self.seq}, host_time={self.host_time:.4f}, q={np.round(self.q, 4).tolist()})"


@dataclass(frozen=True)
class JointDynamics:
    """The arm's joint-space dynamics at one state, to predict its motion under a torque command:
    ddq ~= mobility @ tau + drift, with tau on top of the controller's gravity compensation."""

    mass: np.ndarray  # (n, n) M(q), kg·m^2
    mobility: np.ndarray  # (n, n) M(q)^-1: joint acceleration per N·m
    drift: np.ndarray  # (n,) rad/s^2: the acceleration with no torque commanded (Coriolis, damping)


@dataclass(frozen=True)
class ControllerStatus:
    """What a controller says about itself beyond the joint state, for pre-flight to judge."""

    model: str  # as the vendor names it (e.g. "UR5")
    expected_model: str  # what the configured robot description should be called by the vendor
    software: str  # the controller's software version
    robot_mode: str  # e.g. RUNNING, POWER_OFF
    safety_status: str  # e.g. NORMAL, PROTECTIVE_STOP
    remote_control: bool | None  # None where the vendor has no such mode
    payload_kg: float | None  # the payload set in the controller's installation, where it reports one
    torque_control: bool | None  # direct torque control available on this controller (None: not asked)


class RobotDriver(ABC):
    kind: ClassVar[str]
    supports_torque: ClassVar[bool] = True
    # The fault kind the vendor's own watchdog leaves behind when it stops the arm as designed (a UR's
    # RTDE watchdog ends the control script); None: its stop leaves no fault. Pre-flight's self-test
    # expects exactly this one.
    vendor_stop_fault: ClassVar[str | None] = None

    def __init__(self, robot: RobotDescription, command_hold_s: float):
        self.robot = robot
        # The vendor stops the arm when a command is older than this (see DriverConfig.command_hold_s).
        self.command_hold_s = command_hold_s
        self._fault: DriverFault | None = None
        self._fault_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------
    @abstractmethod
    def connect(self) -> None:
        """Connect within the configured timeout or raise DriverConnectError."""

    @abstractmethod
    def close(self) -> None:
        """Stop the arm if moving and release the connection. Safe to call twice."""

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    # -- state -------------------------------------------------------------------------------------
    @abstractmethod
    def read_state(self) -> RobotState:
        """The latest state; raises DriverError when the robot cannot be read."""

    @property
    def fault(self) -> DriverFault | None:
        """The first fault latched since the last successful `reset()`, or None."""
        return self._fault

    @property
    def reported_limits(self) -> dict[str, np.ndarray] | None:
        """Limits the vendor library enforces (e.g. `dq_max`), once connected; None if it reports none."""
        return None

    def controller_status(self) -> ControllerStatus | None:
        """The controller's own report (mode, safety status, payload, ...), once connected; None if the
        backend has none. Pre-flight judges it."""
        return None

    def joint_dynamics(self, state: RobotState) -> JointDynamics | None:
        """The model at `state` (the last one read), for the safety layer's torque prediction; None when
        the backend has none (the layer then only damps torque near the speed limit)."""
        return None

    # -- commands ----------------------------------------------------------------------------------
    @abstractmethod
    def set_joint_velocity(self, dq: Sequence[float]) -> None:
        """Joint velocities (rad/s), held by the vendor for at most `command_hold_s`."""

    @abstractmethod
    def set_joint_torque(self, tau: Sequence[float]) -> None:
        """Joint torques (N·m) on top of the controller's gravity compensation."""

    @abstractmethod
    def set_gripper(self, width: float) -> None:
        """Target finger opening (m); returns at once, the gripper moves on its own."""

    @abstractmethod
    def stop(self) -> None:
        """Bring the arm to rest within the vendor's limits and hold. Allowed in any state."""

    @abstractmethod
    def reset(self) -> None:
        """Explicit recovery: clear the vendor's error state. Raises DriverError if it cannot."""

    # -- helpers for backends ----------------------------------------------------------------------
    def _latch(self, kind: str, message: str, now: float) -> DriverFault:
        with self._fault_lock:
            if self._fault is None:
                self._fault = DriverFault(kind, f"{self.kind}: {message}", now)
            return self._fault

    def _clear_fault(self) -> None:
        with self._fault_lock:
            self._fault = None

    def _connected_again(self) -> None:
        """A fresh connection ends a 'disconnected' fault; any other robot error stays latched."""
        with self._fault_lock:
            if self._fault is not None and self._fault.kind == "disconnected":
                self._fault = None

    def _refuse_if_faulted(self) -> None:
        fault = self._fault
        if fault is not None:
            raise DriverFaultError(f"{fault.message} (latched; commands refused until an explicit reset)")

    def _vector(self, values: Sequence[float], what: str) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (self.robot.n_joints,):
            raise DriverError(f"{self.kind}: {what} needs {self.robot.n_joints} values, got shape {arr.shape}")
        return arr


def call_with_timeout(fn: Callable[[], Any], timeout_s: float, what: str, hint: str, discard: Callable[[Any], None] | None = None) -> Any:
    """Run a blocking vendor call in a helper thread; give up after `timeout_s`.

    A result that arrives after the caller gave up is passed to `discard` so it does not linger.
    """
    box: dict[str, Any] = {}
    abandoned = threading.Event()

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
            return
        if abandoned.is_set():
            if discard is not None:
                discard(result)
        else:
            box["result"] = result

    thread = threading.Thread(target=target, name=f"connect:{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        abandoned.set()
        raise DriverConnectError(f"{what}: no answer within {timeout_s:.1f} s ({hint})")
    if "error" in box:
        exc = box["error"]
        raise DriverConnectError(f"{what}: {type(exc).__name__}: {exc}") from None
    return box["result"]
