"""Gamepad teleop on the Linux joystick API, with a pipe (or a FIFO) standing in for /dev/input/js*: crafted
js_event bytes in, key names out; the same commander, env and safety layer as the keyboard; a device that
goes away stops the input without hanging the loop."""

from __future__ import annotations

import errno
import logging
import os
import sys

import numpy as np
import pytest

from hardware.safety.kinematics import jacobian
from hardware.teleop import GamepadReader, GamepadUnavailable, TeleopCommander, TeleopSession, gamepad_status
from hardware.teleop.gamepad import EVENT, JS_EVENT_AXIS, JS_EVENT_BUTTON, encode_events, require_gamepad
from robolearn.replay import ReplayStorage
from robolearn.replay.recording import EpisodeRecorder
from robolearn.spec import EnvSpec
from tests.hardware_cases import real_fake_config
from tests.test_teleop import fake_env, spy_on_driver

FULL = 32767
# What an Xbox pad (xpad) reports when opened: sticks and d-pad centred, triggers released, no button down.
REST = {0: 0, 1: 0, 2: -FULL, 3: 0, 4: 0, 5: -FULL, 6: 0, 7: 0}


def axes(values: dict[int, int], init: bool = False) -> bytes:
    return encode_events(values, JS_EVENT_AXIS, init)


def buttons(values: dict[int, int], init: bool = False) -> bytes:
    return encode_events(values, JS_EVENT_BUTTON, init)


def init_burst(**overrides: int) -> bytes:
    return axes({**REST, **{int(k[1:]): v for k, v in overrides.items()}}, init=True) + buttons({b: 0 for b in range(11)}, init=True)


@pytest.fixture
def pad():
    """(reader in joint mode on a pipe, write fd); the reader's mode can be changed before the first event."""
    read_fd, write_fd = os.pipe()
    reader = GamepadReader(fd=read_fd).start()
    state = {"write": write_fd}
    yield reader, state
    reader.close()
    os.close(read_fd)
    if state["write"] is not None:
        os.close(state["write"])


def send(state, data: bytes) -> None:
    os.write(state["write"], data)


# -- events -> keys ---------------------------------------------------------------------------------------------
def test_js_event_layout_is_the_kernels_8_bytes():
    assert EVENT.size == 8
    if sys.byteorder == "little":
        assert encode_events({3: -2}, JS_EVENT_AXIS, init=True, time_ms=5) == bytes([5, 0, 0, 0, 0xFE, 0xFF, 0x82, 3])


def test_the_init_burst_sets_state_without_keys_and_a_deflected_stick_waits_for_a_release(pad):
    reader, state = pad
    assert reader.poll() == []  # nothing sent yet: returns at once
    # Connected with the left stick pushed right (drift or a hand on it) and RB held: nothing moves.
    send(state, init_burst(a0=20000) + buttons({5: 1}, init=True))
    assert reader.poll() == [] and reader.poll() == []
    send(state, axes({0: 25000}))  # still deflected since the burst: still ignored
    assert reader.poll() == []
    send(state, axes({0: 0}) + axes({0: 25000}))  # back through the centre, then pushed: now it counts
    assert reader.poll() == ["joint1+"]
    send(state, buttons({5: 0}) + buttons({5: 1}))  # RB released once, pressed again
    assert reader.poll() == ["joint1+", "joint7+"]
    assert reader.events == 8 + 11 + 1 + 1 + 2 + 2


def test_a_trigger_resting_mid_travel_in_the_burst_does_not_fire(pad):
    reader, state = pad
    send(state, init_burst(a5=0))  # some drivers report an untouched trigger as 0 (half travel)
    assert reader.poll() == []
    send(state, axes({5: 10000}))
    assert reader.poll() == []  # not a fresh press
    send(state, axes({5: -FULL}) + axes({5: FULL}))
    assert reader.poll() == ["+"]


