"""The safety layer, layer by layer, on the fake arm and a virtual clock (deterministic, instant)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from hardware.config import FakeDriverConfig, SafetyConfig
from hardware.drivers.fake import FakeDriver
from hardware.safety.kinematics import TcpKinematics
from hardware.safety.layer import ResetRefused, SafetyLayer
from hardware.safety.limits import SafetyLimits
from hardware.timing import MonotonicClock, VirtualClock
from robolearn.config import ConfigError
from robolearn.robots import FR3, PANDA

PERIOD = 0.1


def rig(q0=None, clock=None, inertia=None, driver_class=FakeDriver, **safety):
    clock = clock or VirtualClock()
    fake = FakeDriverConfig()  # the configured fake arm's torque-mode dynamics
    driver = driver_class(PANDA, clock, FakeDriverConfig(initial_q=q0, command_hold_s=0.2, inertia=inertia or fake.inertia, damping=fake.damping))
    driver.connect()
    limits = SafetyLimits.from_config(SafetyConfig(**safety), PANDA, command_hold_s=0.2, control_hz=10)
    return clock, driver, SafetyLayer(driver, limits, clock, watchdog_thread=False)


def step(clock, layer, command, mode="velocity"):
    sent = layer.command(mode, command)
    clock.advance(PERIOD)
    layer.poll()
    return sent


def sent_values(driver):
    return np.asarray(driver.last_command[1])


# -- limits from config ------------------------------------------------------------------------------
def test_fast_kinematics_matches_the_robot_description():
    rng = np.random.default_rng(0)
    for robot in (PANDA, FR3):
        kin = TcpKinematics(robot)
        for _ in range(50):
            q = rng.uniform(robot.q_min, robot.q_max)
            np.testing.assert_allclose(kin.position(q.tolist()), robot.tcp_position(q), atol=1e-12)


def test_reach_bounds_the_tcp_displacement():
    kin = TcpKinematics(PANDA)
    rng = np.random.default_rng(1)
    for _ in range(200):
        q = rng.uniform(PANDA.q_min, PANDA.q_max)
        dq = rng.uniform(-0.3, 0.3, size=7)
        moved = np.linalg.norm(np.subtract(kin.position((q + dq).tolist()), kin.position(q.tolist())))
        assert moved <= sum(abs(d) * r for d, r in zip(dq, kin.reach)) + 1e-12


def test_defaults_are_fractions_of_the_datasheet():
    limits = SafetyLimits.from_config(SafetyConfig(), PANDA, command_hold_s=0.2, control_hz=10)
    assert limits.velocity == pytest.approx(tuple(PANDA.dq_max * 0.5))
    assert limits.torque == pytest.approx(tuple(PANDA.tau_max * 0.5))
    assert limits.torque_rate == pytest.approx(tuple(PANDA.dtau_max * 0.25))
    assert limits.soft_q_max == pytest.approx(tuple(PANDA.q_max - 0.05))


@pytest.mark.parametrize(
    "override, named",
    [
        ({"velocity_limits": [3.0, 1, 1, 1, 1, 1, 1]}, r"velocity_limits\[0\].*datasheet limit 2.175"),
        ({"torque_limits": [10, 10, 10, 10, 12.5, 10, 10]}, r"torque_limits\[4\].*datasheet limit 12.0"),
        ({"velocity_limits": [1.0] * 6}, r"velocity_limits.*needs 7 values"),
        ({"torque_limits": [10, -1, 10, 10, 10, 10, 10]}, r"torque_limits\[1\].*positive"),
        ({"workspace_min": [0.5, -0.6, -0.05]}, r"workspace_min/max.*home TCP"),
        ({"joint_margin_rad": 2.0}, r"joint_margin_rad"),
    ],
)
def test_limits_above_the_datasheet_or_inconsistent_are_config_errors(override, named):
    with pytest.raises(ConfigError, match=named):
        SafetyLimits.from_config(SafetyConfig(**override), PANDA, command_hold_s=0.2, control_hz=10)


def test_vendor_limits_tighten_never_loosen():
    limits = SafetyLimits.from_config(SafetyConfig(velocity_fraction=1.0), FR3, command_hold_s=0.2, control_hz=10)
    tight = limits.tightened({"dq_max": PANDA.dq_max})  # franky reports the Panda's limits for the FR3
    assert tight.velocity == pytest.approx(tuple(np.minimum(FR3.dq_max, PANDA.dq_max)))
    assert limits.tightened({"dq_max": FR3.dq_max * 10}).velocity == limits.velocity


# -- layer 1: input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [[math.nan] + [0.0] * 6, [0.0] * 6 + [math.inf], [0.0] * 6, [0.0] * 8, "1234567", None, [[0.0] * 7], ["a"] * 7, [1e308] * 7],
    ids=["nan", "inf", "short", "long", "text", "none", "2d", "strings", "huge-finite"],
)
def test_bad_input_is_rejected_latched_and_nothing_is_sent(bad):
    _clock, driver, layer = rig()
    before = driver.commands_received
    if bad == [1e308] * 7:  # finite: a valid (if absurd) command, clamped rather than rejected
        assert layer.command_velocity(bad)
        assert np.all(np.abs(sent_values(driver)) <= np.array(layer.limits.velocity) + 1e-12)
        return
    assert not layer.command_velocity(bad)
    assert driver.commands_received == before
    assert layer.latched and layer.fault.layer == "input"
    assert layer.counters["input_rejected"] == 1
    assert not layer.command_velocity([0.1] * 7)  # latched: ignored
    assert driver.commands_received == before
    assert layer.counters["ignored_while_latched"] == 1
    layer.reset()  # the cause (a bad command) is gone at once
    assert layer.command_velocity([0.1] * 7)
    assert driver.commands_received == before + 1


def test_non_finite_gripper_command_is_rejected():
    _, driver, layer = rig()
    assert not layer.command_gripper(float("nan"))
    assert layer.fault.layer == "input" and driver.commands_received == 0


# -- layer 2: clamp ----------------------------------------------------------------------------------
# Joints 1 and 7 (base yaw and flange roll) barely move the TCP toward the workspace faces, so these
# tests see the clamp alone.
def test_over_limit_velocity_is_clamped_and_flagged():
    clock, driver, layer = rig()
    limit = np.array(layer.limits.velocity)
    for _ in range(5):
        step(clock, layer, [10.0, 0, 0, 0, 0, 0, -10.0])
        assert np.all(np.abs(sent_values(driver)) <= limit + 1e-12)
    assert sent_values(driver)[[0, 6]] == pytest.approx([limit[0], -limit[6]])
    assert layer.counters["clamped"] == 5
    assert any(e.kind == "clamped" and "joints 1,7" in e.message for e in layer.drain_events())
    assert not layer.latched


def test_over_limit_torque_is_clamped_and_flagged():
    # A heavy arm: the full torque cannot reach the speed bound within a hold, so only the clamp acts.
    _clock, driver, layer = rig(torque_rate_fraction=1.0, inertia=[100.0] * 7)
    assert layer.command_torque([-100.0, 0, 0, 0, 0, 0, 100.0])
    limit = layer.limits.torque
    assert sent_values(driver)[[0, 6]] == pytest.approx([-limit[0], limit[6]])
    assert layer.counters["clamped"] == 1 and layer.counters["rate_limited"] == 0


# -- layer 3: rate limits ----------------------------------------------------------------------------
def test_step_velocity_command_becomes_an_acceleration_limited_ramp():
    clock, driver, layer = rig()
    a = layer.limits.acceleration[1]  # joint 2 has the lowest acceleration limit
    target = 0.5
    sent = []
    for _ in range(6):
        step(clock, layer, [0, target, 0, 0, 0, 0, 0])
        sent.append(sent_values(driver)[1])
    assert sent[0] == pytest.approx(a * PERIOD)
    assert np.all(np.diff([0.0] + sent) <= a * PERIOD + 1e-9)
    assert sent[-1] == pytest.approx(target)
    assert layer.counters["rate_limited"] == int(target / (a * PERIOD))


def test_jerk_limits_how_fast_the_acceleration_changes_at_high_command_rates():
    clock, driver, layer = rig(jerk_fraction=0.01)  # 37.5 rad/s^3 on joint 2
    j, dt = layer.limits.jerk[1], 0.01
    layer.command_velocity([0.0] * 7)  # at rest: acceleration 0
    sent = [0.0]
    for _ in range(20):
        clock.advance(dt)
        layer.command_velocity([0, 1.0, 0, 0, 0, 0, 0])
        sent.append(sent_values(driver)[1])
    accel = np.diff(sent) / dt
    assert accel[0] == pytest.approx(j * dt)
    assert np.all(np.diff(accel) <= j * dt + 1e-6)
    assert accel[-1] == pytest.approx(min(20 * j * dt, layer.limits.acceleration[1]))


def test_torque_step_is_rate_limited():
    clock, driver, layer = rig(inertia=[100.0] * 7)  # heavy: only the rate limit acts
    rate = layer.limits.torque_rate[0] * PERIOD  # 25 N·m per period
    assert layer.command_torque([40.0, 0, 0, 0, 0, 0, 0])
    assert sent_values(driver)[0] == pytest.approx(rate)
    clock.advance(0.05)
    assert layer.command_torque([40.0, 0, 0, 0, 0, 0, 0])
    assert sent_values(driver)[0] == pytest.approx(rate + layer.limits.torque_rate[0] * 0.05)
    assert layer.counters["rate_limited"] == 2


def test_torque_mode_stops_pushing_a_joint_over_its_speed_limit():
    clock, driver, layer = rig()
    speeds = []
    for _ in range(15):  # flange roll (spins without moving the TCP); 1.5 N·m settles at 1.5 rad/s
        step(clock, layer, [0, 0, 0, 0, 0, 0, 1.5], "torque")
        speeds.append(abs(driver.read_state().dq[6]))
    assert layer.counters["overspeed_limited"] > 0
    assert max(speeds) < 1.25 * layer.limits.velocity[6] and not layer.latched
    assert driver.fault is None  # never reached the arm's own velocity reflex


class _NoModelFake(FakeDriver):
    """A backend without a dynamics model (as the UR driver is)."""

    def joint_dynamics(self, state):
        return None


class _BrokenModelFake(FakeDriver):
    def joint_dynamics(self, state):
        raise ValueError("model library returned garbage")


def _fine_speeds(clock, driver, steps=10):
    """Advance one control period in `steps` slices, sampling the arm between commands."""
    out = []
    for _ in range(steps):
        clock.advance(PERIOD / steps)
        out.append(np.abs(driver.read_state().dq))
    return out


def test_torque_prediction_keeps_random_torques_under_the_speed_bound_and_inside_the_joint_range():
    clock, driver, layer = rig(torque_rate_fraction=1.0)
    rng = np.random.default_rng(3)
    limits = layer.limits
    bound = np.asarray(limits.velocity) * limits.torque_speed_headroom
    worst, sent = np.zeros(7), 0
    for _ in range(300):
        sent += layer.command_torque(rng.uniform(-1.0, 1.0, 7) * np.asarray(limits.torque))
        for speeds in _fine_speeds(clock, driver):
            worst = np.maximum(worst, speeds)
        layer.poll()
        if layer.latched:  # a random walk can leave the workspace box; that fault is not what is tested
            assert layer.fault.layer == "workspace", layer.fault
            layer.hold()
            driver.move_by_hand(PANDA.home)
            clock.advance(1.0)
            layer.reset()
    assert sent > 250 and layer.counters["overspeed_limited"] > 100  # random torques mostly need limiting
    assert np.all(worst <= bound + 1e-9), (worst / bound).round(3)  # the fake's model is exact: no margin used
    assert driver.fault is None and layer.counters["overspeed"] == 0
    q = driver.read_state().q
    assert np.all(q >= np.asarray(limits.soft_q_min)) and np.all(q <= np.asarray(limits.soft_q_max))


def test_torque_toward_a_joint_limit_brakes_before_the_soft_limit():
    q0 = PANDA.home.copy()
    q0[6] = PANDA.q_max[6] - 0.05 - 0.6  # flange roll: only the joint limit acts
    clock, driver, layer = rig(q0=q0, torque_rate_fraction=1.0)
    soft_max = layer.limits.soft_q_max[6]
    for _ in range(40):
        assert layer.command_torque([0, 0, 0, 0, 0, 0, layer.limits.torque[6]])
        _fine_speeds(clock, driver)
        assert driver.read_state().q[6] < soft_max
    assert not layer.latched and driver.fault is None
    assert soft_max - driver.read_state().q[6] < 0.05  # it got there, and stopped short of the soft limit


def test_torque_pushing_out_of_the_workspace_brakes_on_the_predicted_speed():
    p0 = PANDA.tcp_position(PANDA.home)
    box = dict(workspace_min=[p0[0] - 0.3, p0[1] - 0.08, 0.0], workspace_max=[p0[0] + 0.3, p0[1] + 0.08, 0.9])
    outcome = {}
    for name, driver_class in (("model", FakeDriver), ("no model", _NoModelFake)):
        clock, driver, layer = rig(torque_rate_fraction=1.0, driver_class=driver_class, **box)
        beyond = 0.0
        for _ in range(40):  # base yaw: the TCP heads for the +y face
            layer.command_torque([20.0, 0, 0, 0, 0, 0, 0])
            for _ in range(10):
                clock.advance(PERIOD / 10)
                beyond = max(beyond, PANDA.tcp_position(driver.read_state().q)[1] - box["workspace_max"][1])
            layer.poll()
        outcome[name] = (layer.latched, beyond, layer.counters["workspace_clipped"])
    latched, beyond, clipped = outcome["model"]
    assert not latched and clipped > 0 and beyond < layer.limits.workspace_breach
    assert outcome["no model"][0]  # only stopping the push (no braking) coasts through the face: a breach, latched


def test_torque_without_a_model_fades_out_near_the_speed_bound():
    clock, driver, layer = rig(driver_class=_NoModelFake)
    speeds = []
    for _ in range(15):  # flange roll; 1.5 N·m settles at 1.5 rad/s without the layer
        layer.command_torque([0, 0, 0, 0, 0, 0, 1.5])
        speeds.extend(s[6] for s in _fine_speeds(clock, driver))
    assert layer.counters["overspeed_limited"] > 0
    assert max(speeds) < layer.limits.velocity[6] and not layer.latched and driver.fault is None


class _NaNModelFake(FakeDriver):
    def joint_dynamics(self, state):
        d = super().joint_dynamics(state)
        return type(d)(d.mass, d.mobility, np.full(7, np.nan))


@pytest.mark.parametrize("driver_class, named", [(_BrokenModelFake, "garbage"), (_NaNModelFake, "drift is not 7-joint and finite")])
def test_a_model_that_raises_or_is_not_finite_latches_before_any_torque_is_sent(driver_class, named):
    _clock, driver, layer = rig(driver_class=driver_class)
    assert not layer.command_torque([1.0] * 7)
    assert layer.latched and named in layer.fault.message and driver.last_command is None


def test_torque_mode_latches_far_over_the_speed_limit():
    clock, driver, layer = rig()
    step(clock, layer, [0.1] * 7, "torque")
    driver.move_by_hand(PANDA.home)  # the fake cannot be shoved, so drive it past the limit directly:
    driver._dq[0] = 2.0 * layer.limits.velocity[0]
    assert not layer.command_torque([0.0] * 7)
    assert layer.fault.kind == "overspeed" and "joint 1" in layer.fault.message


# -- layer 4: joint limits ---------------------------------------------------------------------------
def test_commands_toward_a_joint_limit_taper_and_the_soft_limit_is_never_crossed():
    q0 = PANDA.home.copy()
    soft_max = PANDA.q_max[6] - 0.05
    q0[6] = soft_max - 0.2  # flange roll: the TCP stays put, so only the joint limit acts
    clock, driver, layer = rig(q0=q0)
    step(clock, layer, [0, 0, 0, 0, 0, 0, 0.5])
    first = sent_values(driver)[6]
    assert 0 < first < 0.5 and layer.counters["joint_tapered"] == 1
    for _ in range(60):
        step(clock, layer, [0, 0, 0, 0, 0, 0, 1.0])
        assert driver.read_state().q[6] <= soft_max
    assert soft_max - driver.read_state().q[6] < 0.02  # it got close, tapering to a stop
    assert not layer.latched
    step(clock, layer, [0, 0, 0, 0, 0, 0, -0.3])  # moving away is not restricted by the limit
    assert sent_values(driver)[6] < 0


def test_joint_past_its_soft_limit_latches_and_reset_waits_until_it_is_guided_back():
    clock, driver, layer = rig()
    step(clock, layer, [0.1] * 7)
    q = PANDA.home.copy()
    q[3] = PANDA.q_max[3] - 0.01  # past the 0.05 rad margin
    driver.move_by_hand(q)
    before = driver.commands_received
    assert not layer.command_velocity([0.0] * 7)
    assert layer.fault.layer == "joint_limit" and "joint 4" in layer.fault.message
    assert driver.commands_received == before
    with pytest.raises(ResetRefused, match="joint 4"):
        layer.reset()
    driver.move_by_hand(PANDA.home)
    layer.reset()
    assert layer.command_velocity([0.1] * 7)


# -- layer 5: workspace --------------------------------------------------------------------------------
def _tcp_up_direction():
    """Joint velocity (unit norm) that moves the TCP straight up at the home pose."""
    kin = TcpKinematics(PANDA)
    J = np.zeros((3, 7))
    for i in range(7):
        dq = np.zeros(7)
        dq[i] = 1e-6
        J[:, i] = (np.array(kin.position((PANDA.home + dq).tolist())) - kin.position(PANDA.home.tolist())) / 1e-6
    v = np.linalg.pinv(J) @ np.array([0.0, 0.0, 1.0])
    return v / np.max(np.abs(v))


def test_workspace_clips_then_a_real_breach_stops():
    home_z = PANDA.tcp_position(PANDA.home)[2]
    top = home_z + 0.05
    clock, driver, layer = rig(workspace_max=[0.85, 0.6, top])
    up = 0.5 * _tcp_up_direction()
    z = []
    for _ in range(40):
        step(clock, layer, up)
        z.append(PANDA.tcp_position(driver.read_state().q)[2])
    assert layer.counters["workspace_clipped"] > 0
    assert max(z) <= top + 0.005  # clipped at the face (linearised prediction: within 5 mm)
    assert max(z) > top - 0.02  # ... after actually approaching it
    assert not layer.latched
    # A push from outside carries the TCP past the box: the next check latches.
    q = driver.read_state().q + 0.2 * _tcp_up_direction()
    driver.move_by_hand(q)
    layer.poll()
    assert layer.fault.layer == "workspace" and "TCP z" in layer.fault.message
    with pytest.raises(ResetRefused, match="outside the workspace"):
        layer.reset()
    driver.move_by_hand(PANDA.home)
    layer.reset()
    assert not layer.latched


def test_a_tight_loop_never_exceeds_the_acceleration_limit_and_faster_than_the_driver_is_refused():
    clock, driver, layer = rig()
    a = layer.limits.acceleration[1]
    layer.command_velocity([0.0] * 7)  # at rest
    times, speeds = [clock.now()], [0.0]
    for i in range(400):
        clock.advance(0.0005 if i % 3 == 0 else 0.001)  # a caller in a tight loop, some commands too close together
        if layer.command_velocity([0, 1.0, 0, 0, 0, 0, 0]):
            times.append(clock.now())
            speeds.append(sent_values(driver)[1])
    accel = np.diff(speeds) / np.diff(times)
    assert accel.max() <= a * (1 + 1e-6)  # the old 1 ms floor let 0.25 ms commands reach 4x
    assert speeds[-1] <= a * (times[-1] - times[0]) + 1e-9
    assert layer.counters["too_fast"] > 0 and not layer.latched


def test_the_rate_limit_scales_the_whole_command_and_keeps_its_direction():
    clock, driver, layer = rig()
    layer.command_velocity([0.0] * 7)
    clock.advance(PERIOD)
    request = np.array([0.8, 0.8, 0.0, -0.8, 0.0, 0.8, 0.8])  # joints with different acceleration limits
    layer.command_velocity(request)
    sent = sent_values(driver)
    assert np.linalg.norm(sent) < np.linalg.norm(request)  # limited ...
    np.testing.assert_allclose(sent / np.linalg.norm(sent), request / np.linalg.norm(request), atol=1e-9)  # ... not bent
    assert np.all(np.abs(sent) / PERIOD <= np.array(layer.limits.acceleration) + 1e-9)


def test_workspace_scaling_and_the_rate_limit_compose_within_the_acceleration_limit():
    home_z = PANDA.tcp_position(PANDA.home)[2]
    top = home_z + 0.04
    clock, driver, layer = rig(workspace_max=[0.85, 0.6, top])
    up = 0.5 * _tcp_up_direction()
    amax = np.array(layer.limits.acceleration)
    previous = np.zeros(7)
    for _ in range(40):  # full speed at the face: the workspace cuts the speed, the rate limit bounds the cut
        step(clock, layer, up)
        sent = sent_values(driver) if driver.last_command else np.zeros(7)
        assert np.all(np.abs(sent - previous) / PERIOD <= amax * (1 + 1e-6)), np.abs(sent - previous) / PERIOD / amax
        previous = sent
    assert layer.counters["workspace_clipped"] > 0 and not layer.latched


def test_a_stuck_sequence_number_is_stale_state_even_with_a_fresh_timestamp(monkeypatch):
    clock, driver, layer = rig()
    step(clock, layer, [0.1] * 7)
    frozen = driver.read_state()
    real_read = driver.read_state

    def restamped():
        state = real_read()
        state.seq = frozen.seq  # a driver thread that re-stamps the last sample instead of reading a new one
        return state

    monkeypatch.setattr(driver, "read_state", restamped)
    for _ in range(3):
        clock.advance(0.02)
        layer.poll()
    assert layer.fault is not None and layer.fault.kind == "stale" and "sequence number stuck" in layer.fault.message


# -- layer 6: watchdog ---------------------------------------------------------------------------------
def test_the_watchdog_trips_within_two_control_periods_of_the_last_command():
    clock, driver, layer = rig()
    step(clock, layer, [0.3, 0, 0, 0, 0, 0, 0])
    sent_at = clock.now() - PERIOD
    while not layer.latched:
        clock.advance(layer.limits.watchdog_poll)
        layer.poll()  # the watchdog thread's check, on the virtual clock
    assert layer.fault.layer == "watchdog"
    assert clock.now() - sent_at <= 2 * PERIOD + 1e-9
def _wait(clock, layer, seconds):
    """The watchdog thread's checks over `seconds`, on the virtual clock (one every watchdog_poll)."""
    end = clock.now() + seconds
    while clock.now() < end - 1e-12 and not layer.latched:
        clock.advance(min(layer.limits.watchdog_poll, end - clock.now()))
        layer.poll()


