"""Visual randomisation: materials and textures, lighting and shadows, camera pose and field of view, distractors.

(Today: colour brightness/hue, light intensity/direction and camera pose jitter; the rest is to be built.)"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from robolearn.config import RandomizationConfig
from sim.scene import Scene


class VisualRandomizer:
    """Remembers the nominal model values and perturbs them around those on every reset."""

    def __init__(self, scene: Scene, cfg: RandomizationConfig):
        self.scene, self.cfg = scene, cfg
        m = scene.model
        self._rgba = m.geom_rgba.copy()
        self._light_diffuse = m.light_diffuse.copy()
        self._light_dir = m.light_dir.copy()
        self._cam_pos = m.cam_pos.copy()
        self._cam_quat = m.cam_quat.copy()
        self._cam_fovy = m.cam_fovy.copy()
        self.shadows = False
        self.drawn: dict[str, Any] = {}

    def apply(self, rng: np.random.Generator | None) -> None:
        """None: the nominal scene."""
        m, cfg = self.scene.model, self.cfg
        m.geom_rgba[:] = self._rgba
        m.light_diffuse[:] = self._light_diffuse
        m.light_dir[:] = self._light_dir
        m.cam_pos[:] = self._cam_pos
        m.cam_quat[:] = self._cam_quat
        m.cam_fovy[:] = self._cam_fovy
        self.shadows = False
        self.drawn = {}
        if rng is None:
            return
        if cfg.materials.enabled:
            for geoms in (self.scene.kettle_geoms, self.scene.counter_geoms):
                # One brightness change and a slight hue shift per object keep it one recognisable thing.
                brightness = rng.uniform(0.8, 1.2)
                shift = rng.uniform(-0.04, 0.04, size=3)
                m.geom_rgba[geoms, :3] = np.clip(self._rgba[geoms, :3] * brightness + shift, 0.0, 1.0)
        if cfg.lighting.enabled:
            n = m.nlight
            m.light_diffuse[:] = np.clip(self._light_diffuse * rng.uniform(*cfg.lighting.intensity, size=(n, 1)), 0.0, 1.0)
            direction = self._light_dir + rng.normal(0.0, cfg.lighting.direction / 2, size=(n, 3))
            m.light_dir[:] = direction / np.linalg.norm(direction, axis=1, keepdims=True)
        cam = cfg.camera
        if cam.pos > 0 or cam.angle > 0 or cam.fovy > 0:
            for idx in self.scene.camera_ids.values():
                m.cam_pos[idx] = self._cam_pos[idx] + _direction(rng) * _length(rng, cam.pos, cam.exact)
                turn = np.empty(4)
                mujoco.mju_axisAngle2Quat(turn, _direction(rng), _length(rng, cam.angle, cam.exact))
                mujoco.mju_mulQuat(m.cam_quat[idx], self._cam_quat[idx], turn)
                m.cam_fovy[idx] = self._cam_fovy[idx] + rng.choice([-1.0, 1.0]) * _length(rng, cam.fovy, cam.exact)


def _direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _length(rng: np.random.Generator, most: float, exact: bool) -> float:
    return most if exact else rng.uniform(0.0, most)
