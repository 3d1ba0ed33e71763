"""The shared robot description and the sim's arm agree; limits are the datasheet's."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from robolearn.robots import FR3, PANDA, get_robot
from sim import make_kettle_sink_env


def test_home_is_within_limits_and_tcp_is_in_front_pointing_down():
    for robot in (PANDA, FR3):
        assert np.all(robot.home > robot.q_min) and np.all(robot.home < robot.q_max)
    pose = PANDA.forward_kinematics(PANDA.home)
    assert pose[:3, 3] == pytest.approx([0.307, 0.0, 0.487], abs=2e-3)  # Panda's documented home TCP
    assert pose[:3, 2] == pytest.approx([0, 0, -1], abs=1e-9)


def test_unknown_robot_is_named():
    with pytest.raises(ValueError, match="kuka"):
        get_robot("kuka")


def test_sim_arm_matches_description_kinematics_and_limits():
    env = make_kettle_sink_env()
    try:
        base = env.unwrapped
        m, d, s = base.model, base.data, base.scene
        np.testing.assert_allclose(m.jnt_range[: PANDA.n_joints], np.column_stack([PANDA.q_min, PANDA.q_max]))
        np.testing.assert_allclose(m.actuator_ctrlrange[s.arm_actuators, 1], PANDA.dq_max)
        np.testing.assert_allclose(m.actuator_forcerange[s.arm_actuators, 1], PANDA.tau_max)
        rng = np.random.default_rng(0)
        for _ in range(20):
            q = rng.uniform(PANDA.q_min, PANDA.q_max)
            d.qpos[s.arm_qpos] = q
            mujoco.mj_kinematics(m, d)
            pose = PANDA.forward_kinematics(q)
            np.testing.assert_allclose(d.site_xpos[s.tcp_site], pose[:3, 3], atol=1e-9)
            np.testing.assert_allclose(d.site_xmat[s.tcp_site].reshape(3, 3), pose[:3, :3], atol=1e-9)
    finally:
        env.close()
