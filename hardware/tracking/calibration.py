"""A calibrated camera: intrinsics, distortion and where the camera sits in the robot base frame, and
the functions that compute one (`python -m hardware.calibrate`).

Intrinsics come from views of a ChArUco board (cv2.aruco.CharucoDetector + cv2.calibrateCamera) or from
a RealSense stream profile; extrinsics from a ChArUco board or one ArUco marker at a measured pose in
the robot base frame. Target frames follow OpenCV: a ChArUco board's origin is the outer corner of its
first square (the top-left of the printed image), x along the first row, y down the columns, z into the board; an ArUco
marker's origin is its centre, z out of the printed face. Files live per setup:
`<calibration dir>/<setup>/<camera>.yaml`, and `env.hardware.tracker.calibration` names one.

The file format is robolearn.camera_calibration's (the core reads it too, to put the sim's camera where the
bench's is): image_size, camera_matrix, dist_coeffs, base_from_camera (OpenCV axes, robot base frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robolearn.camera_calibration import CalibrationFile, read_calibration, scaled_camera_matrix, write_calibration
from robolearn.config import ConfigError


@dataclass(frozen=True)
class CameraCalibration:
    image_size: tuple[int, int]  # (width, height)
    camera_matrix: np.ndarray  # 3x3
    dist_coeffs: np.ndarray  # (k,)
    base_from_camera: np.ndarray  # 4x4

    @classmethod
    def load(cls, path: str | Path, key: str = "env.hardware.tracker.calibration") -> CameraCalibration:
        f = read_calibration(path, key)
        return cls(f.image_size, f.camera_matrix, f.dist_coeffs, f.base_from_camera)

    def for_image(self, width: int, height: int) -> np.ndarray:
        """Camera matrix for frames of another resolution (same field of view, scaled pixels)."""
        if (width, height) == self.image_size:
            return self.camera_matrix
        return scaled_camera_matrix(self.camera_matrix, self.image_size, width, height)

    def save(self, path: str | Path) -> None:
        write_calibration(path, CalibrationFile(self.image_size, self.camera_matrix, self.dist_coeffs, self.base_from_camera))


# -- calibrating -----------------------------------------------------------------------------------------
# Camera intrinsics from views of a ChArUco board (OpenCV's ChArUco detector and calibrateCamera) or from
# a RealSense stream profile; extrinsics (where the camera sits in the robot base frame) from a ChArUco
# board or a single ArUco marker placed at a measured pose in the base frame.


class CalibrationError(RuntimeError):
    """Calibration could not be computed; the message says what was missing (views, corners, target)."""


@dataclass  # not frozen: it is the `target` node of the calibrate command's schema, which Hydra overrides
class CalibrationTarget:
    """A printed calibration target. kind 'charuco': a squares_x x squares_y board; kind 'aruco': one marker
    of side `marker_m` with id `marker_id` (extrinsics only)."""

    kind: str = "charuco"
    squares_x: int = 5
    squares_y: int = 7
    square_m: float = 0.04
    marker_m: float = 0.03
    marker_id: int = 0
    dictionary: str = "DICT_4X4_50"

    def __post_init__(self) -> None:
        import cv2

        if self.kind not in ("charuco", "aruco"):
            raise ConfigError(f"invalid value for calibrate.target.kind: {self.kind!r} (charuco or aruco)")
        if not isinstance(getattr(cv2.aruco, self.dictionary, None), int):
            raise ConfigError(f"invalid value for calibrate.target.dictionary: {self.dictionary!r} (not a cv2.aruco predefined dictionary)")
        if self.kind == "charuco":
            if self.squares_x < 3 or self.squares_y < 3:
                raise ConfigError(f"invalid value for calibrate.target.squares_x/squares_y: {self.squares_x}x{self.squares_y} (at least 3x3)")
            if not 0 < self.marker_m < self.square_m:
                raise ConfigError(f"invalid value for calibrate.target.marker_m: {self.marker_m!r} (must be positive and below square_m {self.square_m!r})")
        elif not self.marker_m > 0:
            raise ConfigError(f"invalid value for calibrate.target.marker_m: {self.marker_m!r} (must be positive)")

    def dictionary_object(self):
        import cv2

        return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))

    def board(self):
        import cv2

        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_m, self.marker_m, self.dictionary_object())


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def target_points(image: np.ndarray, target: CalibrationTarget) -> tuple[np.ndarray, np.ndarray] | None:
    """(object points in the target frame (N, 3), image points (N, 2)) of the target in an RGB or grey
    image, or None if too little of it is visible (ChArUco: 6 corners; ArUco: the marker)."""
    import cv2

    gray = _gray(image)
    if target.kind == "charuco":
        board = target.board()
        corners, ids, _, _ = cv2.aruco.CharucoDetector(board).detectBoard(gray)
        if ids is None or len(ids) < 6:
            return None
        obj, img = board.matchImagePoints(corners, ids)
        return obj.reshape(-1, 3).astype(np.float64), img.reshape(-1, 2).astype(np.float64)
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    corners, ids, _ = cv2.aruco.ArucoDetector(target.dictionary_object(), params).detectMarkers(gray)
    if ids is None or target.marker_id not in ids.ravel():
        return None
    s = target.marker_m / 2.0
    obj = np.array([[-s, s, 0], [s, s, 0], [s, -s, 0], [-s, -s, 0]], dtype=np.float64)  # TL, TR, BR, BL
    return obj, corners[list(ids.ravel()).index(target.marker_id)].reshape(4, 2).astype(np.float64)


def calibrate_intrinsics(images: list[np.ndarray], target: CalibrationTarget, min_views: int = 5) -> tuple[tuple[int, int], np.ndarray, np.ndarray, float]:
    """(image_size, camera_matrix, dist_coeffs, rms reprojection error in px) from ChArUco views."""
    import cv2

    if target.kind != "charuco":
        raise CalibrationError("intrinsics need a ChArUco board (calibrate.target.kind: charuco)")
    if not images:
        raise CalibrationError("no images to calibrate from")
    h, w = images[0].shape[:2]
    objects, points = [], []
    for i, image in enumerate(images):
        if image.shape[:2] != (h, w):
            raise CalibrationError(f"image {i} is {image.shape[1]}x{image.shape[0]}, the first is {w}x{h}: one resolution per calibration")
        found = target_points(image, target)
        if found is not None:
            objects.append(found[0].astype(np.float32))
            points.append(found[1].astype(np.float32))
    if len(objects) < min_views:
        raise CalibrationError(f"the board was found in {len(objects)} of {len(images)} images; need at least {min_views} (tilt and move the board across the view)")
    rms, K, dist, _, _ = cv2.calibrateCamera(objects, points, (w, h), None, None)
    return (w, h), K, dist.ravel(), float(rms)


def intrinsics_from_device(intrinsics: dict) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """(image_size, camera_matrix, dist_coeffs) from a camera's reported intrinsics (RealSense profile)."""
    try:
        K = np.array([[intrinsics["fx"], 0.0, intrinsics["ppx"]], [0.0, intrinsics["fy"], intrinsics["ppy"]], [0.0, 0.0, 1.0]])
        size = (int(intrinsics["width"]), int(intrinsics["height"]))
        coeffs = np.asarray(intrinsics.get("coeffs", [0.0] * 5), dtype=np.float64)
    except (KeyError, TypeError) as exc:
        raise CalibrationError(f"device intrinsics lack {exc}: {intrinsics!r}") from None
    model = str(intrinsics.get("model", ""))
    if np.any(coeffs) and "brown" not in model.lower():
        # RealSense colour streams report Inverse/Modified Brown-Conrady; OpenCV's model is Brown-Conrady.
        raise CalibrationError(f"device distortion model {model!r} is not OpenCV's; calibrate intrinsics with a ChArUco board instead")
    return size, K, coeffs


