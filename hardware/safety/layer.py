"""The safety layer: every command that can move the arm passes through here, in this order.

1. Input check: non-finite or wrongly shaped -> fault, nothing sent.
2. Clamp to the configured velocity / torque limits. In torque mode the torque is also limited before it
   is sent: the driver's model predicts each joint's speed at the end of the command's hold, and no
   joint may end over its speed bound or faster toward a joint limit than it can brake from (without a
   model, torque along the motion fades out near the bound); a joint far over its limit latches.
3. Rate limit: acceleration and jerk for velocity commands, torque rate for torque commands.
4. Joint-limit margins: commands toward a limit taper to zero before the soft limit; past it is a breach.
5. Workspace box on the tool centre point, on where the tool will be: the look-ahead is the command held
   for the horizon, then braked at the acceleration limit, along the joints' curved path (a quadratic
   through its middle and end; a 2 mm graze allowed). Velocity commands heading out are scaled down
   (checked again after the rate limit: a blend still heading out brakes every joint at its limit);
   torque mode brakes every joint. A measured TCP outside the box (beyond a tolerance) is a breach.
   `hardware/safety/margin.py` measures how far the true tool goes past the box.
6. Watchdog: commands are expected one control period apart (`nominal_period`). While moving, a command
   older than the period is a deadline miss: counted (`deadline_misses`, a non-fatal event, once per
   command), and the last command stands (the vendor holds it for `command_hold_s`, 200 ms by
   default, past the 180 ms trip, and the workspace and joint-limit checks covered that whole hold; `LATE_SLACK` of a
   period absorbs wall-clock jitter). Older than the
   timeout (`watchdog_timeout_s`: above the period, within two periods with a poll) -> stop (the vendor
   ramps to rest), then fault. Ages count from the last command sent, as the vendor's own watchdog
   counts, so the policy's time and the loop's wait for its deadline both count. A thread checks it,
   independent of the policy loop; the vendor's own watchdog backs it up.
7. Latched e-stop: any fault stops the arm and latches; commands are ignored until an explicit
   `reset()`, which is refused while the cause remains. Robot errors are never cleared automatically.
   Every active fault is tracked until its own cause is gone (`faults`, a set keyed by cause, not the
   first one only): a camera that stalls while stale state is latched keeps the layer latched after the
   state is fresh again, and a refused reset leaves every fault in place.

Also latched: driver faults (reflexes, disconnects), stale robot state, a joint that stops following
its velocity command (tracking), and faults raised by others through `trigger_fault` (cameras, loop).
The velocity path is scalar Python over tuples (7 joints): no numpy, no allocation beyond a list; the
torque prediction uses numpy for its 7x7 products.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from hardware.drivers.base import DriverError, JointDynamics, RobotDriver
from hardware.safety.events import COUNTERS, SafetyEvent
from hardware.safety.kinematics import TcpKinematics
from hardware.safety.limits import SafetyLimits
from hardware.timing import Clock, set_realtime_priority

_VELOCITY, _TORQUE = "velocity", "torque"
# Torque mode: a joint measured this many times over its speed limit latches the e-stop.
OVERSPEED_FAULT = 1.25
# Workspace: the look-ahead path may graze a face by this much (m), so that a motion along a face (homing
# from a corner) is not stalled by the curvature of its path; what is past a face by more may only move back.
WORKSPACE_GRAZE = 0.002
# Watchdog: a command this fraction of a period later than one period after the last one is a deadline miss
# (the slack absorbs the policy's step-to-step jitter on the wall clock; a slower step is counted).
LATE_SLACK = 0.1


class ResetRefused(RuntimeError):
    """An explicit reset was refused because the cause of the fault is still present."""


class _ActiveFault:
    __slots__ = ("event", "still_active")

    def __init__(self, event: SafetyEvent, still_active: Callable[[], str | None] | None):
        self.event, self.still_active = event, still_active


class SafetyLayer:
    def __init__(
        self,
        driver: RobotDriver,
        limits: SafetyLimits,
        clock: Clock,
        *,
        watchdog_thread: bool = True,
        realtime_priority: int = 0,
        max_events: int = 1000,
    ):
        if limits.n != driver.robot.n_joints:
            raise ValueError(f"limits are for {limits.n} joints, the driver's robot has {driver.robot.n_joints}")
        self.driver = driver
        self.limits = limits
        self.clock = clock
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.events: deque[SafetyEvent] = deque(maxlen=max_events)  # recent history
        self._unread: list[SafetyEvent] = []  # since the last drain_events()
        self._kin = TcpKinematics(driver.robot)
        self._lock = threading.RLock()
        n = limits.n
        # Active faults by cause ("driver", "state", "camera:front", ...), in the order they latched. An
        # external fault brings its own check (is its cause still there?); the robot-side ones are checked
        # against the robot itself on reset.
        self._faults: dict[str, _ActiveFault] = {}
        self._mode: str | None = None  # mode of the last command sent; None after a hold
        self._prev = [0.0] * n  # last command sent
        self._prev_rate = [0.0] * n  # its rate of change (rad/s^2), for the jerk limit
        self._t_prev = 0.0  # when the last command was sent
        self._armed = False  # a motion command is in effect: the watchdog is watching
        self._late = False  # the command in effect has been counted as a deadline miss
        self._gripper_sent: float | None = None  # last gripper command that reached the driver (-1..1)
        self._lagging_since: list[float | None] = [None] * n
        self._seq, self._seq_since = None, 0.0  # the driver's sample number, and since when it has not changed
        self._stop_thread = threading.Event()
        self._thread: threading.Thread | None = None
        if watchdog_thread:
            self._thread = threading.Thread(target=self._watchdog_loop, name="safety-watchdog", daemon=True)
            self._thread.start()
            if realtime_priority > 0:
                try:
                    set_realtime_priority(realtime_priority, self._thread.native_id)
                except BaseException:
                    self.close()
                    raise

    # -- status ------------------------------------------------------------------------------------
    @property
    def latched(self) -> bool:
        return bool(self._faults)

    @property
    def fault(self) -> SafetyEvent | None:
        """The event that latched the e-stop (the first of the active faults), or None."""
        for active in list(self._faults.values()):
            return active.event
        return None

    @property
    def faults(self) -> list[SafetyEvent]:
        """Every active fault, the first first: each stays until its own cause is gone and a reset clears it."""
        return [active.event for active in list(self._faults.values())]

    @property
    def last_command(self) -> tuple[str, tuple[float, ...]] | None:
        """(mode, values) of the joint command in effect after this layer's filtering, as the driver
        received it; None after a hold or a fault (the arm is stopping or at rest). Teleop and
        intervention recording read it to store what was executed, not what was asked for."""
        with self._lock:
            return None if self._mode is None else (self._mode, tuple(self._prev))

    @property
    def last_gripper(self) -> float | None:
        """The last gripper command (-1 open ... +1 closed) that reached the driver, or None."""
        return self._gripper_sent

    def drain_events(self) -> list[SafetyEvent]:
        with self._lock:
            out, self._unread = self._unread, []
            return out

    # -- commands ----------------------------------------------------------------------------------
    def command(self, mode: str, values: Sequence[float]) -> bool:
        return self.command_velocity(values) if mode == _VELOCITY else self.command_torque(values)

    def _admit(self, values: Sequence[float], kind: str):
        """Count a command; (now, checked values, fresh state), or None when latched, malformed or
        without fresh robot state (the last two latch a fault)."""
        now = self.clock.now()
        self.counters["commands"] += 1
        if self._faults:
            self.counters["ignored_while_latched"] += 1
            return None
        checked = self._checked(values, now, kind)
        if checked is None:
            return None
        state = self._state(now)
        if state is None:
            return None
        return now, checked, state

    def command_velocity(self, dq: Sequence[float]) -> bool:
        """Joint velocities (rad/s). Returns True if a (possibly limited) command reached the driver."""
        with self._lock:
            admitted = self._admit(dq, "velocity")
            if admitted is None:
                return False
            now, v, state = admitted
            L = self.limits
            n = L.n
            q = state.q.tolist()
            if self._mode != _VELOCITY:
                # (Re)starting: rate limits count from how the arm actually moves now.
                self._prev = state.dq.tolist()
                self._prev_rate = [0.0] * n
            elif self._check_tracking(state.dq.tolist(), now):
                return False
            dt = self._interval(now, _VELOCITY)
            if dt is None:
                return False

            # 4./5. A joint past its soft limit or the TCP out of the box latches.
            p = self._position_ok(q, now)
            if p is None:
                return False
            # 2. Clamp, then 4. toward a joint limit taper to zero at the soft limit and never command more
            #    than can be covered within the horizon (one pass: both act joint by joint).
            vmax, reach, amax = L.velocity, self._kin.reach, L.acceleration
            qmin, qmax, zone, h = L.soft_q_min, L.soft_q_max, L.taper_zone, L.horizon
            clamped, tapered = [], []
            ahead = [0.0] * n  # each joint's travel if the command is held, then braked (the workspace look-ahead)
            travel = 0.0  # a bound on the TCP's displacement over it
            for i in range(n):
                x = v[i]
                if x > vmax[i]:
                    x = vmax[i]
                    clamped.append(i)
                elif x < -vmax[i]:
                    x = -vmax[i]
                    clamped.append(i)
                if x > 0.0:
                    room = qmax[i] - q[i]
                    if room < zone or room < x * h:
                        x = min(x * room / zone, room / h)
                        tapered.append(i)
                elif x < 0.0:
                    room = q[i] - qmin[i]
                    if room < zone or room < -x * h:
                        x = -min(-x * room / zone, room / h)
                        tapered.append(i)
                v[i] = x
                d = x * (h + abs(x) / (2.0 * amax[i]))
                ahead[i] = d
                travel += abs(d) * reach[i]
            # 5. Scale the command so the TCP stays in the box while it is held for the horizon and then
            #    braked at the acceleration limit (before the rate limit, so the two compose: the rate limit
            #    has the last word on acceleration, and braking at it from the next command on stays inside).
            scale = self._workspace_scale(q, p, ahead, travel)
            if scale < 1.0:
                for i in range(n):
                    v[i] *= scale
            # 3. Rate limit: acceleration, and change of acceleration (jerk), against the last command. The
            #    change is scaled as a whole (clipping joint by joint would bend the commanded direction);
            #    zero acceleration is always allowed, so the jerk limit never forces speeding up.
            prev, prev_rate, amax, jmax = self._prev, self._prev_rate, L.acceleration, L.jerk
            fraction = 1.0
            limited = []
            for i in range(n):
                a = (v[i] - prev[i]) / dt
                lo, hi = min(0.0, max(-amax[i], prev_rate[i] - jmax[i] * dt)), max(0.0, min(amax[i], prev_rate[i] + jmax[i] * dt))
                if a > hi:
                    fraction = min(fraction, hi / a)
                    limited.append(i)
                elif a < lo:
                    fraction = min(fraction, lo / a)
                    limited.append(i)
            # ... and 4. never more toward a limit than the horizon can cover (a hard cap, after it).
            rate = [0.0] * n
            for i in range(n):
                x = v[i]
                if fraction < 1.0:
                    x = prev[i] + (x - prev[i]) * fraction
                if x > 0.0 and x * h > qmax[i] - q[i]:
                    x = max(0.0, (qmax[i] - q[i]) / h)
                elif x < 0.0 and -x * h > q[i] - qmin[i]:
                    x = -max(0.0, (q[i] - qmin[i]) / h)
                v[i] = x
                rate[i] = (x - prev[i]) / dt
            if fraction < 1.0 and self._heading_out(q, p, v):
                # 5. again: the rate limit blended the box-scaled command with the last one (a large change on
                #    one joint holds back the braking of the others), and the blend heads out of the box. Every
                #    joint brakes at its own acceleration limit instead, as the look-ahead assumed it would.
                for i in range(n):
                    x = prev[i]
                    x = max(0.0, x - amax[i] * dt) if x > 0.0 else min(0.0, x + amax[i] * dt)
                    v[i] = x
                    rate[i] = (x - prev[i]) / dt
                scale = 0.0  # reported as clipped
            return self._send(_VELOCITY, v, rate, now, clamped, limited, tapered, scale)

    def _heading_out(self, q: list[float], p, v: list[float]) -> bool:
        """Velocity mode: does `v`'s look-ahead leave the box? (No FK while no face is within reach.)"""
        L = self.limits
        h, amax, reach = L.horizon, L.acceleration, self._kin.reach
        ahead = [x * (h + abs(x) / (2.0 * amax[i])) for i, x in enumerate(v)]
        return self._workspace_scale(q, p, ahead, sum(abs(d) * r for d, r in zip(ahead, reach))) < 1.0

    def command_torque(self, tau: Sequence[float]) -> bool:
        """Joint torques (N·m, on top of the controller's gravity compensation)."""
        with self._lock:
            admitted = self._admit(tau, "torque")
            if admitted is None:
                return False
            now, t, state = admitted
            L = self.limits
            n = L.n
            q, dq = state.q.tolist(), state.dq.tolist()
            if self._mode != _TORQUE:
                self._prev = [0.0] * n  # torque commands start from gravity compensation only
            dt = self._interval(now, _TORQUE)
            if dt is None:
                return False
            # 2. Clamp.
            tmax = L.torque
            clamped = []
            for i in range(n):
                if t[i] > tmax[i]:
                    t[i] = tmax[i]
                    clamped.append(i)
                elif t[i] < -tmax[i]:
                    t[i] = -tmax[i]
                    clamped.append(i)
            # 3. Torque rate.
            prev, rmax = self._prev, L.torque_rate
            limited = []
            for i in range(n):
                step = rmax[i] * dt
                if t[i] > prev[i] + step:
                    t[i] = prev[i] + step
                    limited.append(i)
                elif t[i] < prev[i] - step:
                    t[i] = prev[i] - step
                    limited.append(i)
            # 2b. Speed: a joint far over its speed limit latches (the vendor's stop then brakes at 1 kHz).
            vmax = L.velocity
            for i in range(n):
                if abs(dq[i]) > OVERSPEED_FAULT * vmax[i]:
                    self.counters["overspeed"] += 1
                    self._latch("clamp", "overspeed", f"joint {i + 1} at {dq[i]:.3f} rad/s, limit {vmax[i]:.3f} rad/s", now)
                    return False
            try:
                dynamics = self.driver.joint_dynamics(state)
                if dynamics is not None:
                    dynamics = _checked_dynamics(dynamics, n)
            except Exception as exc:  # any exception from a driver latches, and so does a model that is not usable
                self._driver_fault(_driver_message(exc), now)
                return False
            braked = []
            if dynamics is None:
                # No model to predict with: torque along the motion fades out from half the speed bound
                # to zero at it (a joint over it gets none), so the arm cannot be pushed through it.
                for i in range(n):
                    bound = vmax[i] * L.torque_speed_headroom
                    ratio = abs(dq[i]) / bound
                    if t[i] * dq[i] > 0.0 and ratio > 0.5:
                        t[i] *= max(0.0, 2.0 * (1.0 - ratio))
                        braked.append(i)
            # 4./5. A joint past its soft limit or the TCP out of the box latches.
            p = self._position_ok(q, now)
            if p is None:
                return False
            # 4. Torque toward a joint limit fades out over the taper zone (franky also repels from the
            #    soft limits at 1 kHz in torque mode).
            qmin, qmax, zone = L.soft_q_min, L.soft_q_max, L.taper_zone
            tapered = []
            for i in range(n):
                if t[i] > 0.0:
                    room = qmax[i] - q[i]
                elif t[i] < 0.0:
                    room = q[i] - qmin[i]
                else:
                    continue
                if room < zone:
                    t[i] *= room / zone
                    tapered.append(i)
            if dynamics is None:
                # 5. Workspace: if the TCP is heading out of the box at its measured speed (held for the
                #    horizon, then braked), stop pushing.
                scale = self._workspace_scale(q, p, self._ahead(dq, dq))
                if scale < 1.0:
                    t = [0.0] * n
            else:
                # 2c. Prediction, the last word on speed: the model says where each joint's speed will be when
                #     the command has been held for the horizon; the torque is changed so that no joint ends
                #     over its speed bound or faster toward a joint limit than it can brake from.
                predicted = self._predicted_torque(q, dq, t, dynamics)
                if predicted:
                    t, braked = predicted
                # 5. Workspace, on the measured and on the predicted speeds (the speed moves between the two
                #    over the hold, and a model can be wrong): heading out of the box at either, every joint
                #    brakes to rest over the hold instead.
                end = (np.asarray(dq) + L.horizon * (dynamics.mobility @ np.asarray(t) + dynamics.drift)).tolist()
                scale = self._workspace_scale(q, p, self._ahead(dq, dq))
                if scale == 1.0:
                    scale = self._workspace_scale(q, p, self._ahead(dq, end))
                if scale < 1.0:
                    t = self._braking_torque(dq, dynamics)
            return self._send(_TORQUE, t, None, now, clamped, limited, tapered, scale, braked)

    def _braking_torque(self, dq: list[float], dynamics) -> list[float]:
        """The torque that brakes every joint toward rest, within the torque limits: at least at the
        acceleration limit (what the workspace look-ahead assumes) or to rest over the horizon if that is
        harder, and never past rest within one period (a slow joint stops within it instead of creeping)."""
        L = self.limits
        h, period, amax, tmax = L.horizon, L.nominal_period, L.acceleration, L.torque
        ddq = [-math.copysign(min(max(amax[i], abs(v) / h), abs(v) / period), v) for i, v in enumerate(dq)]
        tau = dynamics.mass @ (np.asarray(ddq) - dynamics.drift)
        return [min(tmax[i], max(-tmax[i], float(tau[i]))) for i in range(L.n)]

    def _predicted_torque(self, q: list[float], dq: list[float], t: list[float], dynamics) -> tuple[list[float], list[int]] | tuple:
        """Torque mode: with ddq = mobility @ tau + drift held over the horizon h, each joint's speed at the
        end, v = dq + h * ddq, must stay within [-down, up]: the speed bound (a headroom fraction of the
        velocity limit for model error), and toward a soft joint limit the speed it can still brake from at
        the acceleration limit over the room left at the end of the hold. Joints whose predicted
        acceleration leaves that window get exactly the acceleration at its edge, the others keep theirs:
        tau += M (ddq_allowed - ddq). Torque limits still apply after it. () when nothing changes."""
        L = self.limits
        h = L.horizon
        pushed = (dynamics.mobility @ np.asarray(t)).tolist()  # Python floats for the per-joint loop
        drift = dynamics.drift.tolist()
        change = [0.0] * L.n
        joints = []
        for i in range(L.n):
            bound = L.velocity[i] * L.torque_speed_headroom
            up = min(bound, _brakeable_speed(L.soft_q_max[i] - q[i] - 0.5 * h * dq[i], L.acceleration[i], h))
            down = min(bound, _brakeable_speed(q[i] - L.soft_q_min[i] + 0.5 * h * dq[i], L.acceleration[i], h))
            hi, lo = (up - dq[i]) / h, (-down - dq[i]) / h
            # A drift that would help (damping, friction) fades as the joint slows, so it is not counted on:
            # only the part of it that pushes toward each bound is.
            a_up, a_down = pushed[i] + max(0.0, drift[i]), pushed[i] + min(0.0, drift[i])
            if a_up > hi:
                change[i] = hi - a_up
                joints.append(i)
            elif a_down < lo:
                change[i] = lo - a_down
                joints.append(i)
        if not joints:
            return ()
        tmax = L.torque
        tau = np.asarray(t) + dynamics.mass @ np.asarray(change)
        return [min(tmax[i], max(-tmax[i], float(tau[i]))) for i in range(L.n)], joints

    def command_gripper(self, command: float) -> bool:
        """Gripper in the contract's units: -1 open ... +1 closed."""
        with self._lock:
            now = self.clock.now()
            self.counters["commands"] += 1
            if self._faults:
                self.counters["ignored_while_latched"] += 1
                return False
            try:
                g = float(command)
            except (TypeError, ValueError):
                g = math.nan
            if not math.isfinite(g):
                self.counters["input_rejected"] += 1
                self._latch("input", "rejected", f"non-numeric or non-finite gripper command {command!r}", now)
                return False
            g = min(1.0, max(-1.0, g))
            try:
                self.driver.set_gripper(self.driver.robot.gripper_max_width * (1.0 - g) / 2.0)
            except Exception as exc:  # any exception from a driver latches, not only DriverError
                self._driver_fault(_driver_message(exc), now)
                return False
            self.counters["sent"] += 1
            self._gripper_sent = g
            return True

    def hold(self) -> None:
        """Stop and hold the arm; the watchdog disarms (holding is a safe state). Allowed when latched."""
        with self._lock:
            self.counters["holds"] += 1
            self._disarm()
            try:
                self.driver.stop()
            except Exception as exc:
                self._driver_fault(f"stop failed: {_driver_message(exc)}", self.clock.now())

    def read_state(self):
        """The driver's state, checked for staleness and driver faults (latching as commands do)."""
        with self._lock:
            now = self.clock.now()
            return self._state(now)

    # -- faults ------------------------------------------------------------------------------------
    def trigger_fault(self, layer: str, message: str, still_active: Callable[[], str | None] | None = None,
                      cause: str | None = None) -> None:
        """Latch a fault raised outside the layer (camera, control loop, operator). `still_active`
        returns a reason while the cause persists; reset is refused until it returns None. `cause` keys
        the fault (default: the layer): one entry per cause, so a second camera's fault is its own."""
        with self._lock:
            key = cause or layer
            if key not in self._faults:
                self.counters["external_faults"] += 1
            self._latch(layer, "fault", message, self.clock.now(), cause=key, still_active=still_active)

    def poll(self) -> None:
        """Watchdog and driver checks; the watchdog thread calls this every `watchdog_poll` seconds
        (on a virtual clock, the loop calls it instead)."""
        with self._lock:
            if self._faults:
                return
            now = self.clock.now()
            if self._armed:
                age = now - self._t_prev  # from the last command: the policy's time counts, kicks do not extend it
                L = self.limits
                if age > L.watchdog_timeout:
                    self.counters["watchdog_trips"] += 1
                    self._latch("watchdog", "tripped", f"no command for {age * 1000:.0f} ms: commands are due every "
                                f"{L.nominal_period * 1000:.0f} ms and may be late until {L.watchdog_timeout * 1000:.0f} ms "
                                "(watchdog_timeout_s); the policy or the control loop stopped sending", now)
                    return
                if age > L.nominal_period * (1.0 + LATE_SLACK) and not self._late:
                    self._deadline_missed(age, now)
                # Moving: a dead link, a frozen state or a breach must not wait for the next command.
                state = self._state(now)
                if state is not None:
                    self._position_ok(state.q.tolist(), now)
            else:
                fault = self.driver.fault
                if fault is not None:
                    self._driver_fault(fault.message, now)

    def reset(self, *, recover_robot_errors: bool = False, reconnect: bool = False) -> None:
        """Explicitly clear the latched faults. Refused (ResetRefused) while any cause remains: then
        every fault whose cause is still there stays active (and the layer latched).

        recover_robot_errors: also ask the robot to clear its own error state (after a reflex).
        reconnect: reconnect the driver first if the connection was lost.
        """
        with self._lock:
            now = self.clock.now()
            if not self._faults:
                return
            try:
                self._check_cause_gone(recover_robot_errors, reconnect)
            except ResetRefused as exc:
                self.counters["reset_refused"] += 1
                self._record(SafetyEvent(now, "estop", "reset_refused", str(exc), False))
                raise
            cleared = " + ".join(active.event.message for active in self._faults.values())
            self._faults.clear()
            self._disarm()
            self.counters["resets"] += 1
            self._record(SafetyEvent(now, "estop", "reset", f"cleared: {cleared}", False))

    def close(self) -> None:
        self._stop_thread.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    # -- internals ---------------------------------------------------------------------------------
    def _checked(self, values, now: float, what: str) -> list[float] | None:
        """Layer 1: a fresh list of n finite numbers, or latch and return None."""
        try:
            if isinstance(values, (str, bytes)):
                raise TypeError("text is not a command")
            v = values.tolist() if hasattr(values, "tolist") else [float(x) for x in values]
        except (TypeError, ValueError):
            v = None
        ok = isinstance(v, list) and len(v) == self.limits.n
        if ok:
            try:
                total = sum(v)  # NaN and inf propagate: one check for the common case
                ok = math.isfinite(total) or all(math.isfinite(x) for x in v)  # huge finite values overflow the sum
            except TypeError:
                ok = False
        if not ok:
            self.counters["input_rejected"] += 1
            self._latch("input", "rejected", f"{what} command must be {self.limits.n} finite numbers, got {values!r}", now)
            return None
        return v

    def _interval(self, now: float, mode: str) -> float | None:
        """The real time since the last command, for the rate limits (no floor: a caller in a tight loop
        gets amax * its real interval per command, never more); None for a command closer to the last
        one than the driver's command period (refused, counted; the last command stays in effect)."""
        if self._mode != mode:
            return self.limits.nominal_period  # (re)starting from the measured motion
        dt = now - self._t_prev
        if dt < self.limits.min_command_interval:
            self.counters["too_fast"] += 1
            return None
        return min(dt, self.limits.nominal_period)

    def _state(self, now: float):
        try:
            state = self.driver.read_state()
        except Exception as exc:  # any exception from a driver latches, not only DriverError
            self._driver_fault(_driver_message(exc), now)
            return None
        fault = self.driver.fault
        if fault is not None:
            self._driver_fault(fault.message, now)
            return None
        age = now - state.host_time
        if age > self.limits.max_state_age:
            self.counters["stale_state"] += 1
            self._latch("state", "stale", f"robot state is {age * 1000:.0f} ms old (limit {self.limits.max_state_age * 1000:.0f} ms, seq {state.seq})", now)
            return None
        # A sample re-stamped with a fresh host time but a stuck sequence number is just as stale.
        if state.seq != self._seq:
            self._seq, self._seq_since = state.seq, now
        elif now - self._seq_since > self.limits.max_state_age:
            self.counters["stale_state"] += 1
            self._latch("state", "stale", f"robot state sequence number stuck at {state.seq} for {(now - self._seq_since) * 1000:.0f} ms "
                                          f"(limit {self.limits.max_state_age * 1000:.0f} ms) although its timestamp is fresh", now)
            return None
        return state

    def _check_tracking(self, dq: list[float], now: float) -> bool:
        """Velocity mode: a joint lagging its command beyond tolerance for too long latches a fault."""
        L = self.limits
        prev, since = self._prev, self._lagging_since
        for i in range(L.n):
            if abs(prev[i] - dq[i]) > L.tracking_tolerance:
                if since[i] is None:
                    since[i] = now
                elif now - since[i] > L.tracking_timeout:
                    self.counters["tracking_error"] += 1
                    self._latch(
                        "state",
                        "tracking_error",
                        f"joint {i + 1} moves at {dq[i]:.3f} rad/s, commanded {prev[i]:.3f} rad/s, for {now - since[i]:.2f} s",
                        now,
                    )
                    return True
            else:
                since[i] = None
        return False

    def _position_ok(self, q: list[float], now: float) -> tuple[float, float, float] | None:
        """The TCP position, or None after latching a joint-limit or workspace breach."""
        L = self.limits
        qmin, qmax = L.soft_q_min, L.soft_q_max
        for i in range(L.n):
            if q[i] > qmax[i] or q[i] < qmin[i]:
                self.counters["joint_limit_breach"] += 1
                self._latch("joint_limit", "breach", f"joint {i + 1} at {q[i]:.4f} rad is past its soft limit [{qmin[i]:.4f}, {qmax[i]:.4f}]", now)
                return None
        p = self._kin.position(q)
        lo, hi, tol = L.workspace_min, L.workspace_max, L.workspace_breach
        for k in range(3):
            if p[k] < lo[k] - tol or p[k] > hi[k] + tol:
                self.counters["workspace_breach"] += 1
                self._latch("workspace", "breach", f"TCP {'xyz'[k]} = {p[k]:.3f} m is outside [{lo[k]:.3f}, {hi[k]:.3f}] m", now)
                return None
        return p

    def _ahead(self, start: list[float], end: list[float]) -> list[float]:
        """Each joint's travel while its speed goes from `start` to `end` over the horizon, then brakes at
        the acceleration limit to rest: the workspace check's look-ahead."""
        h, amax = self.limits.horizon, self.limits.acceleration
        return [0.5 * (a + b) * h + b * abs(b) / (2.0 * amax[i]) for i, (a, b) in enumerate(zip(start, end))]

    def _workspace_scale(self, q: list[float], p: tuple[float, float, float], ahead: list[float], bound: float | None = None) -> float:
        """Largest s in [0, 1] such that the TCP stays in the box along the joint path q + s' * ahead for
        every s' <= s: the path is curved, so it is fitted as a quadratic through its middle and its end
        (two FKs, only when a face is within `bound`). Moving back in is never restricted. `bound`: the
        caller's bound on the TCP's displacement along the path, when it has one."""
        L = self.limits
        lo, hi = L.workspace_min, L.workspace_max
        if bound is None:
            bound = sum(abs(d) * r for d, r in zip(ahead, self._kin.reach))
        if bound == 0.0 or all(p[k] - lo[k] > bound and hi[k] - p[k] > bound for k in range(3)):
            return 1.0  # cannot reach any face: no FK needed
        n = L.n
        mid = self._kin.position([q[i] + 0.5 * ahead[i] for i in range(n)])
        end = self._kin.position([q[i] + ahead[i] for i in range(n)])
        scale = 1.0
        for k in range(3):
            c = 2.0 * (end[k] - 2.0 * mid[k] + p[k])
            b = end[k] - p[k] - c
            scale = min(scale, _first_crossing(p[k] - hi[k] - WORKSPACE_GRAZE, b, c), _first_crossing(lo[k] - WORKSPACE_GRAZE - p[k], -b, -c))
        return scale

    def _send(self, mode, values, rate, now, clamped, limited, tapered, scale, braked=()) -> bool:
        try:
            if mode == _VELOCITY:
                self.driver.set_joint_velocity(values)
            else:
                self.driver.set_joint_torque(values)
        except Exception as exc:  # any exception from a driver latches, not only DriverError
            self._driver_fault(_driver_message(exc), now)
            return False
        self.counters["sent"] += 1
        if self._armed and not self._late and now - self._t_prev > self.limits.nominal_period * (1.0 + LATE_SLACK):
            self._deadline_missed(now - self._t_prev, now)  # no poll saw it late: count it now
        self._late = False
        self._mode = mode
        self._prev = values
        if rate is not None:
            self._prev_rate = rate
        self._t_prev = now
        self._armed = True
        if clamped or limited or tapered or braked or scale < 1.0:
            self._report(mode, now, clamped, limited, tapered, scale, braked)
        return True

    def _report(self, mode, now, clamped, limited, tapered, scale, braked) -> None:
        c = self.counters
        unit = "rad/s" if mode == _VELOCITY else "N·m"
        if clamped:
            c["clamped"] += 1
            self._record(SafetyEvent(now, "clamp", "clamped", f"{mode} clamped to its limit ({unit}) on joints {_joints(clamped)}", False))
        if braked:
            c["overspeed_limited"] += 1
            self._record(SafetyEvent(now, "clamp", "overspeed_limited", f"torque on joints {_joints(braked)} limited: their speed would pass its bound", False))
        if limited:
            c["rate_limited"] += 1
            what = "acceleration/jerk" if mode == _VELOCITY else "torque rate"
            self._record(SafetyEvent(now, "rate_limit", "rate_limited", f"{what} limited on joints {_joints(limited)}", False))
        if tapered:
            c["joint_tapered"] += 1
            self._record(SafetyEvent(now, "joint_limit", "tapered", f"approaching a joint limit: joints {_joints(tapered)} tapered", False))
        if scale < 1.0:
            c["workspace_clipped"] += 1
            what = f"scaled by {scale:.2f}" if mode == _VELOCITY else "turned to braking"
            self._record(SafetyEvent(now, "workspace", "clipped", f"command {what} to keep the TCP in the box", False))

    def _deadline_missed(self, age: float, now: float) -> None:
        """A command later than one period: counted once per command, not a fault (the last one stands)."""
        self._late = True
        self.counters["deadline_misses"] += 1
        L = self.limits
        self._record(SafetyEvent(now, "watchdog", "deadline_miss", f"no command for {age * 1000:.0f} ms (due every "
                                 f"{L.nominal_period * 1000:.0f} ms): the last command stands; the watchdog trips past "
                                 f"{L.watchdog_timeout * 1000:.0f} ms", False))

    def _driver_fault(self, message: str, now: float) -> None:
        if "driver" not in self._faults:
            self.counters["driver_faults"] += 1
        self._latch("driver", "fault", message, now)

    def _latch(self, layer: str, kind: str, message: str, now: float, cause: str | None = None,
               still_active: Callable[[], str | None] | None = None) -> None:
        """Layer 7: stop the arm and latch. Each cause is kept until a reset finds it gone; the first one
        is the one `fault` reports, later ones are added to `faults` (and recorded as events)."""
        event = SafetyEvent(now, layer, kind, message, True)
        self._record(event)
        key = cause or layer
        if key in self._faults:
            if still_active is not None and self._faults[key].still_active is None:
                self._faults[key].still_active = still_active
            return
        first = not self._faults
        self._faults[key] = _ActiveFault(event, still_active)
        if not first:
            return
        self.counters["latched"] += 1
        self._disarm()
        try:
            self.driver.stop()
        except Exception:
            pass  # unreachable arm: its own watchdog stops it

    def _disarm(self) -> None:
        self._armed = False
        self._late = False
        self._mode = None
        self._prev = [0.0] * self.limits.n
        self._prev_rate = [0.0] * self.limits.n
        self._lagging_since = [None] * self.limits.n

    def _record(self, event: SafetyEvent) -> None:
        self.events.append(event)
        self._unread.append(event)

    def _check_cause_gone(self, recover_robot_errors: bool, reconnect: bool) -> None:
        """Raise ResetRefused naming what is still wrong: the robot itself, then every external fault."""
        still = []
        for key, active in list(self._faults.items()):
            reason = active.still_active() if active.still_active is not None else None
            if reason:
                still.append(f"{active.event.layer} fault still active: {reason}")
        if still:
            raise ResetRefused("; ".join(still))
        d = self.driver
        if not d.is_connected:
            if not reconnect:
                raise ResetRefused(f"robot not connected ({self.fault.message}); reconnect first (reset(reconnect=True))")
            try:
                d.connect()
            except DriverError as exc:
                raise ResetRefused(f"reconnect failed: {exc}") from None
        fault = d.fault
        if fault is not None:
            if not recover_robot_errors:
                raise ResetRefused(f"robot reports: {fault.message}; inspect the arm, then reset(recover_robot_errors=True)")
            try:
                d.reset()
            except DriverError as exc:
                raise ResetRefused(f"robot error recovery failed: {exc}") from None
        try:
            state = d.read_state()
        except DriverError as exc:
            raise ResetRefused(f"cannot read the robot: {exc}") from None
        if d.fault is not None:  # a second robot fault that the first one (or the dead link) hid
            raise ResetRefused(f"robot reports: {d.fault.message}; inspect the arm, then reset(recover_robot_errors=True)")
        age = self.clock.now() - state.host_time
        if age > self.limits.max_state_age:
            raise ResetRefused(f"robot state is still stale ({age * 1000:.0f} ms old)")
        q = state.q.tolist()
        problems = self.limits.pose_problems(q, self._kin.position(q), workspace_tolerance=self.limits.workspace_breach)
        if problems:
            raise ResetRefused(f"{problems[0]}; guide the arm back by hand first")

    def _watchdog_loop(self) -> None:
        period = self.limits.watchdog_poll
        while not self._stop_thread.wait(period):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - the watchdog must keep running; latch what broke it
                with self._lock:
                    self._latch("watchdog", "error", f"watchdog check failed: {type(exc).__name__}: {exc}", self.clock.now())


