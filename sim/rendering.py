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


def upload_textures(renderer: mujoco.Renderer, model: mujoco.MjModel) -> None:
    """Copy the model's current texels to the renderer's GL context.

    A renderer uploads textures once, when it is made; after the randomisation rewrites `model.tex_data`
    every renderer made before must upload again (a few 64x64 textures: well under a millisecond)."""
    gl = getattr(renderer, "_gl_context", None)
    if gl is not None:
        gl.make_current()  # uploads go to whichever context is current
    for texid in range(model.ntex):
        mujoco.mjr_uploadTexture(model, renderer._mjr_context, texid)
