"""Offscreen renderers configured for learning cameras (fast) or for people (video)."""

from __future__ import annotations

import mujoco

from robolearn.config import RenderConfig


def make_renderer(model: mujoco.MjModel, height: int, width: int, cfg: RenderConfig) -> mujoco.Renderer:
    renderer = mujoco.Renderer(model, height, width)
    flags = renderer.scene.flags
    flags[mujoco.mjtRndFlag.mjRND_SHADOW] = cfg.shadows
    flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = cfg.skybox_and_haze
    flags[mujoco.mjtRndFlag.mjRND_HAZE] = cfg.skybox_and_haze
    return renderer
