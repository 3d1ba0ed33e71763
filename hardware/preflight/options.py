"""Settings of the pre-flight check (the `preflight` node of configs/preflight.yaml and configs/deploy.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from robolearn.config import check


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
            check(getattr(self, name) > 0, f"preflight.{name}", getattr(self, name), "must be positive")
        for name in ("min_fps_fraction", "tracker_min_detection"):
            check(0 < getattr(self, name) <= 1, f"preflight.{name}", getattr(self, name), "must be in (0, 1]")
        check(self.probe_speed <= 0.1, "preflight.probe_speed", self.probe_speed, "the self-test creeps: at most 0.1 rad/s")