def test_commands_late_by_a_fifth_of_a_period_count_deadline_misses_and_never_latch():
    clock, driver, layer = rig()
    command = [0.2, 0, 0, 0, 0, 0, 0]
    for k in range(20):
        assert layer.command_velocity(command)
        assert np.allclose(sent_values(driver), layer.last_command[1])  # it reached the arm
        _wait(clock, layer, 0.12)  # 120 ms steps at a 100 ms period
    assert not layer.latched
    assert layer.counters["deadline_misses"] == 20 and layer.counters["watchdog_trips"] == 0
    misses = [e for e in layer.drain_events() if e.kind == "deadline_miss"]
    assert len(misses) == 20 and not any(e.fatal for e in misses)
    assert misses[0].layer == "watchdog" and "the last command stands" in misses[0].message
    # Between the commands the last one stood: the arm kept moving, nothing stopped it.
    assert driver.read_state().dq[0] == pytest.approx(0.2)


def test_commands_on_time_with_jitter_are_not_deadline_misses():
    clock, _driver, layer = rig()
    for k in range(40):
        assert layer.command_velocity([0.2, 0, 0, 0, 0, 0, 0])
        _wait(clock, layer, PERIOD + (0.005 if k % 2 else -0.005))
    assert layer.counters["deadline_misses"] == 0 and not layer.latched


