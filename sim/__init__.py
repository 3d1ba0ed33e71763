"""MuJoCo kettle-to-sink simulation implementing the robolearn environment contract."""

import robolearn  # noqa: F401  (sets the headless OpenGL backend before mujoco is imported)
from robolearn.process.llvm_order import load_triton_first

# Before dm_control or an EGL context brings in Mesa's LLVM (see robolearn.process.llvm_order).
load_triton_first()


def make_kettle_sink_env(cfg=None, render_mode=None, **overrides):
    """Factory named by `env.factory` in the configs."""
    from robolearn.config import load_env_config
    from sim.kettle_sink_env import KettleSinkEnv

    return KettleSinkEnv(load_env_config(cfg, **overrides), render_mode=render_mode)


def make_dmc_env(cfg=None, render_mode=None, **overrides):
    """Factory for dm_control suite tasks from pixels (see sim/dmc.py)."""
    from sim.dmc import make_dmc_env as make

    return make(cfg, render_mode=render_mode, **overrides)
