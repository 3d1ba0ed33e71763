"""Pose sources for the real env's reward: ArUco marker tracking, or none (reward and success unknown)."""

from __future__ import annotations

from hardware.config import TrackerConfig, TrackerKind
from hardware.tracking.calibration import CameraCalibration


def make_tracker(cfg: TrackerConfig):
    """The configured tracker, or None. Loads and checks the calibration (a config error names it)."""
    if cfg.kind is TrackerKind.none:
        return None
    from hardware.tracking.aruco import ArucoTracker

    return ArucoTracker(cfg, CameraCalibration.load(cfg.calibration))


__all__ = ["CameraCalibration", "make_tracker"]
