"""The fault matrix, on the wall clock: each fault with its expected response and a latency bound.

Fatal faults (the e-stop latches, the arm is stopped, commands are ignored until an explicit reset that
is refused while the cause remains) are injected into a moving fake arm behind the safety layer with
its watchdog thread running; camera and loop faults go through the real-robot env with fake cameras.
Bounds leave room for this noisy 2-core machine (thread wake-ups of a few ms).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from hardware.config import FakeDriverConfig, SafetyConfig
from hardware.drivers.fake import FakeDriver
from hardware.env import EStopLatched, RealRobotEnv
from hardware.safety.layer import ResetRefused, SafetyLayer
from hardware.safety.limits import SafetyLimits
from hardware.timing import MonotonicClock
from robolearn.robots import PANDA
from robolearn.spec import InvalidActionError
from tests.hardware_cases import real_fake_config
from tests.waiting import eventually, wait_for

pytestmark = pytest.mark.timeout(60)

SPIN = [0, 0, 0, 0, 0, 0, 0.6]  # flange roll: moves the arm without moving the TCP


class Commander:
    """A policy loop sending a velocity command at 10 Hz from its own thread."""

    def __init__(self, layer: SafetyLayer, command=SPIN, period: float = 0.1):
        self.layer, self.command, self.period = layer, command, period
        self.last_sent = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            if self.layer.command_velocity(self.command):
                self.last_sent = time.monotonic()
            self._stop.wait(self.period)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.last_sent



def moving_rig(**safety):
    clock = MonotonicClock()
    driver = FakeDriver(PANDA, clock, FakeDriverConfig(command_hold_s=0.2))
    driver.connect()
    limits = SafetyLimits.from_config(SafetyConfig(**safety), PANDA, command_hold_s=0.2, control_hz=10)
    layer = SafetyLayer(driver, limits, clock, watchdog_thread=True)
    return driver, layer



def beyond_box(q):
    q = np.array(q, dtype=float)
    q[1] -= 0.9  # shoulder back: the TCP goes far behind the box's x_min
    return q


def past_joint_limit(q):
    q = np.array(q, dtype=float)
    q[6] = PANDA.q_max[6] - 0.01  # inside the datasheet range, past the 0.05 rad soft margin
    return q


@dataclass(frozen=True)
class FatalFault:
    name: str
    inject: Callable[[FakeDriver, Commander], float]  # returns the time the fault began
    layer: str  # the safety layer expected to latch
    bound_s: float  # latency from the fault to the latch
    remove_cause: Callable[[FakeDriver], None] = lambda d: None
    reset: dict = field(default_factory=dict)  # what the explicit reset must ask for
    refused_with: dict | None = None  # a reset attempt refused while the cause remains


def _inject(action):
    def inject(driver, commander):
        t = time.monotonic()
        action(driver)
        return t

    return inject


FATAL = [
    # Stale command: the policy stops sending; the watchdog must stop and latch within two periods.
    FatalFault("stale_command", lambda d, c: c.stop(), "watchdog", 0.2),
    FatalFault("robot_disconnect", _inject(FakeDriver.cut_link), "driver", 0.05,
               remove_cause=FakeDriver.restore_link, reset={"reconnect": True}, refused_with={"reconnect": True}),
    FatalFault("stale_robot_state", _inject(FakeDriver.freeze_state), "state", 0.05 + 0.03,
               remove_cause=FakeDriver.unfreeze_state, refused_with={}),
    FatalFault("robot_reflex", _inject(FakeDriver.inject_reflex), "driver", 0.03,
               reset={"recover_robot_errors": True}, refused_with={}),
    FatalFault("frozen_joint", _inject(lambda d: d.freeze_joint(6)), "state", 0.5 + 0.2 + 0.1,
               remove_cause=lambda d: d.unfreeze_joint(6)),
    FatalFault("workspace_breach", _inject(lambda d: d.move_by_hand(beyond_box(d.read_state().q))), "workspace", 0.03,
               remove_cause=lambda d: d.move_by_hand(PANDA.home), refused_with={}),
    FatalFault("joint_limit_breach", _inject(lambda d: d.move_by_hand(past_joint_limit(d.read_state().q))), "joint_limit", 0.03,
               remove_cause=lambda d: d.move_by_hand(PANDA.home), refused_with={}),
]


@pytest.mark.parametrize("fault", FATAL, ids=lambda f: f.name)
def test_fatal_fault_latches_in_time_stops_the_arm_and_ignores_commands_until_reset(fault):
    driver, layer = moving_rig()
    commander = Commander(layer).start()
    try:
        time.sleep(0.25)
        assert not layer.latched and abs(driver.read_state().dq[6]) > 0.3  # moving
        began = fault.inject(driver, commander)
        assert eventually(lambda: layer.latched, fault.bound_s + 1.0), f"{fault.name}: nothing latched"
        latency = layer.fault.time - began
        assert layer.fault.layer == fault.layer, layer.fault
        assert latency <= fault.bound_s, f"{fault.name}: latched after {latency * 1000:.0f} ms"
    finally:
        commander.stop()
    # The arm is brought to rest (by the safety layer's stop, or by its own watchdog when unreachable).
    assert eventually(lambda: driver.at_rest, 0.5)
    # Commands are ignored while latched.
    before = driver.commands_received
    assert not layer.command_velocity(SPIN)
    assert driver.commands_received == before
    if fault.refused_with is not None:
        with pytest.raises(ResetRefused):
            layer.reset(**fault.refused_with)
        assert layer.latched
    fault.remove_cause(driver)
    layer.reset(**fault.reset)
    assert layer.command_velocity(SPIN)
    assert driver.commands_received == before + 1
    layer.hold()
    layer.close()


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_command_is_rejected_and_latched_at_once(bad):
    driver, layer = moving_rig()
    try:
        before = driver.commands_received
        start = time.monotonic()
        assert not layer.command_velocity([0, 0, bad, 0, 0, 0, 0])
        assert time.monotonic() - start < 0.1  # the same call (wide: CI shares its cores); nothing reaches the arm
        assert layer.fault.layer == "input" and driver.commands_received == before
        assert not layer.command_velocity(SPIN) and driver.commands_received == before
        layer.reset()
        assert layer.command_velocity(SPIN)
    finally:
        layer.close()


def test_over_limit_commands_are_clamped_and_flagged_in_the_same_call():
    driver, layer = moving_rig(torque_rate_fraction=1.0)
    try:
        assert layer.command_velocity([0, 0, 0, 0, 0, 0, 50.0])
        assert driver.last_command[1][6] <= layer.limits.velocity[6]
        layer.hold()
        assert layer.command_torque([0, 0, 0, 0, 0, 0, -50.0])
        # Clamped to the torque limit, then cut further: held for a horizon it would spin past the speed bound.
        assert -layer.limits.torque[6] < driver.last_command[1][6] < 0.0
        kinds = [e.kind for e in layer.drain_events()]
        assert kinds.count("clamped") == 2 and "overspeed_limited" in kinds and not layer.latched
    finally:
        layer.hold()
        layer.close()


def test_step_command_is_ramped_at_the_acceleration_limit():
    driver, layer = moving_rig()
    try:
        a = layer.limits.acceleration[6]
        sent = []
        for _ in range(4):
            layer.command_velocity([0, 0, 0, 0, 0, 0, 1.3])
            sent.append(driver.last_command[1][6])
            time.sleep(0.1)
        steps = np.diff([0.0] + sent)
        assert np.all(steps <= a * 0.1 + 1e-9) and sent[0] == pytest.approx(a * 0.1)
        assert layer.counters["rate_limited"] >= 2 and not layer.latched
    finally:
        layer.hold()
        layer.close()


def test_near_a_joint_limit_the_command_tapers():
    driver, layer = moving_rig()
    try:
        q = PANDA.home.copy()
        q[6] = PANDA.q_max[6] - 0.05 - 0.1  # 0.1 rad before the soft limit
        driver.move_by_hand(q)
        assert layer.command_velocity([0, 0, 0, 0, 0, 0, 0.5])
        assert 0 < driver.last_command[1][6] < 0.5
        assert layer.drain_events()[-1].kind == "tapered" and not layer.latched
    finally:
        layer.hold()
        layer.close()


# -- through the env: cameras and the loop ---------------------------------------------------------------
@pytest.fixture
def env():
    env = _wall_clock_env(timeout_s=0.3, max_age_s=0.1)
    yield env
    env.close()


def _wall_clock_env(**camera) -> RealRobotEnv:
    cfg = real_fake_config(virtual=False)
    for name in ("front", "wrist"):
        cfg["hardware"]["cameras"][name].update(frozen_after=5, fps=30, **camera)
    env = RealRobotEnv(cfg)
    env.reset(seed=0)
    return env


SLOW_SPIN = np.array([0, 0, 0, 0, 0, 0, 0.3, -1], dtype=np.float32)


def step_until_latched(env, bound_s):
    end = time.monotonic() + bound_s + 1.0
    info = None
    while time.monotonic() < end and not env.latched:
        *_, info = env.step(SLOW_SPIN)
    return info


@pytest.mark.parametrize(
    "inject, bound_s, cause",
    [
        ("stall", 0.3 + 0.1, "no new frame"),  # camera timeout: timeout_s + a capture poll
        ("freeze", 6 / 30 + 0.1, "repeated 5 times"),  # frozen stream: frozen_after + 1 frames
        ("unplug", 0.1, "lost mid-stream"),  # mid-stream disconnect: the next grab
    ],
    ids=["camera_timeout", "frozen_camera", "camera_disconnect"],
)
def test_camera_fault_latches_the_estop_and_the_env_refuses_to_reset_until_cleared(env, inject, bound_s, cause):
    for _ in range(2):
        env.step(SLOW_SPIN)
    front = env.cameras["front"]
    began = time.monotonic()
    getattr(front, inject)()
    info = step_until_latched(env, bound_s)
    fault = env.safety.fault
    assert fault is not None and fault.layer == "camera" and cause in fault.message
    assert fault.time - began <= bound_s, f"latched after {(fault.time - began) * 1000:.0f} ms"
    assert info["safety"]["estop"] and "camera front" in info["safety"]["fault"]
    # The arm was stopped and further steps send nothing.
    assert eventually(lambda: env.driver.at_rest, 0.5)
    before = env.driver.commands_received
    _obs, _reward, _terminated, truncated, info = env.step(SLOW_SPIN)
    assert truncated and env.driver.commands_received == before
    with pytest.raises(EStopLatched, match="camera front"):
        env.reset()
    with pytest.raises(ResetRefused, match="camera front"):
        env.clear_fault()  # the stream is still broken
    front.resume()
    front.plug_in()
    assert eventually(lambda: front.unhealthy_reason() is None, 2.0)
    env.clear_fault()
    env.reset(seed=1)
    env.step(SLOW_SPIN)
    assert env.driver.commands_received > before


def test_frame_gap_is_counted_and_reported_not_fatal(env):
    env.step(SLOW_SPIN)
    env.cameras["front"].drop_frames(3)
    time.sleep(0.05)  # with the step's wait for its tick, > 3 frames (100 ms); the agent's time stays inside the watchdog
    *_, info = env.step(SLOW_SPIN)
    front = info["cameras"]["front"]
    assert front["dropped_total"] == 3
    assert any("3 frame(s) dropped" in e for e in front["events"])
    assert not env.latched


def test_a_camera_stalling_behind_stale_robot_state_keeps_the_arm_latched(env):
    env.step(SLOW_SPIN)
    env.driver.freeze_state()
    time.sleep(0.08)  # older than max_state_age
    env.step(SLOW_SPIN)
    assert env.latched and env.safety.fault.layer == "state"
    env.cameras["front"].stall()
    wait_for(lambda: any(f.layer == "camera" for f in env.safety.faults), 2.0, "the camera fault joins the stale state")
    env.driver.unfreeze_state()
    with pytest.raises(ResetRefused, match="front"):
        env.clear_fault()  # the state is fresh again; the camera is still stalled
    assert env.latched
    with pytest.raises(EStopLatched):
        env.reset(seed=1)  # and nothing homes the arm
    env.cameras["front"].resume()
    wait_for(lambda: env.cameras["front"].unhealthy_reason() is None or "since its fault" in env.cameras["front"].unhealthy_reason(),
               2.0, "frames again")
    time.sleep(0.1)
    env.clear_fault()
    assert not env.latched
    env.reset(seed=1)


def test_stale_frame_is_flagged_in_info_not_fatal():
    # Stale after 50 ms, a fault only after 1 s: the window is wide enough for a loaded machine, and the
    # test waits for the frame's real age instead of guessing it from sleeps and the loop's phase.
    env = _wall_clock_env(timeout_s=1.0, max_age_s=0.05)
    try:
        env.step(SLOW_SPIN)
        front = env.cameras["front"]
        front.stall()
        wait_for(lambda: front.health().last_frame_age > 0.06, 1.0, "the front frame older than max_age_s")
        *_, info = env.step(SLOW_SPIN)
        assert info["cameras"]["front"]["stale"] and info["cameras"]["front"]["age_ms"] > 50
        assert not info["cameras"]["wrist"]["stale"] and not env.latched
        front.resume()
        for _ in range(5):  # fresh frames again within a few steps (one late frame thread is not a failure)
            *_, info = env.step(SLOW_SPIN)
            if not info["cameras"]["front"]["stale"]:
                break
        assert not info["cameras"]["front"]["stale"] and not env.latched
    finally:
        env.close()


def test_loop_overrun_is_counted_and_the_schedule_reanchors():
    env = RealRobotEnv(real_fake_config())  # a virtual clock: the agent's time is advanced, not slept
    try:
        env.reset(seed=0)
        env.step(SLOW_SPIN)
        env.clock.advance(0.08)
        env.step(SLOW_SPIN)  # commands go out 80 ms after each tick ...
        env.clock.advance(0.115)  # ... then the agent takes longer than a period: a missed deadline, 135 ms
        *_, late = env.step(SLOW_SPIN)  # after the last command, inside the watchdog timeout (180 ms)
        *_, next_ = env.step(SLOW_SPIN)
        assert late["timing"]["deadline_missed"] and late["timing"]["deadline_misses"] == 1
        assert not next_["timing"]["deadline_missed"]  # no burst of catch-up steps after the overrun
        assert next_["timing"]["period_ms"] == pytest.approx(100.0, abs=1.0)
        assert not env.latched
    finally:
        env.close()


def test_bad_action_through_the_env_raises_and_latches_nothing(env):
    before = env.driver.commands_received
    with pytest.raises(InvalidActionError):
        env.step(np.full(8, np.nan, dtype=np.float32))
    assert env.driver.commands_received == before and not env.latched
