"""The camera calibration file, and the sim camera it implies.

`python -m hardware.calibrate` writes the file on the bench; the real env's tracker and the sim's cameras
(`env.cameras[i].calibration`) read it. The format is the contract between the two sides, so it lives
here, in the core, which imports neither (hardware.tracking.calibration reads and writes through it).

File format (YAML):
    image_size: [width, height]        # the resolution the intrinsics were calibrated at
    camera_matrix: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    dist_coeffs: [k1, k2, p1, p2, k3]  # OpenCV order; any length OpenCV accepts
    base_from_camera: 4x4 rows         # pose of the camera (OpenCV axes: x right, y down, z forward)
                                       # in the robot base frame, metres

A MuJoCo camera looks along its -z with y up: its frame is the OpenCV frame turned by pi about x. It is a
square-pixel pinhole with the principal point at the image centre and no distortion, so only the pose and
the vertical field of view carry over; what the sim cannot reproduce is reported (`SimCamera.mismatch`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from robolearn.config import ConfigError

FIELDS = ("image_size", "camera_matrix", "dist_coeffs", "base_from_camera")

# What the sim can match, at the learning image's resolution: beyond these the mismatch is reported.
PRINCIPAL_POINT_TOLERANCE_PX = 1.5
ASPECT_TOLERANCE = 0.02  # relative difference of fx and fy
DISTORTION_TOLERANCE_PX = 1.0  # shift of the image corner by the lens distortion

# MuJoCo's camera axes in OpenCV's: x kept, y and z flipped (a turn of pi about x).
_OPENCV_TO_MUJOCO = np.diag([1.0, -1.0, -1.0])

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationFile:
    image_size: tuple[int, int]  # (width, height)
    camera_matrix: np.ndarray  # 3x3
    dist_coeffs: np.ndarray  # (k,)
    base_from_camera: np.ndarray  # 4x4, OpenCV camera axes


def read_calibration(path: str | Path, key: str) -> CalibrationFile:
    """The file at `path`, validated; a missing or malformed file is a ConfigError naming `key` and what is wrong."""
    path = Path(path)

    def bad(why: str) -> ConfigError:
        return ConfigError(f"invalid value for {key}: {str(path)!r} ({why})")

    if not path.is_file():
        raise bad("file not found")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:  # noqa: BLE001 - YAML errors come in several types
        raise bad(f"not readable YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise bad(f"not a mapping with {list(FIELDS)}")
    for name in FIELDS:
        if name not in raw:
            raise bad(f"missing {name!r}")
    try:
        K = np.asarray(raw["camera_matrix"], dtype=np.float64)
        T = np.asarray(raw["base_from_camera"], dtype=np.float64)
        dist = np.asarray(raw["dist_coeffs"], dtype=np.float64).ravel()
        size = tuple(int(x) for x in raw["image_size"])
    except (TypeError, ValueError) as exc:
        raise bad(f"not numbers: {exc}") from None
    if K.shape != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise bad("camera_matrix must be 3x3 with positive fx, fy")
    if T.shape != (4, 4) or not np.allclose(T[3], [0, 0, 0, 1]) or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-3) \
            or np.linalg.det(T[:3, :3]) < 0:
        raise bad("base_from_camera must be a 4x4 rigid transform")
    if len(size) != 2 or min(size) <= 0:
        raise bad("image_size must be [width, height]")
    return CalibrationFile(size, K, dist, T)


def write_calibration(path: str | Path, calibration: CalibrationFile) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    data = {
        "image_size": [int(v) for v in calibration.image_size],
        "camera_matrix": np.asarray(calibration.camera_matrix, dtype=float).tolist(),
        "dist_coeffs": np.asarray(calibration.dist_coeffs, dtype=float).ravel().tolist(),
        "base_from_camera": np.asarray(calibration.base_from_camera, dtype=float).tolist(),
    }
    Path(path).write_text(OmegaConf.to_yaml(OmegaConf.create(data)))


def learning_crop(frame_width: int, frame_height: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The centred region (x0, y0, w, h) of a frame with the learning image's aspect ratio. The real env crops
    it and then resizes it to width x height (hardware/env.py), so its pixels stay square as the sim's are: a
    4:3 frame squeezed to 84x84 whole would show the policy a third more width than the sim camera does."""
    target = width / height
    if frame_width / frame_height > target:
        crop_w, crop_h = min(frame_width, round(frame_height * target)), frame_height
    else:
        crop_w, crop_h = frame_width, min(frame_height, round(frame_width / target))
    return (frame_width - crop_w) // 2, (frame_height - crop_h) // 2, crop_w, crop_h


