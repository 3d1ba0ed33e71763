"""Seeded visual randomisation: colours, lighting and camera jitter, applied to the compiled model."""

from __future__ import annotations

import mujoco
import numpy as np

from robolearn.config import RandomizationConfig
from sim.scene import Scene


class SceneRandomizer:
    """Remembers the nominal model values and perturbs them around those on every reset."""

    def __init__(self, scene: Scene, cfg: RandomizationConfig):
        self.scene, self.cfg = scene, cfg
        m = scene.model
        self._rgba = m.geom_rgba.copy()
        self._light_diffuse = m.light_diffuse.copy()
        self._light_dir = m.light_dir.copy()
        self._cam_pos = m.cam_pos.copy()
        self._cam_quat = m.cam_quat.copy()

    def apply(self, rng: np.random.Generator) -> None:
        m, cfg = self.scene.model, self.cfg
        m.geom_rgba[:] = self._rgba
        m.light_diffuse[:] = self._light_diffuse
        m.light_dir[:] = self._light_dir
        m.cam_pos[:] = self._cam_pos
        m.cam_quat[:] = self._cam_quat
        if cfg.colours:
            for geoms in (self.scene.kettle_geoms, self.scene.counter_geoms):
                # One brightness change and a slight hue shift per object keep it one recognisable thing.
                brightness = rng.uniform(0.8, 1.2)
                shift = rng.uniform(-0.04, 0.04, size=3)
                m.geom_rgba[geoms, :3] = np.clip(self._rgba[geoms, :3] * brightness + shift, 0.0, 1.0)
        if cfg.lighting:
            n = m.nlight
            m.light_diffuse[:] = np.clip(self._light_diffuse * rng.uniform(0.7, 1.3, size=(n, 1)), 0.0, 1.0)
            direction = self._light_dir + rng.normal(0.0, 0.15, size=(n, 3))
            m.light_dir[:] = direction / np.linalg.norm(direction, axis=1, keepdims=True)
        if cfg.camera_pos_jitter > 0 or cfg.camera_angle_jitter > 0:
            for cam in self.scene.camera_ids.values():
                m.cam_pos[cam] = self._cam_pos[cam] + rng.uniform(-1, 1, size=3) * cfg.camera_pos_jitter
                axis = rng.normal(size=3)
                axis /= np.linalg.norm(axis)
                turn = np.empty(4)
                mujoco.mju_axisAngle2Quat(turn, axis, rng.uniform(-1, 1) * cfg.camera_angle_jitter)
                mujoco.mju_mulQuat(m.cam_quat[cam], self._cam_quat[cam], turn)
