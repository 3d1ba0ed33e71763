"""Kettle-to-sink sim: control modes, gripper, episode ends, randomisation, rendering settings."""

from __future__ import annotations

import numpy as np
import pytest

from robolearn.robots import PANDA
from sim import make_kettle_sink_env
from sim.kitchen import SINK


@pytest.fixture
def make():
    envs = []

    def _make(**overrides):
        env = make_kettle_sink_env(**overrides)
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


# The control-mode checks read exact encoders with no latency: the randomisation has its own tests.
EXACT = {"randomization": {"enabled": False}}


def action(**joints) -> np.ndarray:
    a = np.zeros(8, dtype=np.float32)
    a[-1] = -1.0
    for name, value in joints.items():
        a[int(name[1:])] = value
    return a


def test_velocity_mode_tracks_the_scaled_command(make):
    env = make(control_mode="joint_velocity", velocity_limit_fraction=0.5, **EXACT)
    env.reset(seed=0)
    obs, *_ = env.step(action(j0=0.5, j3=-0.4))
    expected = np.zeros(7)
    expected[0] = 0.5 * 0.5 * PANDA.dq_max[0]
    expected[3] = -0.4 * 0.5 * PANDA.dq_max[3]
    np.testing.assert_allclose(obs["joint_vel"], expected, atol=0.03)


def test_velocity_mode_holds_still_under_gravity(make):
    env = make(control_mode="joint_velocity", **EXACT)
    obs0, _ = env.reset(seed=0)
    for _ in range(10):
        obs, *_ = env.step(action())
    np.testing.assert_allclose(obs["joint_pos"], obs0["joint_pos"], atol=2e-3)


def test_torque_mode_applies_scaled_torque(make):
    env = make(control_mode="joint_torque", torque_limit_fraction=0.5, **EXACT)
    env.reset(seed=0)
    obs, *_ = env.step(action(j0=0.1))  # 4.35 N·m about the vertical axis
    assert obs["joint_vel"][0] > 0.1
    np.testing.assert_allclose(env.unwrapped.data.actuator_force[:7], [0.1 * 87 * 0.5] + [0] * 6, atol=1e-9)


@pytest.mark.parametrize("gravcomp", [True, False])
def test_torque_mode_gravity_compensation_switch(make, gravcomp):
    env = make(control_mode="joint_torque", gravity_compensation=gravcomp)
    obs0, _ = env.reset(seed=0)
    for _ in range(5):
        obs, *_ = env.step(action())
    moved = np.abs(obs["joint_pos"] - obs0["joint_pos"]).max()
    assert (moved < 0.01) if gravcomp else (moved > 0.1)


def test_gripper_closes_and_opens(make):
    env = make()
    obs, _ = env.reset(seed=0)
    assert obs["gripper"][0] == pytest.approx(0.08, abs=1e-3)
    close = action()
    close[-1] = 1.0
    for _ in range(5):
        obs, *_ = env.step(close)
    assert obs["gripper"][0] < 0.005
    for _ in range(5):
        obs, *_ = env.step(action())
    assert obs["gripper"][0] > 0.075


def _place_kettle(env, pos):
    base = env.unwrapped
    q = base.scene.kettle_qpos
    base.data.qpos[q : q + 3] = pos
    base.data.qpos[q + 3 : q + 7] = [1, 0, 0, 0]
    base.data.qvel[base.scene.kettle_dof : base.scene.kettle_dof + 6] = 0


def test_kettle_in_basin_is_success_and_terminates(make):
    env = make()
    env.reset(seed=0)
    _place_kettle(env, SINK.centre + [0, 0, 0.0605])
    _, reward, terminated, truncated, info = env.step(action())
    assert info["success"] and terminated and not truncated
    assert info["reward_terms"]["success_bonus"] > 0


def test_success_need_not_terminate(make):
    env = make(terminate_on_success=False)
    env.reset(seed=0)
    _place_kettle(env, SINK.centre + [0, 0, 0.0605])
    _, _, terminated, _, info = env.step(action())
    assert info["success"] and not terminated


def test_kettle_off_the_counter_terminates(make):
    env = make()
    env.reset(seed=0)
    _place_kettle(env, [1.2, 0.0, -0.3])
    _, _, terminated, _, info = env.step(action())
    assert terminated and info["kettle_fell"] and not info["success"]


def test_randomisation_is_seeded(make):
    env = make()

    def snapshot(seed):
        obs, _ = env.reset(seed=seed)
        m = env.unwrapped.model
        return (obs["front"].copy(), m.geom_rgba.copy(), m.light_dir.copy(), m.cam_pos.copy(), env.unwrapped.privileged_state())

    a, b, c = snapshot(11), snapshot(11), snapshot(12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for x, z in zip(a, c):
        assert not np.array_equal(x, z)


def test_randomisation_can_be_switched_off(make):
    env = make(randomization={"enabled": False})
    a, _ = env.reset(seed=1)
    b, _ = env.reset(seed=2)
    np.testing.assert_array_equal(a["front"], b["front"])


def test_render_quality_comes_from_config(make):
    fast = make().unwrapped.model
    assert fast.vis.quality.offsamples == 0
    pretty = make(render={"shadows": True, "multisamples": 4}).unwrapped.model
    assert pretty.vis.quality.shadowsize > 0 and pretty.vis.quality.offsamples == 4


def test_physics_rate_and_substeps(make):
    env = make(control_hz=20, physics_hz=1000)
    assert env.unwrapped.model.opt.timestep == pytest.approx(1e-3)
    assert env.unwrapped.cfg.substeps == 50


def test_render_rgb_array(make):
    env = make_kettle_sink_env(render_mode="rgb_array")
    try:
        env.reset(seed=0)
        frame = env.render()
        assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8 and frame.std() > 10
    finally:
        env.close()


def test_the_room_walls_can_be_left_out_as_before_issue_27(make):
    import mujoco

    with_walls, without = make().unwrapped, make(room_walls=False).unwrapped
    assert mujoco.mj_name2id(with_walls.model, mujoco.mjtObj.mjOBJ_GEOM, "wall_back") >= 0
    assert mujoco.mj_name2id(without.model, mujoco.mjtObj.mjOBJ_GEOM, "wall_back") < 0
    a, _ = with_walls.reset(seed=2)
    b, _ = without.reset(seed=2)
    assert not np.array_equal(a["front"], b["front"])  # the back wall is in the front camera's view
    np.testing.assert_array_equal(a["joint_pos"], b["joint_pos"])  # and nothing else changes