def test_a_late_command_the_watchdog_did_not_see_is_counted_when_it_arrives():
    clock, _driver, layer = rig()
    layer.command_velocity([0.2, 0, 0, 0, 0, 0, 0])
    clock.advance(0.15)  # no poll in between (a loaded machine delayed the watchdog thread)
    layer.command_velocity([0.2, 0, 0, 0, 0, 0, 0])
    assert layer.counters["deadline_misses"] == 1 and not layer.latched


def test_a_controller_that_stops_sending_counts_a_miss_then_trips_within_two_periods():
    clock, driver, layer = rig()
    for _ in range(3):
        layer.command_velocity([0.3, 0, 0, 0, 0, 0, 0])
        _wait(clock, layer, PERIOD)
    sent_at = clock.now() - PERIOD
    layer.command_velocity([0.3, 0, 0, 0, 0, 0, 0])
    sent_at = clock.now()
    _wait(clock, layer, 2 * PERIOD)
    assert layer.latched and layer.fault.layer == "watchdog" and layer.fault.kind == "tripped"
    assert layer.fault.time - sent_at <= 2 * PERIOD + 1e-9
    assert layer.fault.time - sent_at > layer.limits.watchdog_timeout
    assert layer.counters["deadline_misses"] == 1 and layer.counters["watchdog_trips"] == 1
    assert "due every 100 ms" in layer.fault.message and "stopped sending" in layer.fault.message
    kinds = [e.kind for e in layer.drain_events()]
    assert kinds.index("deadline_miss") < kinds.index("tripped")