def test_the_dead_zone_and_repeats_while_held(pad):
    reader, state = pad
    send(state, init_burst())
    send(state, axes({3: int(0.24 * FULL)}))
    assert reader.poll() == []  # inside the default 0.25 dead zone
    send(state, axes({3: int(0.26 * FULL)}))
    assert reader.poll() == ["joint3+"] and reader.poll() == ["joint3+"] and reader.poll() == ["joint3+"]
    send(state, axes({3: int(0.1 * FULL)}))  # let go: back inside the dead zone
    assert reader.poll() == []

    read_fd, write_fd = os.pipe()
    stiff = GamepadReader(fd=read_fd, dead_zone=0.5).start()
    try:
        os.write(write_fd, init_burst() + axes({3: int(0.45 * FULL)}))
        assert stiff.poll() == []
        os.write(write_fd, axes({3: -int(0.55 * FULL)}))
        assert stiff.poll() == ["joint3-"]
    finally:
        stiff.close()
        os.close(read_fd)
        os.close(write_fd)
    with pytest.raises(ValueError, match="dead_zone"):
        GamepadReader(fd=0, dead_zone=1.0)


def test_a_partial_event_waits_for_the_rest_of_its_bytes(pad):
    reader, state = pad
    send(state, init_burst())
    event = axes({1: -FULL})  # left stick up
    send(state, event[:5])
    assert reader.poll() == []
    send(state, event[5:])
    assert reader.poll() == ["joint2+"]


JOINT_MAP = [  # (axis, raw value, key): right and up turn a joint positive
    (0, FULL, "joint1+"), (0, -FULL, "joint1-"), (1, -FULL, "joint2+"), (1, FULL, "joint2-"),
    (3, FULL, "joint3+"), (3, -FULL, "joint3-"), (4, -FULL, "joint4+"), (4, FULL, "joint4-"),
    (6, FULL, "joint5+"), (6, -FULL, "joint5-"), (7, -FULL, "joint6+"), (7, FULL, "joint6-"),
    (2, FULL, "-"), (5, FULL, "+"),  # triggers are speed buttons (once per pull), not motion
]
EE_MAP = [  # ee: left stick up/left = +x/+y of the base frame, right stick up = +z
    (1, -FULL, "up"), (1, FULL, "down"), (0, -FULL, "left"), (0, FULL, "right"), (4, -FULL, "r"), (4, FULL, "f"),
    (3, FULL, None), (6, FULL, None), (7, FULL, None),
]


@pytest.mark.parametrize("mode, mapping", [("joint", JOINT_MAP), ("ee", EE_MAP)])
def test_axis_to_key_mapping_in_both_modes(mode, mapping):
    spec = EnvSpec.from_config(real_fake_config())
    read_fd, write_fd = os.pipe()
    reader = GamepadReader(fd=read_fd, mode=mode).start()
    try:
        os.write(write_fd, init_burst())
        for axis, value, key in mapping:
            os.write(write_fd, axes({axis: value}))
            keys = reader.poll()
            assert keys == ([key] if key else []), (axis, value)
            os.write(write_fd, axes({axis: REST[axis]}))
            assert reader.poll() == []
            if key is not None:  # the commander understands it as a motion key
                assert TeleopCommander(spec, mode).press(key, 0.0)
    finally:
        reader.close()
        os.close(read_fd)
        os.close(write_fd)
    if mode == "ee":  # left stick up, through the commander: the hand moves along +x
        commander = TeleopCommander(spec, "ee", ee_speed=0.05)
        commander.press("up", 0.0)
        q = spec.robot.home + 0.1
        twist = jacobian(spec.robot, q) @ commander.joint_command(0.1, q)
        assert twist[:3] == pytest.approx([0.05, 0.0, 0.0], abs=2e-3)


def test_joint_stick_keys_drive_the_same_joints_as_the_keyboard_letters():
    spec = EnvSpec.from_config(real_fake_config())
    q = spec.robot.home
    for pad_key, letter in (("joint2-", "s"), ("joint6+", "y"), ("joint7-", "j")):
        by_pad, by_keyboard = TeleopCommander(spec), TeleopCommander(spec)
        by_pad.press(pad_key, 0.0)
        by_keyboard.press(letter, 0.0)
        np.testing.assert_array_equal(by_pad.joint_command(0.1, q), by_keyboard.joint_command(0.1, q))
        assert by_pad.joint_command(0.1, q).any()


