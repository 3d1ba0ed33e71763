"""Pre-flight `calibration`: the tracker's camera calibration exists, loads and fits the camera's resolution."""

from __future__ import annotations

import numpy as np

from omegaconf import OmegaConf

from hardware.config import CAMERA_CONFIGS, CameraDeviceConfig, CameraKind, TrackerConfig, TrackerKind, load_by_kind
from hardware.preflight.report import FAIL, PASS, SKIP
from hardware.tracking.calibration import CameraCalibration
from robolearn.config import ConfigError, load_typed


def check_calibration(pf) -> None:
    # Runs even when the config check failed (its file is the usual culprit): then only the tracker and its
    # camera are read, typed, from the raw config.
    tracker, camera = _tracker_and_camera(pf)
    if tracker is None:
        pf.add("calibration", SKIP, "not run: the tracker or its camera config is invalid (see config)")
        return
    if tracker.kind is TrackerKind.none:
        status = FAIL if pf.options.require_tracker else SKIP
        pf.add("calibration", status, "no tracker configured (env.hardware.tracker.kind: none): reward and success are unknown on the arm"
               + ("; this run requires a tracker (preflight.require_tracker)" if pf.options.require_tracker else ""))
        return
    path = tracker.calibration
    if not path:
        pf.add("calibration", FAIL, "env.hardware.tracker.calibration is empty: calibrate first (python -m hardware.calibrate ...)")
        return
    try:
        calibration = CameraCalibration.load(path)
    except ConfigError as exc:
        pf.add("calibration", FAIL, f"{exc}; calibrate first (python -m hardware.calibrate ...)")
        return
    if camera is None:
        pf.add("calibration", FAIL, f"{path}: the tracker's camera {tracker.camera!r} is not configured under env.hardware.cameras")
        return
    w, h = camera.width, camera.height
    cw, ch = calibration.image_size
    if abs(w / h - cw / ch) > 1e-3:
        pf.add("calibration", FAIL, f"{path}: calibrated at {cw}x{ch}, camera {tracker.camera!r} runs at {w}x{h} (another aspect ratio: recalibrate at this resolution)")
        return
    position = calibration.base_from_camera[:3, 3]
    pf.add("calibration", PASS, f"{path}: {cw}x{ch}, fx {calibration.camera_matrix[0, 0]:.1f} px, camera at {np.round(position, 3).tolist()} m in the base frame",
           image_size=[cw, ch], camera_position=position.tolist())


def _tracker_and_camera(pf) -> tuple[TrackerConfig | None, CameraDeviceConfig | None]:
    if pf.hw is not None:
        return pf.hw.tracker, pf.hw.cameras.get(pf.hw.tracker.camera)
    raw = OmegaConf.to_container(OmegaConf.create(pf.raw or {}), resolve=True) if not isinstance(pf.raw, dict) else pf.raw
    hw = raw.get("hardware") or {}
    try:
        tracker = load_typed(TrackerConfig, hw.get("tracker"), "env.hardware.tracker")
        node = (hw.get("cameras") or {}).get(tracker.camera)
        camera = load_by_kind(CAMERA_CONFIGS, node, f"env.hardware.cameras.{tracker.camera}", CameraKind.fake.value) if node is not None else None
    except ConfigError:
        return None, None
    return tracker, camera