def test_a_watchdog_trip_and_a_camera_fault_at_once_both_hold_the_latch():
    clock, _driver, layer = rig()
    camera_ok = [False]
    layer.command_velocity([0.3, 0, 0, 0, 0, 0, 0])
    clock.advance(0.19)  # the loop stalled, unseen by a poll (a loaded machine) ...
    layer.poll()
    # ... and in the same instant the camera stalled too
    layer.trigger_fault("camera", "front: no frame for 190 ms", still_active=lambda: None if camera_ok[0] else "front still stalled",
                        cause="camera:front")
    assert [f.layer for f in layer.faults] == ["watchdog", "camera"]
    assert layer.counters["deadline_misses"] == 0 and layer.counters["watchdog_trips"] == 1
    with pytest.raises(ResetRefused, match="front still stalled"):
        layer.reset()
    assert [f.layer for f in layer.faults] == ["watchdog", "camera"]  # both kept
    assert not layer.command_velocity([0.1] * 7)
    camera_ok[0] = True
    layer.reset()
    assert not layer.latched and layer.command_velocity([0.1, 0, 0, 0, 0, 0, 0])
    clock.advance(0.5)  # a new run: its first command counts from itself, not from the trip
    layer.poll()
    assert layer.fault.layer == "watchdog" and layer.counters["watchdog_trips"] == 2