def test_buttons_fire_once_per_press_and_triggers_once_per_pull(pad):
    reader, state = pad
    send(state, init_burst())
    send(state, buttons({0: 1}))  # A: close
    assert reader.poll() == ["c"]
    assert reader.poll() == []  # held: no repeat
    send(state, buttons({0: 0, 2: 1}) + buttons({2: 0}))  # A released, X pressed and released within one poll
    assert reader.poll() == ["o"]
    presses = {1: "space", 3: "i", 6: "x", 8: "esc"}
    for button, key in presses.items():
        send(state, buttons({button: 1}) + buttons({button: 0}))
        assert reader.poll() == [key]
    send(state, buttons({7: 1}))  # START: answers the reset prompt and keeps the episode
    assert reader.poll() == ["enter", "n"]
    send(state, buttons({7: 0}))
    send(state, axes({5: 0}) + axes({5: 1000}))  # RT past half travel, wobbling: one '+'
    assert reader.poll() == ["+"]
    send(state, axes({5: -20000}) + axes({5: 5000}))  # released below a quarter, pulled again
    send(state, axes({2: FULL}))  # and LT
    assert reader.poll() == ["+", "-"]
    send(state, buttons({4: 1}) + buttons({0: 1}))  # LB is joint 7 down while held; A a press
    assert reader.poll() == ["c", "joint7-"] and reader.poll() == ["joint7-"]


# -- a device that goes away ------------------------------------------------------------------------------------
def test_closing_the_write_end_is_a_reported_fault_and_no_keys(pad, caplog):
    reader, state = pad
    send(state, init_burst() + axes({0: FULL}))
    assert reader.poll() == ["joint1+"]
    send(state, buttons({0: 1}))  # pressed just before the device went away: dropped with it
    os.close(state["write"])
    state["write"] = None
    with caplog.at_level(logging.ERROR, logger="hardware.teleop.gamepad"):
        assert reader.poll() == []
    assert reader.fault is not None and "end of input" in reader.fault
    assert any("no more gamepad input" in r.getMessage() for r in caplog.records)
    assert reader.poll() == [] and reader.poll() == []


class UnpluggedReader(GamepadReader):
    """A pad whose next read fails as joydev's does once the device is unplugged."""

    unplugged = False

    def _read(self, n: int) -> bytes:
        if self.unplugged:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        return super()._read(n)


def test_an_unplugged_device_enodev_is_a_fault_and_gamepad_status_explains_it(tmp_path):
    fifo = tmp_path / "js0"
    os.mkfifo(fifo)
    keep_open = os.open(fifo, os.O_RDWR)  # a writer, so the FIFO does not read as closed
    try:
        assert gamepad_status(str(fifo)) == (True, f"gamepad {fifo}")
        reader = UnpluggedReader(str(fifo)).start()
        os.write(keep_open, init_burst() + axes({4: -FULL}))
        assert reader.poll() == ["joint4+"]
        reader.unplugged = True
        assert reader.poll() == []
        assert "device disappeared" in reader.fault and "No such device" in reader.fault
        reader.close()
    finally:
        os.close(keep_open)
    fifo.unlink()  # udev removes the node of an unplugged pad
    available, reason = gamepad_status(str(fifo))
    assert not available and "does not exist" in reason and "device disappeared" in reason
    available, reason = gamepad_status(pattern=str(tmp_path / "js*"))
    assert not available and "no joystick device" in reason and "failed" in reason


