"""The workspace layer keeps the true tool in the box: its look-ahead (the command held for the horizon,
then braked at the acceleration limit, along the curved path) on both dry-run arms, both control modes,
every joint at full speed both ways and random actions. The true TCP is the driver's state through
forward kinematics, sampled every 5 ms of virtual time (hardware/safety/margin.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hardware.config import FakeDriverConfig, SafetyConfig
from hardware.drivers.fake import FakeDriver
from hardware.safety.kinematics import TcpKinematics
from hardware.safety.layer import SafetyLayer
from hardware.safety.limits import SafetyLimits
from hardware.safety.margin import drive_joint, drive_random, excess, make_env
from hardware.timing import VirtualClock
from robolearn.robots import PANDA

TOLERANCE = SafetyConfig().workspace_breach_m  # 20 mm: past it the layer latches a breach
GRAZE = 0.005  # what these runs may go past a face (measured: at most 2 mm, the look-ahead's allowed graze)


def test_a_path_that_bulges_out_of_the_box_and_back_is_scaled_before_the_bulge():
    # Joint 1 swings the TCP on a circle about the base: from -a to +a its x peaks half way, past a face
    # that both ends are inside of. The old check (the end of the path only) let it through.
    kin = TcpKinematics(PANDA)
    a = 0.4
    start = PANDA.home.copy()
    start[0] = -a
    ahead = [2 * a] + [0.0] * 6
    p0, mid, end = kin.position(start.tolist()), kin.position((start + 0.5 * np.array(ahead)).tolist()), kin.position((start + ahead).tolist())
    face = 0.5 * (max(p0[0], end[0]) + mid[0])
    clock = VirtualClock()
    driver = FakeDriver(PANDA, clock, FakeDriverConfig(initial_q=start.tolist(), command_hold_s=0.2))
    driver.connect()
    limits = SafetyLimits.from_config(SafetyConfig(), PANDA, command_hold_s=0.2, control_hz=10)
    limits = replace(limits, workspace_max=(face, *limits.workspace_max[1:]))
    layer = SafetyLayer(driver, limits, clock, watchdog_thread=False)
    scale = layer._workspace_scale(start.tolist(), p0, ahead)
    assert end[0] < face < mid[0] and scale < 0.5
    # And driven that way at full speed, the true TCP stays behind the face.
    worst = -1.0
    for _ in range(40):
        layer.command_velocity([limits.velocity[0]] + [0.0] * 6)
        for _ in range(20):
            clock.advance(0.005)
            layer.poll()
            worst = max(worst, kin.position(driver.read_state().q.tolist())[0] - face)
    assert not layer.latched and worst < 0.003, worst


@pytest.mark.parametrize("arm, mode", [("fake", "velocity"), ("fake", "torque"), ("ur", "velocity"), ("ur", "torque")])
def test_every_joint_at_full_speed_both_ways_keeps_the_true_tcp_within_the_tolerance(arm, mode):
    env = make_env(arm, mode)
    try:
        for joint in range(env.robot.n_joints):
            for direction in (1.0, -1.0):
                r = drive_joint(env, joint, direction, steps=30, runup=15)
                assert r["estop"] is None, (joint + 1, direction, r)
                assert r["excess_m"] <= min(TOLERANCE, GRAZE), (joint + 1, direction, r)
                if mode == "velocity":
                    assert r["peak_speed_ratio"] > 0.99  # it did get to full speed
    finally:
        env.close()


@pytest.mark.parametrize("arm", ["fake", "ur"])
def test_torque_mode_brakes_a_joint_at_full_speed_before_the_box(arm):
    # Torque mode's own speed prediction keeps joints well under the limit; here velocity commands bring
    # each joint to full speed toward the wall and full torque takes over as the layer starts braking.
    env = make_env(arm, "torque")
    try:
        fastest = 0.0
        for joint in range(env.robot.n_joints):
            for direction in (1.0, -1.0):
                r = drive_joint(env, joint, direction, steps=30, runup=15, torque_at_full_speed=True)
                assert r["estop"] is None, (joint + 1, direction, r)
                assert r["excess_m"] <= min(TOLERANCE, GRAZE), (joint + 1, direction, r)
                fastest = max(fastest, r["peak_speed_ratio"])
        assert fastest > 0.99
    finally:
        env.close()


@pytest.mark.parametrize("arm, mode", [("fake", "velocity"), ("fake", "torque"), ("ur", "velocity"), ("ur", "torque")])
def test_random_actions_keep_the_true_tcp_within_the_tolerance_without_an_estop(arm, mode):
    env = make_env(arm, mode)
    try:
        r = drive_random(env, episodes=2, seed=3)
        assert r["estop"] is None and r["excess_m"] <= min(TOLERANCE, GRAZE), r
    finally:
        env.close()


def test_excess_is_signed_distance_past_the_nearest_face():
    lo, hi = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    assert excess((0.5, 0.5, 0.9), lo, hi) == pytest.approx(-0.1)
    assert excess((0.5, 1.03, 0.5), lo, hi) == pytest.approx(0.03)
    assert excess((-0.02, 0.5, 1.01), lo, hi) == pytest.approx(0.02)


def test_random_commands_in_a_small_box_keep_the_true_tcp_inside():
    # A box 12 cm around home on every side: random full-range velocity commands meet a face most steps,
    # with the rate limit blending each command with the last (a blend can head out where neither did:
    # then every joint brakes at its limit).
    clock = VirtualClock()
    driver = FakeDriver(PANDA, clock, FakeDriverConfig(command_hold_s=0.2))
    driver.connect()
    limits = SafetyLimits.from_config(SafetyConfig(), PANDA, command_hold_s=0.2, control_hz=10)
    kin = TcpKinematics(PANDA)
    home = kin.position(PANDA.home.tolist())
    lo, hi = tuple(x - 0.12 for x in home), tuple(x + 0.12 for x in home)
    layer = SafetyLayer(driver, replace(limits, workspace_min=lo, workspace_max=hi), clock, watchdog_thread=False)
    rng = np.random.default_rng(1)  # without the second look this seed goes 6.4 mm past a face; with it 0.9 mm
    worst = -1.0
    for _ in range(600):
        layer.command_velocity((rng.uniform(-1, 1, 7) * limits.velocity).tolist())
        for _ in range(10):
            clock.advance(0.01)
            layer.poll()
            worst = max(worst, excess(kin.position(driver.read_state().q.tolist()), lo, hi))
    assert not layer.latched and layer.counters["workspace_clipped"] > 100
    assert worst < GRAZE, worst
