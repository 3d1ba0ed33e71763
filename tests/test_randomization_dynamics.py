"""Dynamics and sensing randomisation: each key changes what it names and nothing else, nominal restores exactly,
seeded resets repeat, and the latency delays a command by exactly the drawn number of physics steps."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from robolearn.spec import InvalidActionError
from sim import make_kettle_sink_env

NOMINAL = {key: [1.0, 1.0] for key in ("kettle_mass", "kettle_friction", "gripper_friction", "joint_damping", "actuator_gain")}
# Every model array the dynamics part may write.
FIELDS = ("body_mass", "body_inertia", "body_subtreemass", "body_invweight0", "dof_invweight0", "geom_friction",
          "dof_damping", "actuator_gainprm", "actuator_biasprm", "actuator_gear")
QUIET = {"latency_ms": [0.0, 0.0], "joint_pos_noise": 0.0, "joint_vel_noise": 0.0}


@pytest.fixture
def make():
    envs = []

    def _make(control_mode="joint_velocity", **randomization):
        env = make_kettle_sink_env(cameras=[], control_mode=control_mode, randomization=randomization).unwrapped
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


def model_arrays(env) -> dict[str, np.ndarray]:
    return {name: getattr(env.model, name).copy() for name in FIELDS}


def action(j0=0.0, gripper=-1.0) -> np.ndarray:
    a = np.zeros(8, dtype=np.float32)
    a[0], a[-1] = j0, gripper
    return a


def geom(env, name: str) -> int:
    return mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, name)


@pytest.mark.parametrize("control_mode", ["joint_velocity", "joint_torque"])
@pytest.mark.parametrize("key", sorted(NOMINAL))
def test_each_dynamics_key_changes_only_what_it_names(make, key, control_mode):
    base = make(control_mode, dynamics=NOMINAL)
    scaled = make(control_mode, dynamics={**NOMINAL, key: [1.5, 1.5]})
    base.reset(seed=3)
    scaled.reset(seed=3)
    before, after = model_arrays(base), model_arrays(scaled)
    s = base.scene
    k = s.kettle_body
    expected = {name: value.copy() for name, value in before.items()}
    if key == "kettle_mass":
        expected["body_mass"][k] *= 1.5
        expected["body_inertia"][k] *= 1.5
        tree = np.flatnonzero(base.model.body_rootid == base.model.body_rootid[k])
        expected["body_subtreemass"][tree] *= 1.5
        expected["body_subtreemass"][0] += 0.5 * before["body_mass"][k]
        expected["body_invweight0"][tree] /= 1.5
        expected["dof_invweight0"][s.kettle_dof : s.kettle_dof + 6] /= 1.5
    elif key == "kettle_friction":
        assert len(s.kettle_geoms) == 6  # shell, lid, spout, two posts and the handle bar
        expected["geom_friction"][s.kettle_geoms, 0] *= 1.5
    elif key == "gripper_friction":  # the grip's contacts take the handle's friction (the kettle has priority)
        grip = [geom(base, f"kettle/{name}") for name in ("handle", "handle_post_front", "handle_post_back")]
        expected["geom_friction"][grip, 0] *= 1.5
    elif key == "joint_damping":
        expected["dof_damping"][s.arm_dof] *= 1.5
    elif control_mode == "joint_velocity":  # a stiffer servo with the same target: gain and bias together
        expected["actuator_gainprm"][s.arm_actuators, 0] *= 1.5
        expected["actuator_biasprm"][s.arm_actuators, 2] *= 1.5
    else:  # the joint gets 1.5x the commanded torque
        expected["actuator_gear"][s.arm_actuators, 0] *= 1.5
    for name in FIELDS:
        np.testing.assert_allclose(after[name], expected[name], rtol=1e-12, atol=0, err_msg=name)
    assert scaled.randomization()[key] == 1.5 and base.randomization()[key] == 1.0
    # The other parts' draws are the same for the same seed.
    others = lambda env: {n: v for n, v in env.randomization().items() if n not in NOMINAL}  # noqa: E731
    assert others(base) == others(scaled)
    np.testing.assert_array_equal(base.privileged_state(), scaled.privileged_state())


def test_the_actuator_gain_is_a_weaker_servo_not_another_target(make):
    weak = make(dynamics={**NOMINAL, "actuator_gain": [0.5, 0.5]}, **QUIET)
    weak.reset(seed=0)
    weak.step(action(j0=0.5))
    for _ in range(3):
        obs, *_ = weak.step(action(j0=0.5))
    assert obs["joint_vel"][0] == pytest.approx(0.5 * weak.contract.command_limits[0], rel=0.02)


def test_no_randomisation_restores_the_nominal_model_exactly(make):
    fresh = make(enabled=False)
    env = make()
    env.reset(seed=7)
    assert model_arrays(env)["body_mass"][env.scene.kettle_body] != fresh.model.body_mass[env.scene.kettle_body]
    env._randomizer.dynamics.apply(None)
    for name, value in model_arrays(env).items():
        np.testing.assert_array_equal(value, getattr(fresh.model, name), err_msg=name)
    assert env._randomizer.dynamics.drawn == {}


def test_seeded_resets_repeat_exactly(make):
    env = make()

    def run(seed):
        obs, _ = env.reset(seed=seed)
        seen = [obs["joint_pos"], obs["joint_vel"]]
        for _ in range(3):
            obs, *_ = env.step(action(j0=0.3, gripper=1.0))
            seen += [obs["joint_pos"], obs["joint_vel"], env.data.qpos.copy()]
        return env.randomization(), model_arrays(env), seen

    (d1, m1, s1), (d2, m2, s2), (d3, _, _) = run(4), run(4), run(5)
    assert d1 == d2 and d1 != d3
    assert {"kettle_mass", "kettle_friction", "gripper_friction", "joint_damping", "actuator_gain", "latency_ms"} <= set(d1)
    for a, b in zip([*m1.values(), *s1], [*m2.values(), *s2]):
        np.testing.assert_array_equal(a, b)


def step_by_hand(env, commands_and_steps) -> np.ndarray:
    """Reference: run (joint command in rad/s, physics steps) pieces on a fresh reset with mj_step."""
    s = env.scene
    for command, n in commands_and_steps:
        env.data.ctrl[s.arm_actuators] = command
        mujoco.mj_step(env.model, env.data, nstep=n)
    return env.data.qpos.copy()


def test_latency_delays_the_new_command_by_the_drawn_physics_steps(make):
    delayed = make(**{**QUIET, "latency_ms": [50.0, 50.0]})
    reference = make(**QUIET)  # the same seed draws the same dynamics and kettle pose whatever the latency
    delayed.reset(seed=1)
    reference.reset(seed=1)
    assert delayed.randomization()["latency_ms"] == 50.0
    v = 0.5 * delayed.contract.command_limits[0]
    command = np.zeros(7)
    command[0] = v
    delayed.step(action(j0=0.5))
    # 25 physics steps (50 ms at 500 Hz) at rest, then the new command for the other 25.
    expected = step_by_hand(reference, [(np.zeros(7), 25), (command, 25)])
    np.testing.assert_array_equal(delayed.data.qpos, expected)
    # Not a step earlier: acting from step 24 on gives another state.
    reference.reset(seed=1)
    assert not np.array_equal(step_by_hand(reference, [(np.zeros(7), 24), (command, 26)]), expected)


def test_a_latency_of_a_whole_period_acts_one_step_later(make):
    delayed = make(**{**QUIET, "latency_ms": [100.0, 100.0]})
    reference = make(**QUIET)
    delayed.reset(seed=2)
    reference.reset(seed=2)
    first, second = np.zeros(7), np.zeros(7)
    first[0], second[0] = 0.5 * delayed.contract.command_limits[0], -0.25 * delayed.contract.command_limits[0]
    delayed.step(action(j0=0.5, gripper=1.0))
    np.testing.assert_array_equal(delayed.data.qpos, step_by_hand(reference, [(np.zeros(7), 50)]))
    assert delayed.data.ctrl[delayed.scene.gripper_actuator] == pytest.approx(0.04)  # still open
    delayed.step(action(j0=-0.25, gripper=1.0))  # exact in float32, like 0.5
    reference.data.ctrl[reference.scene.gripper_actuator] = 0.0  # the first step's gripper command, closed
    np.testing.assert_array_equal(delayed.data.qpos, step_by_hand(reference, [(first, 50)]))
    delayed.step(action())
    np.testing.assert_array_equal(delayed.data.qpos, step_by_hand(reference, [(second, 50)]))


def test_encoder_noise_changes_the_observed_joints_not_the_physics(make):
    noisy = make(latency_ms=[0.0, 0.0], joint_pos_noise=0.01, joint_vel_noise=0.1)
    exact = make(**QUIET)
    obs_noisy, _ = noisy.reset(seed=6)
    obs_exact, _ = exact.reset(seed=6)
    for _ in range(3):
        np.testing.assert_array_equal(noisy.data.qpos, exact.data.qpos)
        np.testing.assert_array_equal(obs_exact["joint_pos"], noisy.data.qpos[noisy.scene.arm_qpos].astype(np.float32))
        pos_err = obs_noisy["joint_pos"] - obs_exact["joint_pos"]
        vel_err = obs_noisy["joint_vel"] - obs_exact["joint_vel"]
        assert 0 < np.abs(pos_err).max() < 0.05 and 0 < np.abs(vel_err).max() < 0.5
        obs_noisy, *_ = noisy.step(action(j0=0.2))
        obs_exact, *_ = exact.step(action(j0=0.2))


def test_invalid_actions_raise_and_change_nothing(make):
    env = make(latency_ms=[100.0, 100.0])
    env.reset(seed=0)
    env.step(action(j0=0.5))
    qpos, ctrl, time, pending = env.data.qpos.copy(), env.data.ctrl.copy(), env.data.time, len(env._pending)
    for bad in (np.full(8, np.nan, dtype=np.float32), np.zeros(7, dtype=np.float32)):
        with pytest.raises(InvalidActionError):
            env.step(bad)
    np.testing.assert_array_equal(env.data.qpos, qpos)
    np.testing.assert_array_equal(env.data.ctrl, ctrl)
    assert env.data.time == time and len(env._pending) == pending


def test_the_kettle_start_edge_puts_the_kettle_on_the_boundary_of_its_area_and_nothing_else_changes(make):
    from sim.kitchen import KETTLE_NOMINAL_XY

    inside, edge = make(), make(kettle_start_edge=True)
    sides = set()
    for seed in range(24):
        a, _ = inside.reset(seed=seed)
        b, _ = edge.reset(seed=seed)
        q = edge.data.qpos[edge.scene.kettle_qpos : edge.scene.kettle_qpos + 7]
        dx, dy = q[0] - KETTLE_NOMINAL_XY[0], q[1] - KETTLE_NOMINAL_XY[1]
        assert max(abs(dx), abs(dy)) == pytest.approx(0.10, abs=1e-9)  # on the +-10 cm square's boundary
        assert abs(2 * np.arctan2(q[6], q[3])) == pytest.approx(1.0, abs=1e-9)  # turned to an end of +-1 rad
        sides.add((round(dx / 0.1) if abs(abs(dx) - 0.1) < 1e-9 else 0, round(dy / 0.1) if abs(abs(dy) - 0.1) < 1e-9 else 0))
        np.testing.assert_array_equal(a["joint_pos"], b["joint_pos"])  # the other parts' draws are unchanged
        assert inside.randomization() == edge.randomization()
    assert len(sides) >= 4  # all around the area, not one corner


def test_the_kettles_friction_is_the_friction_its_contacts_use(make):
    # MuJoCo takes the larger friction of two geoms unless one has priority: the counter's 1.0 would hide any
    # lower kettle friction, the pads' 1.5 any lower grip.
    def contact_friction(**dynamics):
        env = make(dynamics={**NOMINAL, **dynamics}, **QUIET)
        env.reset(seed=3)
        for _ in range(3):
            env.step(action())
        d = env.data
        kettle = set(env.scene.kettle_geoms.tolist())
        touching = [i for i in range(d.ncon) if d.contact.geom1[i] in kettle or d.contact.geom2[i] in kettle]
        assert touching, "the kettle rests on the counter"
        return {float(d.contact.friction[i][0]) for i in touching}

    assert contact_friction() == {1.0}  # as before the priority: the counter's value under the shell
    assert contact_friction(kettle_friction=[0.5, 0.5]) == {0.5}
    assert contact_friction(kettle_friction=[1.3, 1.3]) == {1.3}