def camera_from_target(image: np.ndarray, target: CalibrationTarget, camera_matrix: np.ndarray, dist_coeffs: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(4x4 pose of the target in the camera frame, rms reprojection error in px), or None if not seen."""
    import cv2

    found = target_points(image, target)
    if found is None:
        return None
    obj, img = found
    flags = cv2.SOLVEPNP_IPPE_SQUARE if target.kind == "aruco" else cv2.SOLVEPNP_ITERATIVE
    ok, rvec, tvec = cv2.solvePnP(obj, img, camera_matrix, dist_coeffs, flags=flags)
    if not ok:
        return None
    projected, _ = cv2.projectPoints(obj, rvec, tvec, camera_matrix, dist_coeffs)
    rms = float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - img) ** 2, axis=1))))
    pose = np.eye(4)
    pose[:3, :3] = cv2.Rodrigues(rvec)[0]
    pose[:3, 3] = tvec.ravel()
    return pose, rms


def pose_from_xyz_rpy(xyz, rpy) -> np.ndarray:
    """4x4 pose from a position (m) and roll, pitch, yaw (rad, applied as Rz(yaw) Ry(pitch) Rx(roll))."""
    r, p, y = (float(a) for a in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    pose = np.eye(4)
    pose[:3, :3] = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]]) @ np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]]) @ np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    pose[:3, 3] = np.asarray(xyz, dtype=np.float64)
    return pose


def average_poses(poses: list[np.ndarray]) -> np.ndarray:
    """Mean translation and the rotation nearest (Frobenius) to the mean rotation matrix."""
    if not poses:
        raise CalibrationError("no poses to average")
    R = np.mean([p[:3, :3] for p in poses], axis=0)
    U, _, Vt = np.linalg.svd(R)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    out = np.eye(4)
    out[:3, :3] = U @ D @ Vt
    out[:3, 3] = np.mean([p[:3, 3] for p in poses], axis=0)
    return out


def extrinsics_from_target(images: list[np.ndarray], target: CalibrationTarget, base_from_target: np.ndarray, camera_matrix: np.ndarray,
                           dist_coeffs: np.ndarray, min_views: int = 1, max_rms_px: float = 2.0) -> tuple[np.ndarray, dict]:
    """base_from_camera from views of a target at a known pose in the robot base frame (measured, e.g.,
    by touching its origin with the TCP). Returns the pose and a summary (views used, rms, spread)."""
    cams = []
    worst = 0.0
    for image in images:
        found = camera_from_target(image, target, camera_matrix, dist_coeffs)
        if found is None or found[1] > max_rms_px:
            continue
        cams.append(found[0])
        worst = max(worst, found[1])
    if len(cams) < min_views:
        raise CalibrationError(f"the {target.kind} target was found in {len(cams)} of {len(images)} images (need {min_views}); is it in view and the right dictionary/size?")
    base_from_camera = [base_from_target @ np.linalg.inv(c) for c in cams]
    mean = average_poses(base_from_camera)
    spread = float(max(np.linalg.norm(p[:3, 3] - mean[:3, 3]) for p in base_from_camera))
    return mean, {"views": len(cams), "worst_rms_px": round(worst, 3), "position_spread_m": round(spread, 5)}


def calibration_path(directory: str | Path, setup: str, camera: str) -> Path:
    """Where a setup's calibration of one camera lives: <directory>/<setup>/<camera>.yaml."""
    if not setup or "/" in setup or setup.startswith("."):
        raise ConfigError(f"invalid value for calibrate.setup: {setup!r} (a plain name, e.g. lab_bench_1)")
    return Path(directory) / setup / f"{camera}.yaml"
