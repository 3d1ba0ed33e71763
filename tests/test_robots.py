"""The shared robot description and the sim's arm agree; limits are the datasheet's."""

from __future__ import annotations

from dataclasses import replace

import mujoco
import numpy as np
import pytest

from robolearn.robots import FR3, PANDA, ROBOTS, UR5E, get_robot
from sim import make_kettle_sink_env


def test_home_is_within_limits_and_tcp_is_in_front_pointing_down():
    for robot in ROBOTS.values():
        assert np.all(robot.home > robot.q_min) and np.all(robot.home < robot.q_max), robot.name
        pose = robot.forward_kinematics(robot.home)
        assert pose[:3, 2] == pytest.approx([0, 0, -1], abs=1e-3), robot.name
        assert pose[0, 3] > 0.25 and abs(pose[1, 3]) < 0.01 and pose[2, 3] > 0.3, robot.name
    pose = PANDA.forward_kinematics(PANDA.home)
    assert pose[:3, 3] == pytest.approx([0.307, 0.0, 0.487], abs=2e-3)  # Panda's documented home TCP
    assert pose[:3, 2] == pytest.approx([0, 0, -1], abs=1e-9)


def test_unknown_robot_is_named():
    with pytest.raises(ValueError, match="kuka"):
        get_robot("kuka")


def _standard_dh(q, d, a, alpha):
    """UR's own convention (standard DH), written out independently of robots.py's conversion."""
    pose = np.eye(4)
    for qi, di, ai, al in zip(q, d, a, alpha):
        ct, st, ca, sa = np.cos(qi), np.sin(qi), np.cos(al), np.sin(al)
        pose = pose @ np.array([[ct, -st * ca, st * sa, ai * ct], [st, ct * ca, -ct * sa, ai * st], [0, sa, ca, di], [0, 0, 0, 1]])
    return pose


def test_ur5e_kinematics_equal_urs_published_standard_dh():
    # UR5e DH from Universal Robots' support article (d, a, alpha per joint); tcp 0 = the flange.
    d = (0.1625, 0, 0, 0.1333, 0.0997, 0.0996)
    a = (0, -0.425, -0.3922, 0, 0, 0)
    alpha = (np.pi / 2, 0, 0, np.pi / 2, -np.pi / 2, 0)
    flange = replace(UR5E, tcp_offset=0.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(-np.pi, np.pi, 6)
        np.testing.assert_allclose(flange.forward_kinematics(q), _standard_dh(q, d, a, alpha), atol=1e-12)
    # At zero the arm lies stretched along -x: reach = a2 + a3 from the shoulder.
    assert flange.forward_kinematics(np.zeros(6))[0, 3] == pytest.approx(-0.8172)


@pytest.mark.parametrize("name", ["panda", "ur5e"])
def test_sim_arm_matches_description_kinematics_and_limits(name):
    robot = get_robot(name)
    env = make_kettle_sink_env(robot=name, cameras=[])
    try:
        base = env.unwrapped
        m, d, s = base.model, base.data, base.scene
        assert len(s.arm_qpos) == robot.n_joints and env.action_space.shape == (robot.n_joints + 1,)
        joints = m.jnt_qposadr.tolist()
        np.testing.assert_allclose(m.jnt_range[[joints.index(a) for a in s.arm_qpos]], np.column_stack([robot.q_min, robot.q_max]))
        np.testing.assert_allclose(m.actuator_ctrlrange[s.arm_actuators, 1], robot.dq_max)
        np.testing.assert_allclose(m.actuator_forcerange[s.arm_actuators, 1], robot.tau_max)
        rng = np.random.default_rng(0)
        for _ in range(20):
            q = rng.uniform(robot.q_min, robot.q_max)
            d.qpos[s.arm_qpos] = q
            mujoco.mj_kinematics(m, d)
            pose = robot.forward_kinematics(q)
            np.testing.assert_allclose(d.site_xpos[s.tcp_site], pose[:3, 3], atol=1e-9)
            np.testing.assert_allclose(d.site_xmat[s.tcp_site].reshape(3, 3), pose[:3, :3], atol=1e-9)
    finally:
        env.close()


def test_batched_tool_centre_points_match_the_per_pose_kinematics():
    for robot in ROBOTS.values():
        q = np.random.default_rng(3).uniform(robot.q_min, robot.q_max, (20, robot.n_joints))
        np.testing.assert_allclose(robot.tcp_positions(q), np.stack([robot.tcp_position(x) for x in q]), atol=1e-12)
    with pytest.raises(ValueError, match="joint angles"):
        robot.tcp_positions(np.zeros(robot.n_joints))  # one pose: forward_kinematics' job