@pytest.mark.parametrize("agent_s", [0.12, 0.14])
def test_a_policy_slower_than_the_period_runs_its_episode_with_deadline_misses_not_an_estop(agent_s):
    from tests.hardware_cases import real_fake_config, real_fake_env

    env = real_fake_env(real_fake_config("env.episode_seconds=3"))
    try:
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        truncated = terminated = False
        while not (truncated or terminated):
            env.clock.advance(agent_s)  # the policy's act()
            _, _, terminated, truncated, info = env.step(rng.uniform(-0.3, 0.3, size=env.action_space.shape))
        assert not info["safety"]["estop"], info["safety"]["fault"]
        assert info["safety"]["counters"]["deadline_misses"] >= 29 and info["timing"]["deadline_misses"] == 30
    finally:
        env.close()


def test_watchdog_stops_then_latches_when_commands_stop():
    clock, driver, layer = rig()
    for _ in range(5):
        step(clock, layer, [0.5, 0, 0, 0, 0, 0, 0])
    clock.advance(layer.limits.watchdog_timeout - PERIOD + 0.001)
    layer.poll()
    assert layer.fault.layer == "watchdog"
    clock.advance(0.5)  # the stop ramps the arm to rest within its deceleration
    assert np.allclose(driver.read_state().dq, 0.0)


