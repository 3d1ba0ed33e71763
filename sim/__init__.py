"""MuJoCo kettle-to-sink simulation implementing the robolearn environment contract."""

import os

# Headless machines have no display: render offscreen through EGL unless the user chose a backend.
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def make_kettle_sink_env(cfg=None, render_mode=None, **overrides):
    """Factory named by `env.factory` in the configs."""
    from sim.kettle_sink_env import KettleSinkEnv

    from robolearn.config import load_env_config

    return KettleSinkEnv(load_env_config(cfg, **overrides), render_mode=render_mode)