def scaled_camera_matrix(camera_matrix: np.ndarray, image_size: tuple[int, int], width: int, height: int) -> np.ndarray:
    """The camera matrix of the image the real env makes from a frame of `image_size`: the centred crop to
    width:height (`learning_crop`; nothing for a frame of that aspect already), resized to width x height."""
    x0, y0, crop_w, crop_h = learning_crop(image_size[0], image_size[1], width, height)
    K = np.array(camera_matrix, dtype=np.float64)
    K[0, 2] -= x0
    K[1, 2] -= y0
    K[0] *= width / crop_w
    K[1] *= height / crop_h
    return K


def quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z), w >= 0, of a rotation matrix."""
    m = np.asarray(R, dtype=np.float64)
    # Shepperd: pick the largest of the four squared components to divide by, for precision.
    t = np.trace(m)
    candidates = [t, m[0, 0], m[1, 1], m[2, 2]]
    i = int(np.argmax(candidates))
    if i == 0:
        s = 2.0 * math.sqrt(1.0 + t)
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif i == 1:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif i == 2:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4]
    q = np.asarray(q) / np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def mujoco_camera_pose(base_from_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pos, quat w x y z) of a MuJoCo camera where an OpenCV camera sits at `base_from_camera`."""
    T = np.asarray(base_from_camera, dtype=np.float64)
    return T[:3, 3].copy(), quat_from_matrix(T[:3, :3] @ _OPENCV_TO_MUJOCO)


@dataclass(frozen=True)
class SimCamera:
    """Where the sim's camera goes (in the base frame, MuJoCo axes) and its field of view, for an image of
    width x height; `mismatch` lists what of the real camera the sim's pinhole cannot reproduce."""

    pos: np.ndarray
    quat: np.ndarray  # w x y z
    fovy: float  # deg
    width: int
    height: int
    mismatch: list[str] = field(default_factory=list)

    def overrides(self, index: int) -> list[str]:
        """Hydra overrides that put env.cameras[index] here without the calibration file."""
        def fmt(values) -> str:
            return "[" + ",".join(f"{float(v):.6g}" for v in values) + "]"

        prefix = f"env.cameras.{index}"
        return [f"{prefix}.pos={fmt(self.pos)}", f"{prefix}.quat={fmt(self.quat)}", f"{prefix}.look_at=null", f"{prefix}.fovy={self.fovy:.6g}"]


def sim_camera(calibration: CalibrationFile, width: int, height: int) -> SimCamera:
    """The sim camera that sees what the calibrated camera sees once its frame is resized to width x height."""
    K = scaled_camera_matrix(calibration.camera_matrix, calibration.image_size, width, height)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    fovy = math.degrees(2.0 * math.atan(height / 2.0 / fy))
    pos, quat = mujoco_camera_pose(calibration.base_from_camera)
    mismatch = []
    # The sim's principal point is the image centre: pixel (w - 1) / 2 in OpenCV's pixel-centre coordinates.
    off = (cx - (width - 1) / 2.0, cy - (height - 1) / 2.0)
    if max(abs(off[0]), abs(off[1])) > PRINCIPAL_POINT_TOLERANCE_PX:
        mismatch.append(f"principal point off-centre by ({off[0]:+.1f}, {off[1]:+.1f}) px at {width}x{height}")
    if abs(fx / fy - 1.0) > ASPECT_TOLERANCE:
        mismatch.append(f"fx/fy = {fx / fy:.3f} at {width}x{height} (the sim's pixels are square: its horizontal field of view differs;"
                        f" a {calibration.image_size[0]}x{calibration.image_size[1]} frame resized to {width}x{height} changes the aspect)")
    shift = _corner_distortion_px(calibration.dist_coeffs, K, width, height)
    if shift > DISTORTION_TOLERANCE_PX:
        mismatch.append(f"lens distortion moves the image corners by {shift:.1f} px at {width}x{height} (the sim has none)")
    return SimCamera(pos, quat, fovy, width, height, mismatch)


def load_sim_camera(path: str | Path, width: int, height: int, key: str) -> SimCamera:
    """`sim_camera` of the file at `path`; logs one warning line when the sim cannot reproduce the camera exactly."""
    camera = sim_camera(read_calibration(path, key), width, height)
    if camera.mismatch:
        log.warning("%s: %s: the sim camera approximates it: %s", key, path, "; ".join(camera.mismatch))
    return camera


def _corner_distortion_px(dist: np.ndarray, K: np.ndarray, width: int, height: int) -> float:
    """How far OpenCV's distortion model (k1 k2 p1 p2 [k3]) moves the farthest image corner, in pixels."""
    d = np.zeros(5)
    d[: min(5, len(dist))] = np.asarray(dist, dtype=np.float64)[:5]
    k1, k2, p1, p2, k3 = d
    worst = 0.0
    for u, v in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)):
        x, y = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
        r2 = x * x + y * y
        radial = k1 * r2 + k2 * r2 * r2 + k3 * r2 ** 3
        dx = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        worst = max(worst, math.hypot(dx * K[0, 0], dy * K[1, 1]))
    return worst
