"""Pre-flight check: everything that must hold before a policy is allowed to move the arm.

    config       the env and hardware config validate; limits are within the robot's datasheet
    calibration  the tracker's camera calibration exists, loads and fits the camera's resolution
    robot        the arm answers within its connect timeout, reports no error, sends fresh state, sits
                 inside its soft joint limits and the workspace box, at rest
    cameras      each camera delivers new frames at (nearly) its configured rate, with fresh timestamps
    tracker      the kettle and sink markers are seen, and their poses give the shared reward
    watchdog     self-test with the arm held: a creep command (default 0.02 rad/s on the last joint for
                 at most the vendor hold time, < 0.01 rad) then silence: the safety layer's watchdog must
                 trip within its timeout, and the vendor's own watchdog must stop the arm when our
                 watchdog is out of the way

Checks that do not depend on each other all run, so one report shows every problem; the robot-moving
self-test runs only when the config and the robot passed. Nothing here clears a robot error: a faulted
arm fails the check with the vendor's message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from robolearn.config import ConfigError, load_env_config

PASS, FAIL, WARN, SKIP = "pass", "FAIL", "warn", "skip"


@dataclass
class CheckResult:
    name: str
    status: str  # pass | FAIL | warn | skip
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreflightReport:
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def get(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def render(self) -> str:
        width = max(len(c.name) for c in self.checks) if self.checks else 8
        lines = ["pre-flight check"]
        for c in self.checks:
            lines.append(f"  [{c.status:^4}] {c.name:<{width}}  {c.detail}")
        lines.append("PRE-FLIGHT PASSED: motion may be enabled" if self.ok else "PRE-FLIGHT FAILED: do not enable motion")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


@dataclass
class PreflightOptions:
    camera_window_s: float = 1.0  # how long each camera is watched
    min_fps_fraction: float = 0.8  # of the configured fps
    tracker_window_s: float = 1.0
    tracker_min_detection: float = 0.5  # share of frames in which both markers must be seen
    require_tracker: bool = False  # a run that needs reward/success on the arm: no tracker is a failure
    watchdog_test: bool = True
    probe_speed: float = 0.02  # rad/s of the self-test creep
    probe_joint: int = -1  # which joint creeps (default: the last, the wrist)
    vendor_stop_margin_s: float = 0.3  # beyond command_hold_s, for the arm to decelerate to rest
    rest_speed: float = 2e-3  # rad/s below which a joint counts as at rest
    state_window_s: float = 0.1  # between two state reads: the sequence number must advance

    def __post_init__(self) -> None:
        for name in ("camera_window_s", "tracker_window_s", "probe_speed", "vendor_stop_margin_s", "rest_speed", "state_window_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"invalid value for preflight.{name}: {getattr(self, name)!r} (must be positive)")
        for name in ("min_fps_fraction", "tracker_min_detection"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"invalid value for preflight.{name}: {getattr(self, name)!r} (must be in (0, 1])")
        if self.probe_speed > 0.1:
            raise ConfigError(f"invalid value for preflight.probe_speed: {self.probe_speed!r} (the self-test creeps: at most 0.1 rad/s)")


# Hook called with ("driver", driver) before connecting and ("camera:<name>", camera) after its first
# frame: dry runs and tests plant faults through it (fake driver and camera hooks).
Hook = Callable[[str, Any], None]


class Preflight:
    def __init__(self, env_cfg, options: PreflightOptions | None = None, *, hook: Hook | None = None, say: Callable[[str], None] | None = None):
        self.raw = env_cfg
        self.options = options or PreflightOptions()
        self.hook = hook or (lambda what, obj: None)
        self.say = say or (lambda msg: None)
        self.report = PreflightReport()
        self.cfg = self.hw = self.contract = self.limits = None
        self.driver = None
        self.cameras: dict[str, Any] = {}
        self.clock = None

    def _add(self, name: str, status: str, detail: str, **data) -> CheckResult:
        result = CheckResult(name, status, detail, data)
        self.report.checks.append(result)
        self.say(f"[{status}] {name}: {detail}")
        return result

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> PreflightReport:
        from hardware.timing import MonotonicClock

        try:
            config_ok = self._guarded("config", self._check_config)
            self._guarded("calibration", self._check_calibration)
            if not config_ok:
                for name in ("robot", "cameras", "tracker", "watchdog"):
                    self._add(name, SKIP, "not run: the config is invalid")
                return self.report
            self.clock = MonotonicClock(self.hw.loop.spin_s)  # always the wall clock: rates are measured
            robot_ok = self._guarded("robot", self._check_robot)
            cameras_ok = self._guarded("cameras", self._check_cameras)
            self._guarded("tracker", lambda: self._check_tracker(cameras_ok))
            if not self.options.watchdog_test:
                self._add("watchdog", WARN, "self-test disabled (preflight.watchdog_test=false)")
            elif robot_ok:
                self._guarded("watchdog", self._check_watchdogs)
            else:
                self._add("watchdog", SKIP, "not run: the robot check failed")
        finally:
            self._close()
        return self.report

    def _guarded(self, name: str, check: Callable[[], Any]) -> Any:
        """Run a check; an unexpected exception fails it (naming the exception) instead of ending the report."""
        try:
            return check()
        except Exception as exc:  # noqa: BLE001 - a crashed check is a failed check
            if self.driver is not None:
                try:
                    self.driver.stop()
                except Exception:  # noqa: BLE001 - the arm's own watchdog stops it
                    pass
            self._add(name, FAIL, f"check crashed: {type(exc).__name__}: {exc}")
            return False

    def _close(self) -> None:
        for camera in self.cameras.values():
            camera.stop()
        self.cameras = {}
        if self.driver is not None:
            try:
                self.driver.close()
            except Exception:  # noqa: BLE001 - closing after a failed check
                pass

    # -- config ------------------------------------------------------------------------------------
    def _check_config(self) -> bool:
        from hardware.config import ClockKind, DriverKind, load_hardware_config
        from hardware.safety.limits import SafetyLimits
        from robolearn.spec import EnvSpec

        try:
            cfg = load_env_config(self.raw)
            hw = load_hardware_config(cfg)
            contract = EnvSpec.from_config(cfg)
            limits = SafetyLimits.from_config(hw.safety, contract.robot, command_hold_s=hw.driver.command_hold_s, control_hz=cfg.control_hz)
        except ConfigError as exc:
            self._add("config", FAIL, str(exc))
            return False
        self.cfg, self.hw, self.contract, self.limits = cfg, hw, contract, limits
        robot = contract.robot
        vel = np.asarray(limits.velocity)
        share = float(np.max(vel / robot.dq_max))
        notes = [f"{robot.name}, {contract.control_mode.value} at {cfg.control_hz:g} Hz, driver {hw.driver.kind.value}",
                 f"velocity <= {share:.0%} of datasheet", f"box {list(limits.workspace_min)}..{list(limits.workspace_max)} m",
                 f"watchdog {limits.watchdog_timeout * 1000:.0f} ms, vendor hold {hw.driver.command_hold_s * 1000:.0f} ms"]
        status = PASS
        if contract.control_mode.value == "joint_velocity" and np.any(contract.command_limits > vel + 1e-12):
            notes.append("note: the safety layer clamps actions above its velocity limit")
        if hw.driver.kind is DriverKind.fake:
            status = WARN
            notes.append("fake driver: a dry run, not an arm")
        if hw.loop.clock is ClockKind.virtual:
            notes.append("checked on the wall clock (the config asks for a virtual clock)")
        self._add("config", status, "; ".join(notes), velocity_limits=list(limits.velocity), datasheet=robot.dq_max.tolist())
        return True

    # -- calibration -------------------------------------------------------------------------------
    def _check_calibration(self) -> None:
        from hardware.tracking.calibration import CameraCalibration

        raw = self.raw if isinstance(self.raw, dict) else OmegaConf.to_container(OmegaConf.create(self.raw or {}), resolve=True)
        hw = raw.get("hardware") or {}
        tracker = hw.get("tracker") or {}
        if str(tracker.get("kind", "none")) in ("none", "TrackerKind.none"):
            status = FAIL if self.options.require_tracker else SKIP
            self._add("calibration", status, "no tracker configured (env.hardware.tracker.kind: none): reward and success are unknown on the arm"
                      + ("; this run requires a tracker (preflight.require_tracker)" if self.options.require_tracker else ""))
            return
        path = tracker.get("calibration") or ""
        if not path:
            self._add("calibration", FAIL, "env.hardware.tracker.calibration is empty: calibrate first (python -m robolearn.calibrate ...)")
            return
        try:
            calibration = CameraCalibration.load(path)
        except ConfigError as exc:
            self._add("calibration", FAIL, f"{exc}; calibrate first (python -m robolearn.calibrate ...)")
            return
        camera = tracker.get("camera", "front")
        device = (hw.get("cameras") or {}).get(camera) or {}
        w, h = int(device.get("width", 640)), int(device.get("height", 480))
        cw, ch = calibration.image_size
        if abs(w / h - cw / ch) > 1e-3:
            self._add("calibration", FAIL, f"{path}: calibrated at {cw}x{ch}, camera {camera!r} runs at {w}x{h} (another aspect ratio: recalibrate at this resolution)")
            return
        position = calibration.base_from_camera[:3, 3]
        self._add("calibration", PASS, f"{path}: {cw}x{ch}, fx {calibration.camera_matrix[0, 0]:.1f} px, camera at {np.round(position, 3).tolist()} m in the base frame",
                  image_size=[cw, ch], camera_position=position.tolist())

    # -- robot -------------------------------------------------------------------------------------
    def _check_robot(self) -> bool:
        from hardware.drivers import DriverConnectError, DriverError, make_driver
        from hardware.safety.kinematics import TcpKinematics

        hw, limits, robot = self.hw, self.limits, self.contract.robot
        try:
            self.driver = driver = make_driver(hw.driver, robot, self.clock, soft_limits=(limits.soft_q_min, limits.soft_q_max))
            self.hook("driver", driver)
            start = time.monotonic()
            driver.connect()
        except DriverConnectError as exc:
            self._add("robot", FAIL, f"unreachable at {getattr(hw.driver, 'host', '') or '(fake)'}: {exc}")
            return False
        except DriverError as exc:
            self._add("robot", FAIL, f"driver error: {exc}")
            return False
        connect_ms = (time.monotonic() - start) * 1000.0
        try:
            first = driver.read_state()
            time.sleep(self.options.state_window_s)
            state = driver.read_state()
        except DriverError as exc:
            self._add("robot", FAIL, f"connected but the state cannot be read: {exc}")
            return False
        fault = driver.fault
        if fault is not None:
            self._add("robot", FAIL, f"robot reports an error: {fault.message} (inspect the arm and clear it on purpose; pre-flight never clears errors)")
            return False
        problems = []
        if state.seq == first.seq:
            problems.append(f"state not updating (sequence number stuck at {state.seq})")
        age = self.clock.now() - state.host_time
        if age > limits.max_state_age:
            problems.append(f"state {age * 1000:.0f} ms old (limit {limits.max_state_age * 1000:.0f} ms)")
        q = state.q.tolist()
        for i in range(limits.n):
            if not limits.soft_q_min[i] <= q[i] <= limits.soft_q_max[i]:
                problems.append(f"joint {i + 1} at {q[i]:.3f} rad is outside its soft limits [{limits.soft_q_min[i]:.3f}, {limits.soft_q_max[i]:.3f}]")
        tcp = TcpKinematics(robot).position(q)
        if not limits.inside_workspace(tcp, 0.0):
            problems.append(f"TCP {np.round(tcp, 3).tolist()} m is outside the workspace box")
        moving = float(np.max(np.abs(state.dq)))
        if moving > self.options.rest_speed:
            problems.append(f"arm is moving ({moving:.4f} rad/s)")
        if problems:
            self._add("robot", FAIL, "; ".join(problems))
            return False
        reported = driver.reported_limits
        note = ""
        if reported and "dq_max" in reported:
            tighter = [i + 1 for i, (a, b) in enumerate(zip(limits.velocity, reported["dq_max"])) if float(b) < a]
            if tighter:
                note = f"; the vendor's velocity limits are lower on joints {tighter} (the safety layer uses them)"
        self._add("robot", PASS, f"{driver.kind} connected in {connect_ms:.0f} ms, no error, state {age * 1000:.1f} ms old, at rest, TCP {np.round(tcp, 3).tolist()} m{note}",
                  connect_ms=round(connect_ms, 1), state_age_ms=round(age * 1000, 2), q=q)
        return True

    # -- cameras -----------------------------------------------------------------------------------
    def _camera_names(self) -> list[str]:
        names = [name for name, _, _ in self.contract.cameras]
        t = self.hw.tracker
        if t.kind.value != "none" and t.camera not in names:
            names.append(t.camera)
        return names

    def _check_cameras(self) -> bool:
        from hardware.cameras import CameraError, make_camera

        names = self._camera_names()
        if not names:
            self._add("cameras", SKIP, "no cameras configured")
            return True
        started = {}
        problems = []
        for name in names:
            cfg = self.hw.cameras[name]
            camera = make_camera(name, cfg, self.clock, threaded=True)
            try:
                camera.start()
                camera.wait_first_frame(max(2.0, cfg.timeout_s))
            except CameraError as exc:
                problems.append(f"{name}: {exc}")
                camera.stop()
                continue
            self.cameras[name] = started[name] = camera
            self.hook(f"camera:{name}", camera)
        stats = {name: {"numbers": set(), "max_age": 0.0, "device_back": False, "last_device": -np.inf} for name in started}
        end = time.monotonic() + self.options.camera_window_s
        first_health = {name: cam.health().frames for name, cam in started.items()}
        while time.monotonic() < end:
            now = self.clock.now()
            for name, cam in started.items():
                try:
                    frame = cam.read_latest()
                except CameraError:
                    continue
                s = stats[name]
                if frame.frame_number not in s["numbers"]:
                    s["numbers"].add(frame.frame_number)
                    if frame.device_time < s["last_device"]:
                        s["device_back"] = True
                    s["last_device"] = frame.device_time
                s["max_age"] = max(s["max_age"], now - frame.host_time)
            time.sleep(0.005)
        data = {}
        for name, cam in started.items():
            cfg, s, health = self.hw.cameras[name], stats[name], cam.health()
            fps = (health.frames - first_health[name]) / self.options.camera_window_s
            data[name] = {"fps": round(fps, 1), "configured_fps": cfg.fps, "max_age_ms": round(s["max_age"] * 1000, 1), "dropped": health.dropped}
            if health.fault is not None:
                problems.append(f"{name}: {health.fault}")
            elif fps < self.options.min_fps_fraction * cfg.fps:
                problems.append(f"{name}: {fps:.1f} fps, configured {cfg.fps:g} (needs >= {self.options.min_fps_fraction:.0%})")
            elif s["max_age"] > cfg.max_age_s:
                problems.append(f"{name}: frames up to {s['max_age'] * 1000:.0f} ms old when read (max_age_s {cfg.max_age_s * 1000:.0f} ms)")
            elif s["device_back"]:
                problems.append(f"{name}: device timestamps went backwards")
        if problems:
            self._add("cameras", FAIL, "; ".join(problems), **data)
            return False
        summary = ", ".join(f"{n} {d['fps']:.1f}/{d['configured_fps']:g} fps, max age {d['max_age_ms']:.0f} ms" for n, d in data.items())
        self._add("cameras", PASS, summary, **data)
        return True

    # -- tracker -----------------------------------------------------------------------------------
    def _check_tracker(self, cameras_ok: bool) -> None:
        from hardware.cameras import CameraError
        from hardware.safety.kinematics import TcpKinematics
        from hardware.tracking import make_tracker
        from robolearn.task import compute_reward

        t = self.hw.tracker
        if t.kind.value == "none":
            self._add("tracker", FAIL if self.options.require_tracker else SKIP, "no tracker configured")
            return
        camera = self.cameras.get(t.camera)
        if camera is None or not cameras_ok and camera.health().fault is not None:
            self._add("tracker", SKIP, f"not run: camera {t.camera!r} failed its check")
            return
        tracker = make_tracker(t)
        frames = kettle = sink = 0
        last_number = -1
        end = time.monotonic() + self.options.tracker_window_s
        while time.monotonic() < end:
            try:
                frame = camera.read_latest()
            except CameraError:
                time.sleep(0.01)
                continue
            if frame.frame_number != last_number:
                last_number = frame.frame_number
                poses = tracker.detect(frame.image)
                frames += 1
                kettle += t.kettle_marker_id in poses
                sink += t.sink_marker_id in poses
                tracker.update(frame)
            time.sleep(0.01)
        rate = min(kettle, sink) / max(frames, 1)
        data = {"frames": frames, "kettle_seen": kettle, "sink_seen": sink}
        if rate < self.options.tracker_min_detection:
            missing = [f"kettle marker {t.kettle_marker_id} in {kettle}/{frames}", f"sink marker {t.sink_marker_id} in {sink}/{frames}"]
            self._add("tracker", FAIL, f"markers not seen reliably ({'; '.join(missing)} frames; needs {self.options.tracker_min_detection:.0%})", **data)
            return
        q = self.driver.read_state().q if self.driver is not None and self.driver.is_connected else self.contract.robot.home
        tracked = tracker.task_state(self.clock.now(), np.asarray(TcpKinematics(self.contract.robot).position(np.asarray(q).tolist())))
        if tracked is None:
            self._add("tracker", FAIL, "markers seen but their poses are stale", **data)
            return
        state, sink_geometry = tracked
        reward, terms, success = compute_reward(state, sink_geometry, tracker.kettle, self.cfg.task)
        data.update(kettle_pos=np.round(state.kettle_pos, 4).tolist(), sink_centre=np.round(sink_geometry.centre, 4).tolist(),
                    reward=round(float(reward), 4), success=bool(success), reward_terms={k: round(float(v), 4) for k, v in terms.items()})
        self._add("tracker", PASS, f"both markers in {min(kettle, sink)}/{frames} frames; kettle at {data['kettle_pos']} m, sink at {data['sink_centre']} m; "
                  f"reward {data['reward']} (success {data['success']})", **data)

    # -- watchdog self-test ------------------------------------------------------------------------
    def _probe(self) -> list[float]:
        """A creep on one joint, away from its nearer soft limit."""
        state = self.driver.read_state()
        n = self.limits.n
        j = self.options.probe_joint % n
        room_up = self.limits.soft_q_max[j] - state.q[j]
        room_down = state.q[j] - self.limits.soft_q_min[j]
        probe = [0.0] * n
        probe[j] = self.options.probe_speed if room_up >= room_down else -self.options.probe_speed
        return probe

    def _wait_moving(self, threshold: float, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if np.max(np.abs(self.driver.read_state().dq)) > threshold:
                return True
            time.sleep(0.002)
        return False

    def _wait_rest(self, timeout_s: float) -> tuple[bool, float, float]:
        """(at rest, seconds waited, last max speed)."""
        start = time.monotonic()
        speed = np.inf
        while True:
            speed = float(np.max(np.abs(self.driver.read_state().dq)))
            waited = time.monotonic() - start
            if speed < self.options.rest_speed:
                return True, waited, speed
            if waited > timeout_s:
                return False, waited, speed
            time.sleep(0.005)

    def _check_watchdogs(self) -> None:
        from hardware.drivers import DriverError
        from hardware.safety.layer import SafetyLayer

        limits = self.limits.tightened(self.driver.reported_limits)
        hold_s = self.hw.driver.command_hold_s
        opts = self.options
        data: dict[str, Any] = {}
        problems = []
        try:
            # 1. The safety layer's watchdog: one command, then silence.
            layer = SafetyLayer(self.driver, limits, self.clock, watchdog_thread=True)
            try:
                sent_at = time.monotonic()
                if not layer.command_velocity(self._probe()):
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
            rest, _, speed = self._wait_rest(1.0)
            if not rest:
                problems.append(f"arm still moving ({speed:.4f} rad/s) after the safety watchdog stop")
            # 2. The vendor's watchdog: one command through the layer (its own watchdog off), then
            #    silence; the arm must come to rest by itself within the hold time.
            layer = SafetyLayer(self.driver, limits, self.clock, watchdog_thread=False)
            try:
                sent_at = time.monotonic()
                if not layer.command_velocity(self._probe()):
                    problems.append(f"the vendor self-test command was refused: {layer.fault.message if layer.fault else '?'}")
                elif not self._wait_moving(opts.probe_speed / 2, hold_s):
                    problems.append(f"the self-test creep ({opts.probe_speed} rad/s) did not move the arm within {hold_s * 1000:.0f} ms")
                    layer.hold()
                else:
                    rest, _, speed = self._wait_rest(hold_s + opts.vendor_stop_margin_s - (time.monotonic() - sent_at))
                    waited = time.monotonic() - sent_at
                    if rest:
                        data["vendor_watchdog_stop_ms"] = round(waited * 1000, 1)
                    else:
                        layer.hold()  # our stop, since the vendor's did not come
                        problems.append(f"vendor watchdog did not stop the arm: still moving at {speed:.4f} rad/s "
                                        f"{waited * 1000:.0f} ms after the only command (command_hold_s {hold_s * 1000:.0f} ms)")
            finally:
                layer.close()
            if self.driver.fault is not None:
                problems.append(f"the robot reported an error during the self-test: {self.driver.fault.message}")
        except DriverError as exc:
            problems.append(f"driver error during the self-test: {exc}")
        if problems:
            self._add("watchdog", FAIL, "; ".join(problems), **data)
        else:
            self._add("watchdog", PASS, f"safety watchdog tripped {data['safety_watchdog_trip_ms']:.0f} ms after the last command "
                      f"(timeout {limits.watchdog_timeout * 1000:.0f} ms); vendor watchdog stopped the arm {data['vendor_watchdog_stop_ms']:.0f} ms "
                      f"after its only command (hold {hold_s * 1000:.0f} ms)", **data)


def run_preflight(env_cfg, options: PreflightOptions | None = None, *, hook: Hook | None = None, say=None) -> PreflightReport:
    return Preflight(env_cfg, options, hook=hook, say=say).run()
