"""Cameras behind one interface (`Camera`): `fake`, `opencv` (cv2.VideoCapture), `realsense` (pyrealsense2)."""

from __future__ import annotations

from hardware.cameras.base import Camera, CameraDisconnected, CameraError, CameraEvent, CameraHealth, Frame
from hardware.config import CameraDeviceConfig, CameraKind
from hardware.timing import Clock


def make_camera(name: str, cfg: CameraDeviceConfig, clock: Clock, *, on_fault=None, threaded: bool = True, scene=None) -> Camera:
    """Build (not start) the camera a validated config names. `scene` feeds fake synthetic views."""
    if cfg.kind is CameraKind.fake:
        from hardware.cameras.fake import FakeCamera

        return FakeCamera(name, cfg, clock, scene=scene, on_fault=on_fault, threaded=threaded)
    if cfg.kind is CameraKind.opencv:
        from hardware.cameras.opencv import OpenCVCamera

        return OpenCVCamera(name, cfg, clock, on_fault=on_fault, threaded=threaded)
    if cfg.kind is CameraKind.realsense:
        from hardware.cameras.realsense import RealSenseCamera

        return RealSenseCamera(name, cfg, clock, on_fault=on_fault, threaded=threaded)
    raise ValueError(f"unknown camera kind {cfg.kind!r}")


__all__ = ["Camera", "CameraDisconnected", "CameraError", "CameraEvent", "CameraHealth", "Frame", "make_camera"]