def test_gamepad_status_is_truthful_about_devices(tmp_path):
    available, reason = gamepad_status(pattern=str(tmp_path / "js*"))
    assert not available and "no joystick device" in reason and "keyboard" in reason
    with pytest.raises(GamepadUnavailable, match="teleop device=gamepad: .*no joystick device"):
        require_gamepad(pattern=str(tmp_path / "js*"))
    os.mkfifo(tmp_path / "js1")
    os.mkfifo(tmp_path / "js0")
    assert gamepad_status(pattern=str(tmp_path / "js*")) == (True, f"gamepad {tmp_path / 'js0'}")
    assert require_gamepad(pattern=str(tmp_path / "js*")) == str(tmp_path / "js0")
    assert require_gamepad(str(tmp_path / "js1")) == str(tmp_path / "js1")
    (tmp_path / "js0").unlink()
    (tmp_path / "js0").mkdir()  # js0 unusable: js1 is the one to read
    assert require_gamepad(pattern=str(tmp_path / "js*")) == str(tmp_path / "js1")
    os.rmdir(tmp_path / "js0")
    (tmp_path / "dir").mkdir()
    available, reason = gamepad_status(str(tmp_path / "dir"))
    assert not available and "not a character device" in reason
    with pytest.raises(GamepadUnavailable, match="cannot be opened"):
        GamepadReader(str(tmp_path / "missing")).start()


# -- teleop episodes driven by the gamepad ----------------------------------------------------------------------
class PadScript:
    """Writes scripted js_event bytes into the pad's pipe just before poll i, then polls the reader."""

    def __init__(self, reader: GamepadReader, write_fd: int, script: dict[int, bytes], unplug_at: int | None = None):
        self.reader, self.write_fd, self.script, self.unplug_at = reader, write_fd, script, unplug_at
        self.calls = 0
        self.seen: list[list[str]] = []

    @property
    def fault(self):
        return self.reader.fault

    def poll(self) -> list[str]:
        if self.calls in self.script:
            os.write(self.write_fd, self.script[self.calls])
        if self.calls == self.unplug_at:
            os.close(self.write_fd)
        self.calls += 1
        keys = self.reader.poll()
        self.seen.append(keys)
        return keys


def test_a_gamepad_teleop_demo_records_the_executed_safety_filtered_actions():
    env = fake_env()
    sent = spy_on_driver(env)
    store = ReplayStorage(env.observation_space, env.action_space.shape, 200)
    read_fd, write_fd = os.pipe()
    reader = GamepadReader(fd=read_fd).start()
    # Poll i is made at step i. Left stick right (joint 1 up) held from step 1 to 6, A (close) at step 4,
    # right stick down (joint 4 down) at steps 9-10, START (keep the episode) at step 18.
    script = {0: init_burst(), 1: axes({0: FULL}), 4: buttons({0: 1}), 7: axes({0: 0}) + buttons({0: 0}),
              9: axes({4: FULL}), 11: axes({4: 0}), 18: buttons({7: 1})}
    keys = PadScript(reader, write_fd, script)
    session = TeleopSession(env, keys, TeleopCommander(env.contract, "joint", speed=1.0, hold_s=0.6), EpisodeRecorder(store), say=lambda m: None)
    try:
        episode = session.run_episode(seed=0)
    finally:
        env.close()
        reader.close()
        os.close(read_fd)
        os.close(write_fd)
    assert keys.seen[1:7] == [["joint1+"]] * 3 + [["c", "joint1+"]] + [["joint1+"]] * 2 and keys.seen[7] == []
    assert keys.seen[18] == ["enter", "n"]
    assert episode.kept and episode.ended_by == "operator" and episode.steps == 18
    assert store.num_transitions() == 18 and store.episodes_added == 1
    recorded = store.action[:18]
    executed = np.stack(sent[-18:]) / env.contract.command_limits
    np.testing.assert_allclose(recorded[:, :7], executed, atol=1e-6)
    # Asked for 1.0 from step 1: the rate limiter ramps it; released after step 6, it runs out within hold_s.
    assert recorded[1, 0] < 0.5 and recorded[6, 0] == pytest.approx(1.0)
    assert np.all(recorded[13:, 0] < recorded[6, 0]) and recorded[17, 0] == pytest.approx(0.0, abs=1e-6)
    assert recorded[3, 7] == -1.0 and recorded[4, 7] == 1.0
    assert recorded[10:12, 3].max() < 0 and not recorded[:9, 3].any()
    assert not recorded[:, [1, 2, 4, 5, 6]].any()


