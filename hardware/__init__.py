"""Hardware-abstraction layer: robot drivers, cameras, safety layer and the real-robot env.

It implements the same environment contract as `sim` (see `robolearn.spec`), using the shared robot
descriptions in `robolearn.robots` and the shared task code in `robolearn.task`.

    config.py     the typed env.hardware schema (one config class per driver and camera kind)
    drivers/      RobotDriver: fake, franka (franky-control), ur (ur_rtde)
    cameras/      Camera with a capture thread: fake, opencv, realsense
    safety/       the seven safety layers wrapping any driver; limits, the safe-pose check, kinematics
    tracking/     ArUco pose source for reward and success, camera calibration
    timing.py     clocks and the absolute-deadline loop
    env.py        RealRobotEnv and its factory
    resets.py     homing, scripted waypoints, the human scene-reset prompt

The real-arm commands live here too: `python -m hardware.calibrate`, `hardware.preflight`,
`hardware.teleop`, `hardware.deploy`; `python -m robolearn.bench control` runs `hardware/bench.py`.
"""


def make_real_robot_env(cfg=None, render_mode=None, **overrides):
    """Factory named by `env.factory` (configs/env/real_fake.yaml)."""
    from hardware.env import make_real_robot_env as make

    return make(cfg, render_mode=render_mode, **overrides)
