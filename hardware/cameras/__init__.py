"""Cameras behind one interface (`Camera`): `fake`, `opencv` (cv2.VideoCapture), `realsense` (pyrealsense2)."""

from __future__ import annotations

from importlib import import_module

from hardware.cameras.base import Camera, CameraDisconnected, CameraError, CameraEvent, CameraHealth, Frame
from hardware.config import CameraDeviceConfig, CameraKind
from hardware.timing import Clock

# Camera class per config kind (hardware.config.CAMERA_CONFIGS), imported when first built.
CAMERAS = {
    "fake": "hardware.cameras.fake:FakeCamera",
    "opencv": "hardware.cameras.opencv:OpenCVCamera",
    "realsense": "hardware.cameras.realsense:RealSenseCamera",
}


def make_camera(name: str, cfg: CameraDeviceConfig, clock: Clock, *, on_fault=None, threaded: bool = True, scene=None) -> Camera:
    """Build (not start) the camera a validated config names. `scene` feeds fake synthetic views."""
    module, cls = CAMERAS[cfg.kind.value].split(":")
    extra = {"scene": scene} if cfg.kind is CameraKind.fake else {}
    return getattr(import_module(module), cls)(name, cfg, clock, on_fault=on_fault, threaded=threaded, **extra)


__all__ = ["CAMERAS", "Camera", "CameraDisconnected", "CameraError", "CameraEvent", "CameraHealth", "Frame", "make_camera"]
