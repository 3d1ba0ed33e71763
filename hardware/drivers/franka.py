"""Franka Panda / FR3 backend on franky-control (libfranka underneath; the 1 kHz loop stays in C++).

- Velocity: each command is a `JointVelocityMotion` held for `command_hold_s`; a newer one takes over
  seamlessly, and without one the motion ends and the arm comes to rest (the vendor-side watchdog).
- Torque: one `SimpleTorqueMotion` per stretch of torque commands, updated with `set_torque`; its
  `signal_timeout` (= `command_hold_s`) aborts the motion when torques stop arriving.
- Motion errors (reflexes, network loss, signal timeouts) surface from franky's motion thread; they are
  latched and never cleared here except by `reset()`, which calls `recover_from_errors()` on request.
- Connecting is time-bound: a second client to a robot (or franky-sim) that already has one blocks
  forever, so the constructor runs in a helper thread that is abandoned on timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from hardware.config import FrankaDriverConfig
from hardware.drivers.base import DriverError, DriverFaultError, JointDynamics, RobotDriver, RobotState, call_with_timeout
from hardware.timing import Clock
from robolearn.robots import RobotDescription


def import_franky():
    try:
        import franky
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise DriverError(f"franka driver needs franky-control (pip install franky-control): {exc}") from None
    return franky


class FrankaDriver(RobotDriver):
    kind = "franka"

    def __init__(self, robot: RobotDescription, clock: Clock, cfg: FrankaDriverConfig, *, soft_limits: tuple[Sequence[float], Sequence[float]] | None = None):
        super().__init__(robot, cfg.command_hold_s)
        if robot.n_joints != 7:
            raise DriverError(f"franka: robot {robot.name!r} has {robot.n_joints} joints, a Franka arm has 7")
        self.cfg = cfg
        self.clock = clock
        self.host = cfg.host
        # Soft joint limits for franky's own joint-limit repulsion in torque mode.
        self._soft_limits = soft_limits if soft_limits is not None else (None, None)
        self._hold_ms = max(1, int(round(cfg.command_hold_s * 1000)))
        self._franky = None
        self._robot = None
        self._link_lost = False
        self._signal: str | None = None  # "velocity" | "torque": franky cannot switch while moving
        self._torque_motion = None
        self._last_seq = -1
        self._seq_host_time = 0.0
        self._franky_state = None  # the last sample as franky gives it: its model reads the same one
        self._gripper = None
        self._gripper_thread: threading.Thread | None = None
        self._gripper_wake = threading.Condition()
        self._gripper_target: float | None = None
        self._gripper_stop = False
        self._width = robot.gripper_max_width
        self._limits: dict[str, np.ndarray] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def connect(self) -> None:
        franky = self._franky = import_franky()
        self.close()
        realtime = franky.RealtimeConfig.Enforce if self.cfg.require_realtime_kernel else franky.RealtimeConfig.Ignore
        hint = "another client already connected? robot off, unreachable, or FCI not enabled in Desk?"
        # The factor smooths accelerations and jerks; velocities are bounded by the safety layer, and a
        # velocity factor would silently cap the commands it already checked.
        rdf = self.cfg.relative_dynamics_factor
        dynamics = franky.RelativeDynamicsFactor(1.0, rdf, rdf)
        self._robot = call_with_timeout(
            lambda: franky.Robot(self.host, relative_dynamics_factor=dynamics, realtime_config=realtime),
            self.cfg.connect_timeout_s,
            f"franka: connecting to {self.host}",
            hint,
            discard=lambda robot: None,  # dropping the reference disconnects it
        )
        self._robot.set_collision_behavior(self.cfg.collision_torque_threshold, self.cfg.collision_force_threshold)
        self._limits = {
            "dq_max": np.asarray(self._robot.joint_velocity_limit.max, dtype=np.float64),
            # What franky's motion generator will actually allow under the relative dynamics factor.
            "ddq_max": np.asarray(self._robot.joint_acceleration_limit.max, dtype=np.float64) * rdf,
            "jerk_max": np.asarray(self._robot.joint_jerk_limit.max, dtype=np.float64) * rdf,
        }
        self._link_lost = False
        self._signal = None
        self._torque_motion = None
        self._connected_again()
        if self.cfg.gripper:
            self._gripper = call_with_timeout(lambda: franky.Gripper(self.host), self.cfg.connect_timeout_s, f"franka: connecting to the gripper at {self.host}", hint)
            self._width = float(self._gripper.width)
            self._gripper_stop = False
            self._gripper_thread = threading.Thread(target=self._gripper_worker, name="franka-gripper", daemon=True)
            self._gripper_thread.start()

    def close(self) -> None:
        if self._gripper_thread is not None:
            with self._gripper_wake:
                self._gripper_stop = True
                self._gripper_wake.notify()
            self._gripper_thread.join(timeout=2.0)
            self._gripper_thread = None
        if self._robot is not None and not self._link_lost:
            self.stop()
            try:
                self._robot.join_motion(1.0)
            except Exception:  # noqa: BLE001 - closing anyway; the fault is already latched if it matters
                pass
        self._robot = None
        self._gripper = None

    @property
    def is_connected(self) -> bool:
        return self._robot is not None and not self._link_lost

    @property
    def reported_limits(self) -> dict[str, np.ndarray] | None:
        return self._limits

    # -- state -------------------------------------------------------------------------------------
    def read_state(self) -> RobotState:
        robot = self._require()
        self._poll_motion()
        try:
            s = robot.state
        except Exception as exc:  # noqa: BLE001 - libfranka raises several unrelated types
            self._on_motion_error(exc)
            raise DriverError(f"franka: cannot read state: {exc}") from None
        self._franky_state = s
        now = self.clock.now()
        robot_time = s.time.to_sec()
        seq = int(round(robot_time * 1000.0))
        # A sample is as old as the first time we saw its controller tick: a dead link shows as ageing.
        if seq != self._last_seq:
            self._last_seq = seq
            self._seq_host_time = now
        mode = s.robot_mode.name
        if mode == "Reflex":
            self._latch("reflex", f"reflex: {s.current_errors} (last motion: {s.last_motion_errors})", now)
        elif mode == "UserStopped":
            self._latch("user_stop", "the user stop (external activation device) is pressed", now)
        return RobotState(
            q=np.array(s.q, dtype=np.float64),
            dq=np.array(s.dq, dtype=np.float64),
            tau=np.array(s.tau_J, dtype=np.float64),
            gripper_width=self._width,
            host_time=self._seq_host_time,
            seq=seq,
            robot_time=robot_time,
            mode=mode,
        )

    def joint_dynamics(self, state: RobotState) -> JointDynamics:
        """libfranka's model (with the configured load) at the last sample read: mass matrix and Coriolis."""
        robot, s = self._require(), self._franky_state
        if s is None:
            raise DriverError("franka: no state read yet, so no model to predict torque commands with")
        try:
            mass = np.asarray(robot.model.mass(s), dtype=np.float64).reshape(7, 7)
            coriolis = np.asarray(robot.model.coriolis(s), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - libfranka raises several unrelated types
            raise DriverError(f"franka: the dynamics model failed: {type(exc).__name__}: {exc}") from None
        mobility = np.linalg.inv(mass)
        return JointDynamics(mass=mass, mobility=mobility, drift=-(mobility @ coriolis))

    # -- commands ----------------------------------------------------------------------------------
    def set_joint_velocity(self, dq: Sequence[float]) -> None:
        target = self._vector(dq, "joint velocity")
        robot = self._ready_for("velocity")
        franky = self._franky
        self._move(robot, franky.JointVelocityMotion(target, duration=franky.Duration(self._hold_ms)))

    def set_joint_torque(self, tau: Sequence[float]) -> None:
        torque = self._vector(tau, "joint torque")
        robot = self._ready_for("torque")
        if self._torque_motion is None:
            lower, upper = self._soft_limits
            motion = self._franky.SimpleTorqueMotion(
                initial_torque=torque,
                signal_timeout=self.command_hold_s,
                lower_joint_limits=None if lower is None else np.asarray(lower, dtype=np.float64),
                upper_joint_limits=None if upper is None else np.asarray(upper, dtype=np.float64),
            )
            self._move(robot, motion)
            self._torque_motion = motion
        else:
            self._torque_motion.set_torque(torque)

    def set_gripper(self, width: float) -> None:
        if self._gripper is None:
            return
        with self._gripper_wake:
            self._gripper_target = min(max(float(width), 0.0), self.robot.gripper_max_width)
            self._gripper_wake.notify()

    def stop(self) -> None:
        robot = self._robot
        if robot is None or self._link_lost or self._signal is None:
            return
        franky = self._franky
        try:
            if self._signal == "torque":
                robot.move(franky.TorqueStopMotion(), asynchronous=True)
            else:
                robot.move(franky.JointVelocityStopMotion(), asynchronous=True)
        except Exception as exc:  # noqa: BLE001 - stop is best effort; the held command expires anyway
            self._on_motion_error(exc)
        self._torque_motion = None

    def reset(self) -> None:
        robot = self._robot
        if robot is None or self._link_lost:
            raise DriverError(f"franka: cannot recover, not connected to {self.host}; call connect() first")
        try:
            robot.join_motion(0.0)  # collect any pending motion exception before recovering
        except Exception:  # noqa: BLE001 - it is what we are recovering from
            pass
        if not robot.recover_from_errors():
            raise DriverError(f"franka: error recovery failed; robot errors: {robot.state.current_errors}")
        self._signal = None
        self._torque_motion = None
        self._clear_fault()

    # -- internals ---------------------------------------------------------------------------------
    def _require(self):
        if self._robot is None:
            raise DriverError(f"franka: not connected to {self.host}")
        if self._link_lost:
            raise DriverError(f"franka: connection to {self.host} lost")
        return self._robot

    def _ready_for(self, signal: str):
        robot = self._require()
        self._poll_motion()
        self._refuse_if_faulted()
        if self._signal not in (None, signal):
            # franky cannot change the control signal while a motion runs: stop it and wait.
            self.stop()
            try:
                robot.join_motion(1.0)
            except Exception as exc:  # noqa: BLE001
                self._on_motion_error(exc)
                self._refuse_if_faulted()
            self._torque_motion = None
        self._signal = signal
        return robot

    def _move(self, robot, motion) -> None:
        try:
            robot.move(motion, asynchronous=True)
        except Exception as exc:  # noqa: BLE001 - a pending motion error surfaces here too
            self._on_motion_error(exc)
            raise DriverFaultError(str(self._fault.message if self._fault else exc)) from None

    def _poll_motion(self) -> None:
        """Surface an exception from franky's motion thread as a latched fault."""
        robot = self._robot
        if robot is None:
            return
        try:
            if robot.join_motion(0.0) and self._signal == "torque":
                self._torque_motion = None  # the torque motion ended (stop motion finished)
        except Exception as exc:  # noqa: BLE001 - classified below
            self._on_motion_error(exc)

    def _on_motion_error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        now = self.clock.now()
        self._torque_motion = None
        if name == "NetworkException":
            self._link_lost = True
            self._latch("disconnected", f"connection lost: {exc}", now)
        elif name == "TorqueSignalTimeoutException":
            self._latch("signal_timeout", str(exc), now)
        elif name == "ControlException":
            self._latch("reflex", f"motion aborted by the controller: {exc}", now)
        else:
            self._latch("robot_error", f"{name}: {exc}", now)

    def _gripper_worker(self) -> None:
        """Runs gripper moves one at a time (each blocks until done), always toward the newest target."""
        sent: float | None = None
        while True:
            with self._gripper_wake:
                # Wait for a target more than 2 mm from the last one sent (the env sends one every step).
                while not self._gripper_stop and (self._gripper_target is None or (sent is not None and abs(self._gripper_target - sent) < 0.002)):
                    self._gripper_wake.wait()
                if self._gripper_stop:
                    return
                target = self._gripper_target
            try:
                if target < self._width - 0.002:
                    # Closing may meet the kettle handle: grasp tolerates stopping anywhere on the way.
                    self._gripper.grasp(target, self.cfg.gripper_speed, self.cfg.gripper_force, epsilon_inner=0.08, epsilon_outer=0.08)
                else:
                    self._gripper.move(target, self.cfg.gripper_speed)
                self._width = float(self._gripper.width)
            except Exception as exc:  # noqa: BLE001 - a failing gripper is a fault of the arm
                self._latch("gripper", f"gripper: {type(exc).__name__}: {exc}", self.clock.now())
            sent = target
