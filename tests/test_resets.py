"""Resets on hardware: scripted waypoints through the safety layer, checked at start-up; a timed human
prompt that never blocks the process on input()."""

from __future__ import annotations

import builtins
import os
import threading
import time

import numpy as np
import pytest

from hardware.deploy import run_deployment
from hardware.config import ResetConfig
from hardware.resets import HumanResetPrompt, ResetRoutine
from hardware.teleop import KeyboardReader, ScriptedKeys
from hardware.timing import MonotonicClock, VirtualClock
from robolearn.config import ConfigError
from tests.hardware_cases import real_fake_config, real_fake_env
from tests.test_teleop import ConstantPolicy


@pytest.fixture(autouse=True)
def no_input(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("input() called: a prompt must never block the control loop")

    monkeypatch.setattr(builtins, "input", refuse)


def fake_env(seconds=1.0):
    cfg = real_fake_config()
    cfg["episode_seconds"] = seconds
    return real_fake_env(cfg)


def test_the_prompt_times_out_on_its_clock_and_returns_answers():
    clock = VirtualClock()
    said: list[str] = []
    prompt = HumanResetPrompt(ScriptedKeys({}), clock, timeout_s=30.0, say=said.append)
    assert prompt.ask("kettle in the sink") == "timeout"
    assert 30.0 <= clock.now() <= 30.2 and "RESET THE SCENE (kettle in the sink)" in said[0]
    assert any("still waiting" in s for s in said)  # reminders while it waits
    assert HumanResetPrompt(ScriptedKeys({4: ["z", "enter"]}), clock, 30.0, say=said.append).ask("x") == "done"
    assert HumanResetPrompt(ScriptedKeys({2: ["s"]}), clock, 30.0, say=said.append).ask("x") == "skip"
    assert HumanResetPrompt(ScriptedKeys({1: ["esc"]}), clock, 30.0, say=said.append).ask("x") == "quit"
    # A key pressed before the question is not an answer.
    assert HumanResetPrompt(ScriptedKeys({0: ["y"]}), clock, 1.0, say=said.append).ask("x") == "timeout"
    with pytest.raises(ConfigError, match="resets.human_timeout_s"):
        HumanResetPrompt(ScriptedKeys({}), clock, 0.0)


def test_the_prompt_answers_from_a_keyboard_thread_while_time_goes_on():
    read_fd, write_fd = os.pipe()
    keys = KeyboardReader(read_fd).start()
    try:
        threading.Timer(0.3, lambda: os.write(write_fd, b"y")).start()
        start = time.monotonic()
        answer = HumanResetPrompt(keys, MonotonicClock(), timeout_s=5.0, say=lambda m: None, poll_s=0.02).ask("x")
        assert answer == "done" and 0.25 < time.monotonic() - start < 1.0
    finally:
        keys.close()
        os.close(write_fd)
        os.close(read_fd)


def test_waypoints_are_reached_through_the_safety_layer():
    env = fake_env()
    try:
        lifted = (env.home + np.array([0.3, -0.2, 0.0, 0.2, 0.0, 0.1, 0.0])).tolist()
        routine = ResetRoutine(env, ResetConfig(waypoints=[lifted], human="never"), None)
        env.reset(seed=0)
        sent_before, commands_before = env.safety.counters["sent"], env.safety.counters["commands"]
        received = []
        original = env.driver.set_joint_velocity
        env.driver.set_joint_velocity = lambda dq: (received.append(np.asarray(dq)), original(dq))[1]
        assert routine.between_episodes(previous_success=None) == "ok"
        assert np.max(np.abs(env.driver.read_state().q - lifted)) < env.hw.resets.tolerance_rad
        sent = env.safety.counters["sent"] - sent_before
        assert sent > 5 and env.safety.counters["commands"] - commands_before == sent  # every command through the layer
        assert len(received) >= sent - 1  # joint commands (plus one gripper command), all via the layer
        # The motion ramps within the layer's acceleration limits (the scripted reset never relies on clipping).
        accel = np.abs(np.diff(np.stack(received), axis=0)) / env.safety.limits.nominal_period
        assert np.all(accel <= np.asarray(env.safety.limits.acceleration) + 1e-9)
        env.clock.advance(0.05)
        assert not env.driver.read_state().dq.any()  # held at the end
    finally:
        env.close()


@pytest.mark.parametrize("waypoint,named", [
    ([0.0] * 6, r"resets.waypoints\[0\].*needs 7 finite joint angles"),
    ([0.0, -0.78, 0.0, -0.05, 0.0, 1.57, 0.78], r"resets.waypoints\[0\]: joint 4 at -0.050 rad is outside its soft limits"),
    ([2.5, -0.78, 0.0, -2.36, 0.0, 1.57, 0.78], r"resets.waypoints\[0\]: its TCP .* outside the workspace box"),
])
def test_bad_waypoints_are_refused_before_anything_moves(waypoint, named):
    env = fake_env()
    try:
        with pytest.raises(ConfigError, match=named):
            ResetRoutine(env, ResetConfig(waypoints=[waypoint], human="never"), None)
        assert env.driver.commands_received == 0
        with pytest.raises(ConfigError, match="needs a keyboard"):
            ResetRoutine(env, ResetConfig(human="after_success"), None)
        with pytest.raises(ConfigError, match="resets.human: 'sometimes'"):
            ResetRoutine(env, ResetConfig(human="sometimes"), None)
    finally:
        env.close()


def test_deploy_asks_for_a_scene_reset_between_episodes_and_stops_when_told():
    env = fake_env(seconds=0.5)
    said: list[str] = []
    keys = ScriptedKeys({1: ["enter"], 3: ["esc"]})  # answer the first prompt, stop at the second
    routine = ResetRoutine(env, ResetConfig(human="every_episode"), HumanResetPrompt(keys, env.clock, 60.0, say=said.append))
    try:
        report = run_deployment(env, ConstantPolicy(np.zeros(8)), episodes=3, resets=routine, say=said.append)
    finally:
        env.close()
    assert len(report.episodes) == 1 and report.stopped == "scene reset prompt: quit"
    assert sum("RESET THE SCENE" in s for s in said) == 2
