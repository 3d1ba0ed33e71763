"""A calibrated camera: intrinsics, distortion and where the camera sits in the robot base frame.

File format (YAML):
    image_size: [width, height]        # the resolution the intrinsics were calibrated at
    camera_matrix: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    dist_coeffs: [k1, k2, p1, p2, k3]  # OpenCV order; any length OpenCV accepts
    base_from_camera: 4x4 rows         # pose of the camera (OpenCV axes) in the robot base frame
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from robolearn.config import ConfigError


@dataclass(frozen=True)
class CameraCalibration:
    image_size: tuple[int, int]  # (width, height)
    camera_matrix: np.ndarray  # 3x3
    dist_coeffs: np.ndarray  # (k,)
    base_from_camera: np.ndarray  # 4x4

    @classmethod
    def load(cls, path: str | Path, key: str = "env.hardware.tracker.calibration") -> CameraCalibration:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"invalid value for {key}: {str(path)!r} (file not found)")
        try:
            raw = OmegaConf.to_container(OmegaConf.load(path))
        except Exception as exc:  # noqa: BLE001 - YAML errors come in several types
            raise ConfigError(f"invalid value for {key}: {str(path)!r} (not readable YAML: {exc})") from None
        for field in ("image_size", "camera_matrix", "dist_coeffs", "base_from_camera"):
            if field not in raw:
                raise ConfigError(f"invalid value for {key}: {str(path)!r} (missing {field!r})")
        K = np.asarray(raw["camera_matrix"], dtype=np.float64)
        T = np.asarray(raw["base_from_camera"], dtype=np.float64)
        size = tuple(int(x) for x in raw["image_size"])
        if K.shape != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ConfigError(f"invalid value for {key}: {str(path)!r} (camera_matrix must be 3x3 with positive fx, fy)")
        if T.shape != (4, 4) or not np.allclose(T[3], [0, 0, 0, 1]) or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-3):
            raise ConfigError(f"invalid value for {key}: {str(path)!r} (base_from_camera must be a 4x4 rigid transform)")
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError(f"invalid value for {key}: {str(path)!r} (image_size must be [width, height])")
        return cls(size, K, np.asarray(raw["dist_coeffs"], dtype=np.float64).ravel(), T)

    def for_image(self, width: int, height: int) -> np.ndarray:
        """Camera matrix for frames of another resolution (same field of view, scaled pixels)."""
        if (width, height) == self.image_size:
            return self.camera_matrix
        sx, sy = width / self.image_size[0], height / self.image_size[1]
        K = self.camera_matrix.copy()
        K[0] *= sx
        K[1] *= sy
        return K

    def save(self, path: str | Path) -> None:
        data = {
            "image_size": list(self.image_size),
            "camera_matrix": self.camera_matrix.tolist(),
            "dist_coeffs": self.dist_coeffs.tolist(),
            "base_from_camera": self.base_from_camera.tolist(),
        }
        Path(path).write_text(OmegaConf.to_yaml(OmegaConf.create(data)))
