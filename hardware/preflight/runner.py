"""The pre-flight runner: runs the checks in order, each guarded, and collects one report.

Checks that do not depend on each other all run, so one report shows every problem; the robot-moving
self-test runs only when the config and the robot passed. Nothing here clears a robot error: a faulted
arm fails the check with the vendor's message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hardware.preflight.calibration_check import check_calibration
from hardware.preflight.cameras_check import check_cameras
from hardware.preflight.config_check import check_config
from hardware.preflight.controller_check import check_controller
from hardware.preflight.options import PreflightOptions
from hardware.preflight.policy_check import PolicySource, check_policy_latency
from hardware.preflight.report import FAIL, SKIP, WARN, CheckResult, PreflightReport
from hardware.preflight.robot_check import check_robot
from hardware.preflight.tracker_check import check_tracker
from hardware.preflight.watchdog_check import check_watchdogs
from hardware.timing import MonotonicClock

# Hook called with ("driver", driver) before connecting and ("camera:<name>", camera) after its first
# frame: dry runs and tests plant faults through it (fake driver and camera hooks).
Hook = Callable[[str, Any], None]


class Preflight:
    def __init__(self, env_cfg, options: PreflightOptions | None = None, *, hook: Hook | None = None, say: Callable[[str], None] | None = None,
                 policy: PolicySource | None = None):
        self.raw = env_cfg
        self.policy = policy  # a checkpoint (or deploy's figures): the `policy latency` check
        self.options = options or PreflightOptions()
        self.hook = hook or (lambda what, obj: None)
        self.say = say or (lambda msg: None)
        self.report = PreflightReport()
        self.cfg = self.hw = self.contract = self.limits = None
        self.driver = None
        self.cameras: dict[str, Any] = {}
        self.clock = None

    def add(self, name: str, status: str, detail: str, **data) -> CheckResult:
        result = CheckResult(name, status, detail, data)
        self.report.checks.append(result)
        self.say(f"[{status}] {name}: {detail}")
        return result

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> PreflightReport:
        try:
            config_ok = self._guarded("config", lambda: check_config(self))
            self._guarded("calibration", lambda: check_calibration(self))
            if self.policy is not None:
                if config_ok:
                    self._guarded("policy latency", lambda: check_policy_latency(self, self.policy))
                else:
                    self.add("policy latency", SKIP, "not run: the config is invalid")
            if not config_ok:
                for name in ("robot", "controller", "cameras", "tracker", "watchdog"):
                    self.add(name, SKIP, "not run: the config is invalid")
                return self.report
            self.clock = MonotonicClock(self.hw.loop.spin_s)  # always the wall clock: rates are measured
            robot_ok = self._guarded("robot", lambda: check_robot(self))
            if robot_ok:
                robot_ok = self._guarded("controller", lambda: check_controller(self))
            else:
                self.add("controller", SKIP, "not run: the robot check failed")
            cameras_ok = self._guarded("cameras", lambda: check_cameras(self))
            self._guarded("tracker", lambda: check_tracker(self, cameras_ok))
            if not self.options.watchdog_test:
                self.add("watchdog", WARN, "self-test disabled (preflight.watchdog_test=false)")
            elif robot_ok:
                self._guarded("watchdog", lambda: check_watchdogs(self))
            else:
                self.add("watchdog", SKIP, "not run: the robot check failed")
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
            self.add(name, FAIL, f"check crashed: {type(exc).__name__}: {exc}")
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


def run_preflight(env_cfg, options: PreflightOptions | None = None, *, hook: Hook | None = None, say=None,
                  checkpoint: str | None = None, acting=None, policy_latency: dict | None = None) -> PreflightReport:
    """`checkpoint` (with `acting`, an ActingConfig): also the `policy latency` check, measured here;
    `policy_latency`: the same check from figures already measured (deploy's)."""
    policy = None
    if checkpoint is not None or policy_latency is not None:
        policy = PolicySource(checkpoint, acting or PolicySource().acting, policy_latency)
    return Preflight(env_cfg, options, hook=hook, say=say, policy=policy).run()
