"""Image-level randomisation of rendered frames: brightness, contrast, noise, blur (to be built)."""

from __future__ import annotations

import numpy as np

from robolearn.config import ImageRandomization


class ImageRandomizer:
    def __init__(self, cfg: ImageRandomization, cameras: list[str]):
        self.cfg, self.cameras = cfg, cameras
        self.rng: np.random.Generator | None = None

    def reset(self, rng: np.random.Generator | None) -> None:
        """None: frames pass unchanged this episode."""
        self.rng = rng

    def __call__(self, camera: str, frame: np.ndarray) -> np.ndarray:
        return frame
