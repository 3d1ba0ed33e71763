"""Kettle and sink poses from ArUco markers seen by a calibrated camera (OpenCV's cv2.aruco).

One marker is fixed on the kettle, one beside the sink. Each detection is solved with IPPE (square
markers) into the camera frame and moved into the robot base frame with the calibration's extrinsics;
configured offsets then give the kettle frame origin, its handle and the sink basin centre. Poses older
than `max_pose_age_s` are not used: reward and success become unknown instead of wrong.
"""

from __future__ import annotations

import cv2
import numpy as np

from hardware.cameras.base import Frame
from hardware.config import TrackerConfig
from hardware.tracking.calibration import CameraCalibration
from robolearn.config import ConfigError
from robolearn.spec import PRIVILEGED_DIM
from robolearn.task import KettleGeometry, SinkGeometry, TaskState


class ArucoTracker:
    name = "aruco"

    def __init__(self, cfg: TrackerConfig, calibration: CameraCalibration):
        if not hasattr(cv2, "aruco"):
            raise ConfigError("env.hardware.tracker.kind: aruco needs OpenCV with the aruco module (opencv-contrib or opencv >= 4.7)")
        dict_id = getattr(cv2.aruco, cfg.dictionary, None)
        if not isinstance(dict_id, int):
            raise ConfigError(f"invalid value for env.hardware.tracker.dictionary: {cfg.dictionary!r} (not a cv2.aruco predefined dictionary)")
        self.cfg = cfg
        self.camera = cfg.camera
        self.calibration = calibration
        params = cv2.aruco.DetectorParameters()
        # Whole-pixel corners put centimetres of error into a pose at a metre: refine to sub-pixel.
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        self._detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(dict_id), params)
        s = cfg.marker_size_m / 2.0
        # Corner order cv2.aruco reports (and SOLVEPNP_IPPE_SQUARE expects): TL, TR, BR, BL; z out of the marker.
        self._object_points = np.array([[-s, s, 0], [s, s, 0], [s, -s, 0], [-s, -s, 0]], dtype=np.float64)
        self.kettle = KettleGeometry(radius=cfg.kettle_radius, bottom_offset=cfg.kettle_bottom_offset)
        self._kettle_offset = np.asarray(cfg.kettle_origin_in_marker, dtype=np.float64)
        self._handle_offset = np.asarray(cfg.handle_in_kettle, dtype=np.float64)
        self._sink_offset = np.asarray(cfg.sink_centre_in_marker, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        self._kettle_pose: np.ndarray | None = None  # 4x4 base_from_kettle
        self._kettle_time = -np.inf
        self._kettle_vel = np.zeros(3)
        self._sink_centre: np.ndarray | None = None
        self._sink_time = -np.inf
        self._last_frame = -1

    # -- detection ---------------------------------------------------------------------------------
    def detect(self, image_rgb: np.ndarray) -> dict[int, np.ndarray]:
        """Poses (4x4, robot base frame) of the markers visible in the image, by marker id."""
        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        corners, ids, _ = self._detector.detectMarkers(gray)
        out: dict[int, np.ndarray] = {}
        if ids is None:
            return out
        h, w = gray.shape
        K = self.calibration.for_image(w, h)
        for marker_corners, marker_id in zip(corners, ids.ravel()):
            ok, rvec, tvec = cv2.solvePnP(self._object_points, marker_corners.reshape(4, 2).astype(np.float64), K, self.calibration.dist_coeffs, flags=cv2.SOLVEPNP_IPPE_SQUARE)
            if not ok:
                continue
            cam_from_marker = np.eye(4)
            cam_from_marker[:3, :3] = cv2.Rodrigues(rvec)[0]
            cam_from_marker[:3, 3] = tvec.ravel()
            out[int(marker_id)] = self.calibration.base_from_camera @ cam_from_marker
        return out

    def update(self, frame: Frame) -> None:
        """Fold in a camera frame (the same frame twice is ignored)."""
        if frame.frame_number == self._last_frame:
            return
        self._last_frame = frame.frame_number
        poses = self.detect(frame.image)
        t = frame.host_time
        kettle = poses.get(self.cfg.kettle_marker_id)
        if kettle is not None:
            pose = kettle.copy()
            pose[:3, 3] = kettle[:3, :3] @ self._kettle_offset + kettle[:3, 3]
            if self._kettle_pose is not None and t > self._kettle_time:
                self._kettle_vel = (pose[:3, 3] - self._kettle_pose[:3, 3]) / (t - self._kettle_time)
            else:
                self._kettle_vel = np.zeros(3)
            self._kettle_pose, self._kettle_time = pose, t
        sink = poses.get(self.cfg.sink_marker_id)
        if sink is not None:
            self._sink_centre = sink[:3, :3] @ self._sink_offset + sink[:3, 3]
            self._sink_time = t

    # -- what the env asks -------------------------------------------------------------------------
    def fresh(self, now: float) -> bool:
        age = self.cfg.max_pose_age_s
        return now - self._kettle_time <= age and now - self._sink_time <= age

    def task_state(self, now: float, tcp_pos: np.ndarray) -> tuple[TaskState, SinkGeometry] | None:
        if not self.fresh(now):
            return None
        pose = self._kettle_pose
        sink = SinkGeometry(centre=self._sink_centre.copy(), half_size=tuple(self.cfg.sink_half_size), depth=self.cfg.sink_depth)
        state = TaskState(
            kettle_pos=pose[:3, 3].copy(),
            kettle_lin_vel=self._kettle_vel.copy(),
            handle_pos=pose[:3, :3] @ self._handle_offset + pose[:3, 3],
            tcp_pos=np.asarray(tcp_pos, dtype=np.float64),
        )
        return state, sink

    def privileged(self, now: float) -> np.ndarray | None:
        """Kettle position and quaternion (w, x, y, z), handle position, sink position: the contract's layout."""
        if not self.fresh(now):
            return None
        pose = self._kettle_pose
        handle = pose[:3, :3] @ self._handle_offset + pose[:3, 3]
        out = np.concatenate([pose[:3, 3], quaternion_wxyz(pose[:3, :3]), handle, self._sink_centre]).astype(np.float32)
        assert out.shape == (PRIVILEGED_DIM,)
        return out


def quaternion_wxyz(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z, w >= 0) of a rotation matrix."""
    m = R
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q
