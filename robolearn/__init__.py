"""robolearn core: the environment contract, policies, evaluation and benchmarks.

It never imports `sim` or `hardware`: configs name the env factory, and launchers wire pieces together.
"""

import os

__version__ = "0.1.0"

# MuJoCo picks its OpenGL backend when it is first imported. Headless machines have no display, so
# default to EGL before anything imports mujoco; an explicit MUJOCO_GL always wins.
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

# After the backend choice above: `gymnasium.make("robolearn/KettleSink-v0", ...)` works once robolearn is imported.
from robolearn.registration import register_envs  # noqa: E402

register_envs()