def test_holding_disarms_the_watchdog():
    clock, driver, layer = rig()
    step(clock, layer, [0.5, 0, 0, 0, 0, 0, 0])
    layer.hold()
    clock.advance(30.0)
    layer.poll()
    assert not layer.latched
    assert np.allclose(driver.read_state().dq, 0.0)


def test_watchdog_thread_trips_on_the_wall_clock():
    clock, driver, layer = rig(clock=MonotonicClock())
    layer.close()
    layer = SafetyLayer(driver, layer.limits, clock, watchdog_thread=True)
    try:
        layer.command_velocity([0.2, 0, 0, 0, 0, 0, 0])
        t0 = time.monotonic()
        while not layer.latched and time.monotonic() - t0 < 2.0:
            time.sleep(0.001)
        assert layer.fault.layer == "watchdog"
        assert layer.fault.time - t0 < layer.limits.watchdog_timeout + 0.05
    finally:
        layer.close()


# -- state checks ----------------------------------------------------------------------------------------
def test_a_joint_that_stops_following_its_command_latches_a_tracking_fault():
    clock, driver, layer = rig()
    driver.freeze_joint(0)
    for _ in range(20):
        step(clock, layer, [0.8, 0, 0, 0, 0, 0, 0])
        if layer.latched:
            break
    assert layer.fault.kind == "tracking_error" and "joint 1" in layer.fault.message


