"""A deterministic simulated arm for tests and dry runs, with hooks to inject the faults real arms have.

The arm integrates commands exactly (closed form, no time stepping) on the clock it is given, so on a
`VirtualClock` a run repeats bit for bit, and on the wall clock it behaves like a robot in real time.
Velocity commands are tracked at the datasheet acceleration; torques act on a damped, gravity-
compensated inertia per joint. Like a Franka, it stops with a reflex when a joint leaves its range or
exceeds its velocity limit, holds each command for `command_hold_s` only (its vendor watchdog), and in
torque mode faults when the torque signal stops.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence

import numpy as np

from hardware.config import FakeDriverConfig
from hardware.drivers.base import DriverConnectError, DriverError, JointDynamics, RobotDriver, RobotState
from hardware.drivers.joint_motion import damped_inertia, track_velocity
from hardware.timing import Clock
from robolearn.robots import RobotDescription

_IDLE, _VELOCITY, _TORQUE = "idle", "velocity", "torque"


class FakeDriver(RobotDriver):
    kind = "fake"

    def __init__(self, robot: RobotDescription, clock: Clock, cfg: FakeDriverConfig | None = None, *, soft_limits=None):
        # soft_limits: the fake has no vendor-side joint-limit handling (it reflexes at the datasheet range).
        cfg = cfg if cfg is not None else FakeDriverConfig()
        super().__init__(robot, cfg.command_hold_s)
        n = robot.n_joints
        self.cfg = cfg
        self.clock = clock
        self.latency_s = float(cfg.latency_s)
        self.has_gripper = cfg.gripper
        self._gripper_speed = float(cfg.gripper_speed)
        initial_q, inertia, damping = cfg.initial_q, cfg.inertia[:n], cfg.damping[:n]
        q0 = robot.home if initial_q is None else initial_q
        self._q = self._vector(q0, "initial_q").copy()
        if np.any(self._q < robot.q_min) or np.any(self._q > robot.q_max):
            raise DriverError(f"fake: initial_q {self._q.tolist()} is outside the {robot.name} joint range")
        self._inertia = self._vector(inertia, "inertia")
        self._damping = self._vector(damping, "damping")
        self._dq = np.zeros(n)
        self._target = np.zeros(n)  # velocity mode: commanded rad/s
        self._tau = np.zeros(n)  # torque mode: commanded N·m
        self._mode = _IDLE
        self._width = robot.gripper_max_width
        self._width_target = self._width
        self._t = clock.now()
        self._command_time: float | None = None  # when the active command took effect (vendor watchdog)
        self._pending: deque[tuple[float, str, object]] = deque()
        self._lock = threading.RLock()
        self._connected = False
        # Fault hooks.
        self._link_up = True
        self._frozen_state: RobotState | None = None
        self._frozen_joints: set[int] = set()
        self._vendor_watchdog = True
        # What reached the arm, for tests to check what was (or was not) sent.
        self.commands_received = 0
        self.last_command: tuple[str, object] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def connect(self) -> None:
        with self._lock:
            if not self._link_up:
                raise DriverConnectError("fake: robot unreachable (link cut by a test hook)")
            self._advance(self.clock.now())
            self._connected = True
            self._connected_again()

    def close(self) -> None:
        with self._lock:
            if self._connected:
                self._advance(self.clock.now())
                self._set_velocity_target(np.zeros(self.robot.n_joints))
            self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    # -- state -------------------------------------------------------------------------------------
    def read_state(self) -> RobotState:
        with self._lock:
            self._require_link()
            if self._frozen_state is not None:
                return self._frozen_state
            now = self.clock.now()
            self._advance(now)
            tau = self._tau.copy() if self._mode == _TORQUE else np.zeros(self.robot.n_joints)
            return RobotState(
                q=self._q.copy(),
                dq=self._dq.copy(),
                tau=tau,
                gripper_width=self._width,
                host_time=now,
                seq=int(now * 1000.0),  # a 1 kHz controller tick
                robot_time=now,
                mode=self._mode,
            )

    @property
    def fault(self):
        with self._lock:
            if self._connected:
                self._advance(self.clock.now())  # faults (reflexes, signal timeouts) happen in simulated time
            return self._fault

    # -- commands ----------------------------------------------------------------------------------
    def joint_dynamics(self, state: RobotState) -> JointDynamics:
        """Its own model, exactly: a damped inertia per joint, no coupling."""
        return JointDynamics(mass=np.diag(self._inertia), mobility=np.diag(1.0 / self._inertia),
                             drift=-self._damping * np.asarray(state.dq) / self._inertia)

    def set_joint_velocity(self, dq: Sequence[float]) -> None:
        self._command(_VELOCITY, self._vector(dq, "joint velocity"))

    def set_joint_torque(self, tau: Sequence[float]) -> None:
        self._command(_TORQUE, self._vector(tau, "joint torque"))

    def set_gripper(self, width: float) -> None:
        if not self.has_gripper:
            return
        self._command("gripper", min(max(float(width), 0.0), self.robot.gripper_max_width))

    def stop(self) -> None:
        with self._lock:
            if not self._connected:
                return  # unreachable: the arm's own watchdog stops it
            self._advance(self.clock.now())
            self._pending.clear()
            self._set_velocity_target(np.zeros(self.robot.n_joints))
            self._command_time = None

    def reset(self) -> None:
        with self._lock:
            if not self._connected:
                raise DriverError("fake: cannot recover, robot not connected")
            self._advance(self.clock.now())
            self._clear_fault()
            self._pending.clear()
            self._set_velocity_target(np.zeros(self.robot.n_joints))
            self._command_time = None

    @property
    def at_rest(self) -> bool:
        """The simulated arm's true state (frozen-state hooks aside) is at rest."""
        with self._lock:
            self._advance(self.clock.now())
            return not np.any(self._dq)

    # -- fault hooks (tests and dry runs) ----------------------------------------------------------
    def cut_link(self) -> None:
        """The network to the arm goes down: reads and commands fail; the arm's own watchdog stops it."""
        with self._lock:
            self._advance(self.clock.now())
            self._link_up = False
            self._connected = False
            self._latch("disconnected", "connection to the robot lost", self.clock.now())

    def restore_link(self) -> None:
        """The network is back; the driver stays disconnected until someone calls connect()."""
        with self._lock:
            self._advance(self.clock.now())
            self._link_up = True

    def freeze_state(self) -> None:
        """Reads keep returning the current sample (same sequence number and timestamp)."""
        with self._lock:
            self._frozen_state = None
            self._frozen_state = self.read_state()

    def unfreeze_state(self) -> None:
        with self._lock:
            self._frozen_state = None

    def inject_reflex(self, message: str = "cartesian reflex: collision detected") -> None:
        """The controller aborts the motion and brakes, as a Franka reflex does."""
        with self._lock:
            self._advance(self.clock.now())
            self._brake()
            self._latch("reflex", message, self.clock.now())

    def freeze_joint(self, joint: int) -> None:
        """Joint `joint` stops following commands (a stuck brake or a jammed gear)."""
        with self._lock:
            self._advance(self.clock.now())
            self._frozen_joints.add(joint)
            self._dq[joint] = 0.0

    def unfreeze_joint(self, joint: int) -> None:
        with self._lock:
            self._advance(self.clock.now())
            self._frozen_joints.discard(joint)

    def break_vendor_watchdog(self) -> None:
        """The arm keeps executing stale commands forever (what a pre-flight check must catch)."""
        with self._lock:
            self._vendor_watchdog = False

    def move_by_hand(self, q: Sequence[float]) -> None:
        """An operator guides the arm to `q` (e.g. back inside its limits after a breach)."""
        with self._lock:
            self._advance(self.clock.now())
            self._q = self._vector(q, "q").copy()
            self._dq[:] = 0.0

    # -- simulation --------------------------------------------------------------------------------
    def _require_link(self) -> None:
        if not self._connected:
            raise DriverError("fake: robot not connected")

    def _command(self, kind: str, value) -> None:
        with self._lock:
            self._require_link()
            self._refuse_if_faulted()
            now = self.clock.now()
            self._advance(now)
            self.commands_received += 1
            self.last_command = (kind, value)
            if self.latency_s > 0:
                self._pending.append((now + self.latency_s, kind, value))
            else:
                self._apply(kind, value, now)

    def _apply(self, kind: str, value, t: float) -> None:
        if self._fault is not None:
            return  # a command in flight when the fault hit is dropped by the controller
        if kind == "gripper":
            self._width_target = value
            return
        if kind == _VELOCITY:
            self._set_velocity_target(value)
        else:
            self._mode = _TORQUE
            self._tau = value
        self._command_time = t

    def _set_velocity_target(self, target: np.ndarray) -> None:
        self._mode = _VELOCITY if np.any(target) else _IDLE
        self._target = target
        self._tau = np.zeros(self.robot.n_joints)

    def _brake(self) -> None:
        self._dq[:] = 0.0
        self._pending.clear()
        self._set_velocity_target(np.zeros(self.robot.n_joints))
        self._command_time = None

    def _advance(self, now: float) -> None:
        """Integrate from the last update to `now`, handling queued commands and the vendor watchdog."""
        while self._t < now or (self._pending and self._pending[0][0] <= now):
            t_next = now
            event = None
            if self._pending and self._pending[0][0] <= t_next:
                t_next, event = self._pending[0][0], "command"
            expiry = self._expiry()
            if expiry is not None and expiry <= t_next:
                t_next, event = expiry, "expiry"
            t_next = max(t_next, self._t)
            self._integrate(t_next - self._t, t_next)
            self._t = t_next
            if event == "command":
                _, kind, value = self._pending.popleft()
                self._apply(kind, value, t_next)
            elif event == "expiry":
                self._on_command_expired(t_next)
            elif event is None:
                break

    def _expiry(self) -> float | None:
        if not self._vendor_watchdog or self._command_time is None or self._mode == _IDLE:
            return None
        return self._command_time + self.command_hold_s

    def _on_command_expired(self, t: float) -> None:
        if self._mode == _TORQUE:
            self._latch("signal_timeout", f"no torque signal for {self.command_hold_s:.3f} s", t)
        # Velocity mode: the held command ends and the arm decelerates to rest, as a Franka motion does.
        self._set_velocity_target(np.zeros(self.robot.n_joints))
        self._command_time = None

    def _integrate(self, dt: float, t_end: float) -> None:
        if dt > 0:
            r = self.robot
            q0 = self._q.copy()
            if self._mode == _TORQUE:
                self._q, self._dq = damped_inertia(self._q, self._dq, self._tau, self._inertia, self._damping, dt)
            else:  # track the target velocity at the datasheet acceleration
                self._q, self._dq = track_velocity(self._q, self._dq, self._target, r.ddq_max, dt)
            for j in self._frozen_joints:
                self._q[j] = q0[j]
                self._dq[j] = 0.0
            self._check_reflexes(t_end)
        if self.has_gripper and self._width != self._width_target:
            step = self._gripper_speed * max(dt, 0.0)
            gap = self._width_target - self._width
            self._width = self._width_target if abs(gap) <= step else self._width + math.copysign(step, gap)

    def _check_reflexes(self, t: float) -> None:
        r = self.robot
        below, above = self._q < r.q_min, self._q > r.q_max
        if below.any() or above.any():
            joint = int(np.flatnonzero(below | above)[0])
            self._q = np.clip(self._q, r.q_min, r.q_max)
            self._brake()
            self._latch("reflex", f"joint {joint + 1} position limit violated", t)
        elif np.any(np.abs(self._dq) > r.dq_max):
            joint = int(np.flatnonzero(np.abs(self._dq) > r.dq_max)[0])
            self._brake()
            self._latch("reflex", f"joint {joint + 1} velocity limit violated", t)
