"""Teleop and intervention recording on the fake arm: keys are read without blocking, commands go
through the env and its safety layer, and what is recorded is the executed, safety-filtered action in
the policy's action space (checked against what the driver actually received)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from hardware.deploy import run_deployment
from hardware.safety.kinematics import jacobian
from hardware.teleop import (
    InterventionPolicy,
    InterventionRecorder,
    KeyboardReader,
    ScriptedKeys,
    TeleopCommander,
    TeleopSession,
    decode_keys,
    gamepad_status,
)
from robolearn.replay import ReplayStorage
from robolearn.replay.recording import EpisodeRecorder
from robolearn.spec import EnvSpec
from tests.hardware_cases import real_fake_config, real_fake_env


def fake_env(seconds: float = 3.0):
    cfg = real_fake_config()
    cfg["episode_seconds"] = seconds
    cfg["hardware"]["resets"]["joint_noise_rad"] = 0.0
    return real_fake_env(cfg)


def spy_on_driver(env) -> list[np.ndarray]:
    """Every joint velocity the fake arm receives, in order."""
    sent: list[np.ndarray] = []
    real = env.driver.set_joint_velocity

    def set_joint_velocity(dq):
        sent.append(np.array(dq, dtype=np.float64))
        real(dq)

    env.driver.set_joint_velocity = set_joint_velocity
    return sent


# -- keyboard --------------------------------------------------------------------------------------------------
def test_terminal_bytes_decode_to_key_names():
    assert decode_keys(b"qA \x1b[A\x1b[D\x1b\n+") == ["q", "A", "space", "up", "left", "esc", "enter", "+"]


def test_the_keyboard_reader_never_blocks_and_delivers_keys_from_its_thread():
    read_fd, write_fd = os.pipe()
    reader = KeyboardReader(read_fd).start()
    try:
        start = time.monotonic()
        assert reader.poll() == []  # nothing typed: returns at once
        assert time.monotonic() - start < 0.1  # at once (wide: CI shares its cores); a blocking read waits forever
        os.write(write_fd, b"qa\x1b[A")
        keys: list[str] = []
        deadline = time.monotonic() + 2.0
        while len(keys) < 3 and time.monotonic() < deadline:
            keys += reader.poll()
            time.sleep(0.01)
        assert keys == ["q", "a", "up"]
        os.close(write_fd)
        deadline = time.monotonic() + 2.0
        while not reader.closed_input and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.closed_input
    finally:
        reader.close()
        os.close(read_fd)


def test_gamepad_is_reported_unavailable_with_the_reason(tmp_path):
    # (tests/test_gamepad.py covers the gamepad itself; here: no device, and the reason says so.)
    available, reason = gamepad_status(pattern=str(tmp_path / "js*"))
    assert available is False and "no joystick device" in reason
    available, reason = gamepad_status(str(tmp_path / "js0"))
    assert available is False and "does not exist" in reason


# -- key -> command -------------------------------------------------------------------------------------------
def test_joint_keys_drive_one_joint_until_released_and_space_stops():
    spec = EnvSpec.from_config(real_fake_config())
    c = TeleopCommander(spec, "joint", speed=0.5, hold_s=0.6)
    q = spec.robot.home
    assert c.press("e", 0.0)  # joint 3 up
    cmd = c.joint_command(0.3, q)
    assert cmd[2] == pytest.approx(0.5 * spec.command_limits[2]) and np.count_nonzero(cmd) == 1
    assert not c.joint_command(0.7, q).any()  # released: the key stopped repeating 0.6 s ago
    c.press("d", 1.0)  # reversal
    assert c.joint_command(1.1, q)[2] < 0
    c.press("space", 1.2)
    assert not c.joint_command(1.2, q).any()
    assert c.press("c", 1.3) and c.action(1.3, q)[-1] == 1.0
    assert not c.press("n", 1.3)  # not a motion key: left to the caller
    with pytest.raises(ValueError, match="joint_velocity"):
        cfg = real_fake_config()
        cfg["control_mode"] = "joint_torque"
        TeleopCommander(EnvSpec.from_config(cfg))


def test_a_six_joint_ur_has_no_joint_7_keys():
    from tests.hardware_cases import real_ur_config

    spec = EnvSpec.from_config(real_ur_config())
    c = TeleopCommander(spec, "joint")
    assert c.press("y", 0.0) and c.joint_command(0.1, spec.robot.home)[5] > 0  # joint 6, the UR's last
    assert not c.press("u", 0.0) and not c.press("joint7+", 0.0)  # left to the caller, nothing moves
    assert c.action(0.1, spec.robot.home).shape == (7,)


@pytest.mark.parametrize("config", ["panda", "ur5e"])
def test_end_effector_keys_move_the_hand_along_the_base_axis_holding_orientation(config):
    from tests.hardware_cases import real_ur_config

    spec = EnvSpec.from_config(real_ur_config() if config == "ur5e" else real_fake_config())
    c = TeleopCommander(spec, "ee", ee_speed=0.05)
    q = spec.robot.home + 0.1
    c.press("w", 0.0)  # +x
    dq = c.joint_command(0.1, q)
    twist = jacobian(spec.robot, q) @ dq
    assert twist[:3] == pytest.approx([0.05, 0.0, 0.0], abs=2e-3)
    assert np.abs(twist[3:]).max() < 5e-3
    # Integrated through the forward kinematics, 0.2 s of it moves the TCP ~1 cm along x.
    moved = spec.robot.tcp_position(q + dq * 0.2) - spec.robot.tcp_position(q)
    assert moved == pytest.approx([0.01, 0.0, 0.0], abs=1e-3)


def test_jacobian_matches_forward_kinematics():
    spec = EnvSpec.from_config(real_fake_config())
    q = spec.robot.home + np.linspace(-0.2, 0.2, 7)
    dq = np.linspace(0.01, -0.01, 7)
    J = jacobian(spec.robot, q)
    step = spec.robot.tcp_position(q + dq * 1e-3) - spec.robot.tcp_position(q)
    assert J[:3] @ dq * 1e-3 == pytest.approx(step, abs=1e-7)


# -- teleop demos ---------------------------------------------------------------------------------------------
def test_teleop_demo_records_the_executed_safety_filtered_actions():
    env = fake_env()
    sent = spy_on_driver(env)
    store = ReplayStorage(env.observation_space, env.action_space.shape, 200)
    recorder = EpisodeRecorder(store)
    # Full speed on joint 1 (the rate limiter ramps it), close the gripper, joint 2 down, then keep the episode.
    # m at poll 12: the person marks the task done as of the observation step 12 acts on.
    script = {i: ["q"] for i in range(1, 8)} | {4: ["q", "c"]} | {10: ["s"]} | {12: ["m"]} | {14: ["n"]}
    session = TeleopSession(env, ScriptedKeys(script), TeleopCommander(env.contract, "joint", speed=1.0), recorder, say=lambda m: None)
    try:
        episode = session.run_episode(seed=0)
    finally:
        env.close()
    assert episode.kept and episode.ended_by == "operator" and episode.steps == 14
    assert store.num_transitions() == 14 and store.episodes_added == 1
    recorded = store.action[:14]
    executed = np.stack(sent[-14:]) / env.contract.command_limits  # the last 14 commands are the steps'
    np.testing.assert_allclose(recorded[:, :7], executed, atol=1e-6)
    # The operator asked for 1.0 on joint 1 from step 1; the arm got a ramp: recorded != requested.
    assert recorded[1, 0] < 0.5 and recorded[4, 0] == pytest.approx(1.0)
    assert np.any((recorded[:, 0] > 0.01) & (recorded[:, 0] < 0.99))
    assert recorded[3, 7] == -1.0 and recorded[5, 7] == 1.0  # the gripper command as sent
    assert store.truncated[13] and not store.terminated[13]  # operator-ended: bootstrapped
    assert episode.success_marked_at == 12 and recorder.labels().tolist() == [0] * 12 + [1] * 3  # 15 rows: 14 steps + the first


def test_a_discarded_teleop_episode_is_not_stored_and_demos_append_to_the_file(tmp_path):
    env = fake_env()
    path = tmp_path / "demos.npz"
    try:
        for script, keep in (({1: ["q"], 4: ["x"]}, False), ({1: ["w"], 3: ["n"]}, True), ({1: ["e"], 5: ["n"]}, True)):
            recorder = EpisodeRecorder.open(path, env.observation_space, env.action_space.shape, room=100)
            session = TeleopSession(env, ScriptedKeys(script), TeleopCommander(env.contract), recorder, say=lambda m: None)
            assert session.run_episode(seed=0).kept is keep
            if recorder.kept:
                recorder.save()
    finally:
        env.close()
    store = ReplayStorage.load(path, env.observation_space, env.action_space.shape)
    assert store.episodes_added == 2 and store.num_transitions() == 3 + 5


def test_teleop_cannot_bypass_a_latched_fault():
    env = fake_env()
    store = ReplayStorage(env.observation_space, env.action_space.shape, 100)
    script = {i: ["q"] for i in range(1, 6)}
    session = TeleopSession(env, ScriptedKeys(script), TeleopCommander(env.contract, speed=1.0), EpisodeRecorder(store), say=lambda m: None)
    real_step = env.step

    def step(action):
        if env.driver.commands_received > 0 and session.keys.calls == 3:
            env.driver.inject_reflex()
        return real_step(action)

    env.step = step
    try:
        episode = session.run_episode(seed=0)
        assert episode.ended_by == "safety" and env.latched
        # What was recorded for the faulted step is a stop (zeros), not the operator's request.
        assert not store.action[episode.steps - 1, :7].any()
    finally:
        env.close()


# -- interventions --------------------------------------------------------------------------------------------
class ConstantPolicy:
    def __init__(self, action):
        self.action = np.asarray(action, dtype=np.float32)
        self.resets = self.calls = 0

    def reset(self):
        self.resets += 1

    def act(self, obs):
        self.calls += 1
        return self.action.copy()


def test_interventions_record_the_humans_executed_actions_in_the_policys_space():
    env = fake_env(seconds=2.0)
    sent = spy_on_driver(env)
    policy_action = np.zeros(8, dtype=np.float32)
    policy_action[0] = 0.4
    inner = ConstantPolicy(policy_action)
    # Poll i is made at step i: take over at step 3, drive joint 1 down at full speed, hand back at step 9.
    keys = ScriptedKeys({3: ["i", "a"], 4: ["a"], 5: ["a"], 6: ["a", "c"], 7: ["a"], 9: ["i"]})
    commander = TeleopCommander(env.contract, "joint", speed=1.0)
    policy = InterventionPolicy(inner, keys, commander, env.clock, say=lambda m: None)
    store = ReplayStorage(env.observation_space, env.action_space.shape, 100)
    interventions = InterventionRecorder(EpisodeRecorder(store))
    flags: list[bool] = []
    try:
        report = run_deployment(env, policy, episodes=1, interventions=interventions, say=lambda m: None,
                                on_transition=lambda *args: flags.append(policy.intervening))
    finally:
        env.close()
    episode = report.episodes[0]
    assert episode.length == 20 and episode.intervention_steps == 6 and interventions.segments == 1
    assert inner.calls == 20  # the policy saw every observation (frame stack kept current)
    assert flags == [False] * 3 + [True] * 6 + [False] * 11
    assert store.num_transitions() == 6 and store.episodes_added == 1
    recorded = store.action[:6]
    executed = np.stack(sent[-20:][3:9]) / env.contract.command_limits
    np.testing.assert_allclose(recorded[:, :7], executed, atol=1e-6)
    # From the policy's +0.4 on joint 1 the human's -1.0 arrives ramped by the rate limiter.
    assert recorded[0, 0] > -1.0 and recorded[-1, 0] < recorded[0, 0] and np.all(np.diff(recorded[:4, 0]) < 0)
    assert recorded[3:, 7].tolist() == [1.0, 1.0, 1.0]  # gripper closed at step 6
    assert store.truncated[5] and not store.terminated[5]  # handed back: bootstrapped


def test_the_teleop_command_records_demos_a_training_run_can_load(tmp_path):
    from hydra import compose, initialize_config_dir

    from robolearn.paths import CONFIG_DIR
    from hardware.teleop.command import run

    demos = tmp_path / "demos.npz"
    overrides = ["env.hardware.loop.clock=virtual", "env.episode_seconds=1", "episodes=2", f"demos_path={demos}", "resets@env.hardware.resets=unattended"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="teleop", overrides=overrides)
        bad = compose(config_name="teleop", overrides=[*overrides, "device=gamepad", f"gamepad.path={tmp_path / 'js0'}"])
    keys = ScriptedKeys({1: ["q"], 2: ["q"], 5: ["n"], 7: ["w"]})  # episode 1 ended by the operator, episode 2 runs out
    result = run(cfg, keys=keys, say=lambda m: None)
    assert result["kept"] == 2 and result["steps"] == [5, 10] and result["ended_by"] == ["operator", "env"]
    spec = EnvSpec.from_config(cfg.env)
    store = ReplayStorage.load(demos, spec.observation_space(), spec.action_space().shape)
    assert store.num_transitions() == 15 and store.action[:15, :7].any()
    from hardware.teleop import GamepadUnavailable

    with pytest.raises(GamepadUnavailable, match="teleop device=gamepad: .*js0 does not exist"):
        run(bad, keys=keys, say=lambda m: None)


def test_the_teleop_command_refuses_a_wrong_key_or_value_at_start_up_naming_it(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from hardware.teleop.command import run
    from robolearn.config import ConfigError
    from robolearn.paths import CONFIG_DIR

    def config(*overrides):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name="teleop", overrides=[f"demos_path={tmp_path / 'd.npz'}", *overrides])

    with pytest.raises(ConfigCompositionException, match="speeed"):
        config("speeed=0.5")
    for override, named in [("device=joystick", "device: 'joystick'"), ("mode=cartesian", "mode: 'cartesian'"), ("episodes=0", "episodes: 0"),
                            ("gamepad.dead_zone=1.5", "gamepad.dead_zone: 1.5"), ("+gamepad.deadzone=0.1", "teleop config: .*deadzone")]:
        with pytest.raises(ConfigError, match=named):
            run(config(override), keys=ScriptedKeys({}))
    assert not (tmp_path / "d.npz").exists()  # nothing was built or recorded


# -- nobody at the controls -----------------------------------------------------------------------------------
def test_an_episode_nobody_drove_is_not_saved_and_says_so(tmp_path):
    env = fake_env(seconds=1.0)
    said: list[str] = []
    store = ReplayStorage(env.observation_space, env.action_space.shape, 100)
    try:
        # No key at all: the env ends the episode after its 10 steps. Then only "n" (keep) and a speed key.
        for script in ({}, {2: ["+"], 3: ["n"]}):
            session = TeleopSession(env, ScriptedKeys(script), TeleopCommander(env.contract), EpisodeRecorder(store), say=said.append)
            episode = session.run_episode(seed=0)
            assert not episode.kept and episode.human_commands == 0
        # One motion key is a human command: kept.
        session = TeleopSession(env, ScriptedKeys({1: ["q"], 3: ["n"]}), TeleopCommander(env.contract), EpisodeRecorder(store), say=said.append)
        assert session.run_episode(seed=0).kept
    finally:
        env.close()
    assert "not recorded: no human command in the episode" in said[0] and "not recorded: no human command" in said[1]
    assert store.episodes_added == 1 and store.num_transitions() == 3


def test_keyboard_teleop_without_a_terminal_is_refused_before_anything_connects(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    import hardware.teleop.command as command
    from hardware.teleop import InputUnavailable
    from robolearn.paths import CONFIG_DIR

    def must_not_run(*_a, **_kw):
        raise AssertionError("the env was built without an input device")

    monkeypatch.setattr(command, "make_env", must_not_run)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="teleop", overrides=[f"demos_path={tmp_path / 'd.npz'}"])
    read_fd, write_fd = os.pipe()
    try:
        with pytest.raises(InputUnavailable, match="keyboard teleop needs a person at a terminal: standard input is not a terminal"):
            command.run(cfg, stdin_fd=read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert not (tmp_path / "d.npz").exists()


def test_a_terminal_in_the_background_is_refused_instead_of_stopping_silently(monkeypatch):
    from hardware.teleop import terminal_problem

    monkeypatch.setattr(os, "isatty", lambda fd: True)
    monkeypatch.setattr(os, "tcgetpgrp", lambda fd: os.getpgrp() + 1)  # another process group has the terminal
    assert "timeout --foreground" in terminal_problem(0)
    # A reader that does not require a terminal leaves a background one alone (no cbreak, no read: both would stop us).
    reader = KeyboardReader(0).start()
    assert reader.closed_input and reader._thread is None and reader._saved_tty is None and reader.poll() == []
    reader.close()
    monkeypatch.setattr(os, "tcgetpgrp", lambda fd: os.getpgrp())
    assert terminal_problem(0) is None


def test_the_teleop_command_without_a_terminal_exits_2_with_one_line(tmp_path):
    import subprocess
    import sys

    demos = tmp_path / "d.npz"
    cmd = [sys.executable, "-m", "hardware.teleop", f"demos_path={demos}", "env.hardware.loop.clock=virtual", "hydra.run.dir=" + str(tmp_path)]
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("teleop: InputUnavailable: keyboard teleop needs a person at a terminal")
    assert not demos.exists()


def test_a_teleop_session_ended_by_a_latched_fault_exits_3(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    import hardware.teleop.command as command
    from robolearn.paths import CONFIG_DIR

    real_make_env = command.make_env

    def make_env(cfg):
        env = real_make_env(cfg)
        real_step = env.step

        def step(action):
            if env.driver.commands_received and keys.calls == 4:
                env.driver.inject_reflex()
            return real_step(action)

        env.step = step
        return env

    monkeypatch.setattr(command, "make_env", make_env)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="teleop", overrides=["env.hardware.loop.clock=virtual", "env.episode_seconds=1", "episodes=3",
                                                       f"demos_path={tmp_path / 'd.npz'}", "resets@env.hardware.resets=unattended"])
    keys = ScriptedKeys({i: ["q"] for i in range(1, 8)})
    result = command.run(cfg, keys=keys, say=lambda m: None)
    assert result["outcome"] == "fault" and command.exit_code(result) == 3 and result["episodes"] == 1
    assert result["stopped"].startswith("safety e-stop latched: driver: ")
    ok = {"outcome": "done"}
    assert command.exit_code(ok) == 0 and command.exit_code({"outcome": "stopped"}) == 4