def test_stale_robot_state_latches():
    clock, driver, layer = rig()
    layer.command_velocity([0.2] * 7)
    driver.freeze_state()
    clock.advance(0.06)  # older than max_state_age (50 ms), younger than the watchdog timeout
    layer.poll()
    assert layer.fault.layer == "state" and layer.fault.kind == "stale"


def test_robot_reflex_needs_an_explicit_recovery_request():
    clock, driver, layer = rig()
    step(clock, layer, [0.2] * 7)
    driver.inject_reflex()
    layer.poll()
    assert layer.fault.layer == "driver" and "reflex" in layer.fault.message
    with pytest.raises(ResetRefused, match="recover_robot_errors"):
        layer.reset()
    assert driver.fault is not None  # nothing cleared it behind our back
    layer.reset(recover_robot_errors=True)
    assert driver.fault is None and not layer.latched


def test_external_fault_resets_only_once_its_cause_is_gone():
    _clock, _driver, layer = rig()
    cause = {"active": "camera front delivers no new frames"}
    layer.trigger_fault("camera", "camera front timed out", still_active=lambda: cause["active"])
    with pytest.raises(ResetRefused, match="no new frames"):
        layer.reset()
    cause["active"] = None
    layer.reset()
    assert not layer.latched
    assert [e.kind for e in layer.drain_events()] == ["fault", "reset_refused", "reset"]