def _brakeable_speed(room: float, decel: float, h: float) -> float:
    """The speed toward a limit a joint may have at the end of a hold of h seconds such that, braking at
    `decel` from then on, it stops within `room` (measured from now, less half the hold at the current
    speed): v^2 / (2 decel) + h v / 2 <= room. Without room left the hold itself must end at the limit,
    v = 2 room / h, negative: the joint must brake harder than `decel` (or back off)."""
    if room <= 0.0:
        return 2.0 * room / h
    return 0.5 * (-decel * h + math.sqrt(decel * decel * h * h + 8.0 * decel * room))


def _first_crossing(x0: float, b: float, c: float) -> float:
    """The first s in [0, 1] where x0 + b s + c s^2 (a signed distance past a face, negative inside) reaches
    zero, 1.0 if it stays below it. Already past the face (x0 >= 0): 0.0 while moving further out."""
    if x0 >= 0.0:
        return 0.0 if b > 0.0 or (b == 0.0 and c > 0.0) else 1.0
    if x0 + b + c <= 0.0 and (c >= 0.0 or b <= 0.0 or -b / (2.0 * c) >= 1.0 or x0 - b * b / (4.0 * c) <= 0.0):
        return 1.0  # inside at the end, and its peak (if any, within the path) inside too
    if abs(c) < 1e-12:
        return max(0.0, min(1.0, -x0 / b))
    disc = b * b - 4.0 * c * x0
    root = math.sqrt(max(disc, 0.0))
    # The smaller positive root of c s^2 + b s + x0 = 0 (x0 < 0: one root is positive when c > 0).
    candidates = [s for s in ((-b - root) / (2.0 * c), (-b + root) / (2.0 * c)) if s >= 0.0]
    return max(0.0, min(1.0, min(candidates))) if candidates else 1.0


def _checked_dynamics(dynamics: JointDynamics, n: int) -> JointDynamics:
    """The model as float arrays; one with the wrong shapes or a non-finite entry must not become a torque."""
    values = {}
    for name, shape in (("mass", (n, n)), ("mobility", (n, n)), ("drift", (n,))):
        value = np.asarray(getattr(dynamics, name), dtype=np.float64)
        if value.shape != shape or not np.isfinite(value).all():
            raise ValueError(f"the dynamics model's {name} is not {n}-joint and finite (shape {value.shape})")
        values[name] = value
    return JointDynamics(**values)


def _driver_message(exc: Exception) -> str:
    return str(exc) if isinstance(exc, DriverError) else f"driver raised {type(exc).__name__}: {exc}"


def _joints(indices) -> str:
    return ",".join(str(i + 1) for i in indices)