def test_a_gamepad_lost_mid_episode_ends_it_unrecorded_and_the_arm_holds():
    env = fake_env()
    sent = spy_on_driver(env)
    store = ReplayStorage(env.observation_space, env.action_space.shape, 200)
    read_fd, write_fd = os.pipe()
    reader = GamepadReader(fd=read_fd).start()
    keys = PadScript(reader, write_fd, {0: init_burst(), 1: axes({0: FULL})}, unplug_at=5)
    session = TeleopSession(env, keys, TeleopCommander(env.contract, "joint", speed=1.0), EpisodeRecorder(store), say=lambda m: None)
    try:
        episode = session.run_episode(seed=0)
        holds = env.safety.counters["holds"]
        env.clock.sleep_until(env.clock.now() + 1.0)
        at_rest = env.driver.at_rest
    finally:
        env.close()
        reader.close()
        os.close(read_fd)
    assert keys.seen[1:5] == [["joint1+"]] * 4 and keys.seen[5] == []
    assert episode.ended_by == "device" and episode.quit and not episode.kept and episode.steps == 5
    assert "end of input" in reader.fault
    assert store.num_transitions() == 0
    assert sent[-1][0] > 0  # the last step's command was still moving: the session's hold() stopped the arm
    assert holds >= 1 and at_rest


def test_the_teleop_command_reads_the_configured_gamepad(tmp_path):
    from hydra import compose, initialize_config_dir

    from robolearn.paths import CONFIG_DIR
    from hardware.teleop.command import run

    fifo = tmp_path / "js0"
    os.mkfifo(fifo)
    base = ["env.hardware.loop.clock=virtual", "env.episode_seconds=1", "episodes=2", "resets@env.hardware.resets=unattended",
            "device=gamepad", f"gamepad.path={fifo}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="teleop", overrides=[*base, f"demos_path={tmp_path / 'a.npz'}"])
        stiff = compose(config_name="teleop", overrides=[*base, f"demos_path={tmp_path / 'b.npz'}", "gamepad.dead_zone=0.9"])
        bad = compose(config_name="teleop", overrides=[*base, "gamepad.dead_zone=1.5"])
        missing = compose(config_name="teleop", overrides=[*base, f"gamepad.path={tmp_path / 'js9'}"])
    spec = EnvSpec.from_config(cfg.env)
    writer = os.open(fifo, os.O_RDWR)
    try:
        # The left stick held half way to the right (joint 1 up) for the whole session.
        os.write(writer, init_burst() + axes({0: FULL // 2}))
        result = run(cfg, say=lambda m: None)
        os.write(writer, init_burst() + axes({0: FULL // 2}))
        quiet = run(stiff, say=lambda m: None)
    finally:
        os.close(writer)
    assert result["kept"] == 2 and result["steps"] == [10, 10] and result["ended_by"] == ["env", "env"]
    assert result["input_fault"] is None
    store = ReplayStorage.load(tmp_path / "a.npz", spec.observation_space(), spec.action_space().shape)
    actions = store.action[: store.num_transitions(), :7]
    assert actions[:, 0].max() > 0.1 and not actions[:, 1:].any()
    assert quiet["steps"] == [10, 10]  # half way is inside a 0.9 dead zone: the arm never moved
    # ... and nobody drove it: no episode is saved (all-zero commands are not a demonstration).
    assert quiet["kept"] == 0 and quiet["undriven"] == 2 and not (tmp_path / "b.npz").exists()

    from robolearn.config import ConfigError

    with pytest.raises(ConfigError, match="gamepad.dead_zone"):
        run(bad, say=lambda m: None)
    with pytest.raises(GamepadUnavailable, match="js9 does not exist"):
        run(missing, say=lambda m: None)
    # No writer any more: the device reads as gone at the first poll; the session stops, nothing recorded.
    gone = run(cfg, say=lambda m: None)
    assert gone["ended_by"] == ["device"] and gone["kept"] == 0 and "end of input" in gone["input_fault"]