def test_a_second_fault_behind_the_first_stays_active_until_its_own_cause_is_gone():
    clock, driver, layer = rig()
    layer.command_velocity([0.2] * 7)
    driver.freeze_state()
    clock.advance(0.06)
    layer.poll()
    assert layer.fault.kind == "stale"
    camera = {"active": "camera front delivers no new frames"}
    layer.trigger_fault("camera", "camera front timed out", still_active=lambda: camera["active"], cause="camera:front")
    assert [f.layer for f in layer.faults] == ["state", "camera"] and layer.fault.kind == "stale"  # the first is reported
    driver.unfreeze_state()
    with pytest.raises(ResetRefused, match="no new frames"):
        layer.reset()  # the state is fresh again, but the camera is not
    assert layer.latched and len(layer.faults) == 2
    before = driver.commands_received
    assert not layer.command_velocity([0.1] * 7) and driver.commands_received == before  # nothing moves the arm
    camera["active"] = None
    layer.reset()
    assert not layer.latched and layer.faults == []


def test_two_cameras_faulted_one_after_the_other_each_keep_the_layer_latched():
    _clock, _driver, layer = rig()
    causes = {"front": "camera front delivers no new frames", "wrist": "camera wrist is frozen at frame 12"}
    for name in ("front", "wrist"):
        layer.trigger_fault("camera", f"camera {name} failed", still_active=lambda n=name: causes[n], cause=f"camera:{name}")
    causes["front"] = None
    with pytest.raises(ResetRefused, match="wrist is frozen"):
        layer.reset()
    assert layer.latched
    causes["wrist"] = None
    layer.reset()
    assert not layer.latched


@pytest.mark.parametrize("method", ["set_joint_velocity", "read_state"])
def test_any_exception_from_the_driver_latches_at_once(method, monkeypatch):
    clock, driver, layer = rig()
    step(clock, layer, [0.1] * 7)

    def broken(*_args, **_kw):
        raise RuntimeError("socket closed under us")

    monkeypatch.setattr(driver, method, broken)
    assert not layer.command_velocity([0.1] * 7)
    assert layer.latched and layer.fault.layer == "driver" and "RuntimeError: socket closed" in layer.fault.message


def test_safety_cost_per_command_stays_small():
    # A regression guard, not the benchmark (python -m robolearn.bench control measures it).
    _clock, _driver, layer = rig(clock=MonotonicClock())
    command = np.array([0.1, -0.1, 0.1, -0.1, 0.1, -0.1, 0.1])
    start = time.thread_time()  # CPU time of this thread: other processes on the machine do not count
    for _ in range(2000):
        layer.command_velocity(command)
    per_command = (time.thread_time() - start) / 2000
    assert per_command < 300e-6, f"{per_command * 1e6:.0f} µs of CPU per command (safety + fake driver)"
