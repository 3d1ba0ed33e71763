"""Image-level randomisation of rendered frames: what a real sensor and its auto-exposure add.

Per episode and camera: a brightness offset, a contrast gain about mid-grey, and whether the camera is out of
focus (a Gaussian blur); per frame: Gaussian pixel noise. Blur comes first (optics), then gain and offset, then
noise (the sensor). uint8 in, uint8 out; with no generator (randomisation off) frames pass untouched.

Fresh normals for every pixel of every frame cost more than the rest of the env step's Python here (~0.3 ms a
frame), so each camera draws a noise field twice the frame's size once per episode and every frame takes a
window of it at a random offset: still i.i.d. per pixel within a frame, at ~1/30 of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from robolearn.config import ImageRandomization

BLUR_SIGMA = (0.5, 1.0)  # px at 84x84: a slightly soft lens, not a smear


@dataclass(frozen=True)
class CameraEffect:
    """One camera's draws for one episode."""

    brightness: float  # added, 0-255 units
    contrast: float  # gain about mid-grey
    blur_sigma: float  # px; 0 = in focus


class ImageRandomizer:
    def __init__(self, cfg: ImageRandomization, cameras: list[str]):
        self.cfg, self.cameras = cfg, cameras
        self.rng: np.random.Generator | None = None
        self.effects: dict[str, CameraEffect] = {}
        self._noise: dict[str, np.ndarray] = {}  # camera -> this episode's noise field (made at its first frame)

    def reset(self, rng: np.random.Generator | None) -> None:
        """None: frames pass unchanged this episode."""
        self.rng, self.effects, self._noise = rng, {}, {}
        if rng is None:
            return
        cfg = self.cfg
        for camera in self.cameras:  # in the config's camera order: the same draws every time
            brightness = 255.0 * rng.uniform(-cfg.brightness, cfg.brightness)
            contrast = rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast)
            sigma = rng.uniform(*BLUR_SIGMA)
            blurred = rng.random() < cfg.blur_probability
            self.effects[camera] = CameraEffect(brightness, contrast, sigma if blurred else 0.0)

    def __call__(self, camera: str, frame: np.ndarray) -> np.ndarray:
        if self.rng is None:
            return frame
        effect = self.effects[camera]
        if effect.blur_sigma > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), effect.blur_sigma)
        out = frame.astype(np.float32)
        out -= 127.5
        out *= effect.contrast
        out += 127.5 + effect.brightness
        if self.cfg.noise_std > 0:
            out += self._noise_window(camera, out.shape)
        np.clip(out, 0.0, 255.0, out=out)
        return np.rint(out, out=out).astype(np.uint8)

    def _noise_window(self, camera: str, shape: tuple[int, ...]) -> np.ndarray:
        h, w = shape[:2]
        field = self._noise.get(camera)
        if field is None:
            field = self._noise[camera] = self.cfg.noise_std * self.rng.standard_normal((2 * h, 2 * w, *shape[2:]), dtype=np.float32)
        y, x = self.rng.integers(h + 1), self.rng.integers(w + 1)
        return field[y : y + h, x : x + w]
