"""`python -m hardware.calibrate`: calibrate a camera of the real-robot setup (the maths:
hardware/tracking/calibration.py).

    python -m hardware.calibrate setup=bench_1 camera_name=front                       # live, ChArUco board
    python -m hardware.calibrate setup=bench_1 camera_name=front intrinsics=device     # RealSense intrinsics
    python -m hardware.calibrate setup=bench_1 images=shots/ extrinsics_images=shots/static/

Writes <calibration_dir>/<setup>/<camera>.yaml; point env.hardware.tracker.calibration at it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import MISSING, DictConfig, OmegaConf

from hardware.cameras import make_camera
from hardware.config import load_command_config, load_hardware_config
from hardware.timing import MonotonicClock
from hardware.tracking.calibration import (
    CalibrationError,
    CalibrationTarget,
    CameraCalibration,
    calibrate_intrinsics,
    calibration_path,
    extrinsics_from_target,
    intrinsics_from_device,
    pose_from_xyz_rpy,
)
from robolearn.camera_calibration import scaled_camera_matrix
from robolearn.config import ConfigError, check, load_env_config, register_schema
from robolearn.paths import CONFIG_DIR
from robolearn.process import exits

INTRINSICS = ("charuco", "device", "file")


@dataclass
class TargetPose:
    """The target in the robot base frame (measure e.g. by touching its origin with the TCP). ChArUco: origin
    at the outer corner of the first square, z INTO the board, so a board lying face up has roll pi. ArUco:
    centre, z out of the face."""

    xyz: list[float] = field(default_factory=lambda: [0.45, 0.0, 0.0])
    rpy: list[float] = field(default_factory=lambda: [math.pi, 0.0, 0.0])

    def __post_init__(self) -> None:
        check(len(self.xyz) == 3, "target_pose.xyz", self.xyz, "needs 3 values (m)")
        check(len(self.rpy) == 3, "target_pose.rpy", self.rpy, "needs 3 values (rad)")


@dataclass
class CalibrateConfig:
    env: Any = None  # the real-robot env config: only its cameras are used
    setup: str = MISSING  # a name for this bench (camera mounts change: one folder per set-up)
    camera_name: str = "front"  # a camera configured under env.hardware.cameras
    calibration_dir: str = "calibration"
    intrinsics: str = "charuco"  # charuco: from board views | device: the RealSense profile | file: keep intrinsics_file's
    intrinsics_file: str = ""
    extrinsics: bool = True  # also locate the camera in the robot base frame from the target at target_pose
    images: str = ""  # a folder of images (png/jpg) instead of live capture: intrinsics use all of them,
    extrinsics_images: str = ""  # ... extrinsics those in this folder (the target at target_pose)
    views: int = 15  # live: board views captured for intrinsics, one every capture_every_s (move the board)
    capture_every_s: float = 1.0
    extrinsics_views: int = 10  # live: frames of the static target at target_pose, averaged
    target: CalibrationTarget = field(default_factory=CalibrationTarget)
    target_pose: TargetPose = field(default_factory=TargetPose)
    max_rms_px: float = 2.0

    def __post_init__(self) -> None:
        check(self.intrinsics in INTRINSICS, "intrinsics", self.intrinsics, f"one of {list(INTRINSICS)}")
        check(self.views >= 1 and self.extrinsics_views >= 1, "views", (self.views, self.extrinsics_views), "views and extrinsics_views must be at least 1")
        check(self.capture_every_s > 0, "capture_every_s", self.capture_every_s, "must be positive")
        check(self.max_rms_px > 0, "max_rms_px", self.max_rms_px, "must be positive")


register_schema("calibrate_schema", CalibrateConfig)


def read_images(folder: str) -> list[np.ndarray]:
    import cv2

    paths = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    if not paths:
        raise ConfigError(f"invalid value for images: {folder!r} (no png/jpg images there)")
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def capture(camera, count: int, every_s: float, say) -> list[np.ndarray]:
    frames, last = [], -1
    while len(frames) < count:
        time.sleep(every_s)
        frame = camera.read_latest()
        if frame.frame_number != last:
            last = frame.frame_number
            frames.append(frame.image.copy())
            say(f"captured view {len(frames)}/{count}")
    return frames


def run(cfg: CalibrateConfig | DictConfig, say=print) -> dict:
    cfg = load_command_config(CalibrateConfig, cfg, "calibrate")
    target = cfg.target
    path = calibration_path(cfg.calibration_dir, cfg.setup, cfg.camera_name)
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True) if isinstance(cfg.env, DictConfig) else dict(cfg.env or {})
    # Only the cameras matter here; the tracker may name the very file this run is about to write.
    env_cfg.setdefault("hardware", {})["tracker"] = {"kind": "none"}
    env_cfg["privileged"] = False
    hw = load_hardware_config(load_env_config(env_cfg))
    if cfg.camera_name not in hw.cameras:
        raise ConfigError(f"invalid value for camera_name: {cfg.camera_name!r} (configured cameras: {sorted(hw.cameras)})")
    camera = None
    if not cfg.images or (cfg.extrinsics and not cfg.extrinsics_images) or cfg.intrinsics == "device":
        camera = make_camera(cfg.camera_name, hw.cameras[cfg.camera_name], MonotonicClock())
        camera.start()
        camera.wait_first_frame(max(2.0, hw.cameras[cfg.camera_name].timeout_s))
    result: dict = {"setup": cfg.setup, "camera": cfg.camera_name, "file": str(path)}
    try:
        if cfg.intrinsics == "charuco":
            images = read_images(cfg.images) if cfg.images else capture(camera, cfg.views, cfg.capture_every_s, say)
            size, K, dist, rms = calibrate_intrinsics(images, target)
            result["intrinsics"] = {"source": "charuco", "views": len(images), "rms_px": round(rms, 4)}
        elif cfg.intrinsics == "device":
            if camera.intrinsics is None:
                raise ConfigError(f"invalid value for intrinsics: 'device' (camera {cfg.camera_name!r} ({camera.kind}) reports no intrinsics; use charuco)")
            size, K, dist = intrinsics_from_device(camera.intrinsics)
            result["intrinsics"] = {"source": "device"}
        else:
            old = CameraCalibration.load(cfg.intrinsics_file, key="intrinsics_file")
            size, K, dist = old.image_size, old.camera_matrix, old.dist_coeffs
            result["intrinsics"] = {"source": str(cfg.intrinsics_file)}
        base_from_camera = np.eye(4)
        if cfg.extrinsics:
            images = read_images(cfg.extrinsics_images) if cfg.extrinsics_images else capture(camera, cfg.extrinsics_views, 0.1, say)
            h, w = images[0].shape[:2]
            if (w, h) != tuple(size):
                K, size = scaled_camera_matrix(K, size, w, h), (w, h)
            base_from_target = pose_from_xyz_rpy(cfg.target_pose.xyz, cfg.target_pose.rpy)
            base_from_camera, summary = extrinsics_from_target(images, target, base_from_target, K, dist, max_rms_px=cfg.max_rms_px)
            result["extrinsics"] = {**summary, "camera_position_m": np.round(base_from_camera[:3, 3], 4).tolist()}
        else:
            result["extrinsics"] = "not computed: base_from_camera is the identity (the tracker needs it for reward)"
    finally:
        if camera is not None:
            camera.stop()
    CameraCalibration(tuple(size), K, np.asarray(dist).ravel(), base_from_camera).save(path)
    result["image_size"] = list(size)
    result["fx_fy"] = [round(float(K[0, 0]), 2), round(float(K[1, 1]), 2)]
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="calibrate")
@exits.reported("calibrate", known=(CalibrationError,))
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    print(f"calibration written to {result['file']}; set env.hardware.tracker.calibration={result['file']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
