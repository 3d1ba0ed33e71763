"""Gamepad teleop on the Linux joystick API (`/dev/input/js*`, the joydev driver): no library needed.

The device delivers 8-byte events, `struct js_event { u32 time_ms; s16 value; u8 type; u8 number; }`
(native byte order): type 0x01 a button (value 1 pressed, 0 released), 0x02 an axis (-32767..32767), with
0x80 OR'd in on the burst of initial states the driver sends when the device is opened.

`GamepadReader` has the interface of `KeyboardReader` (`start()`, `poll()`, `close()`) and turns the
pad's state into the key names `TeleopCommander.press` and the session understand, so a gamepad drives
the arm through exactly the same commander, env and safety layer as the keyboard:

- a stick (or d-pad) pushed beyond `dead_zone` of full travel produces its motion key on *every* poll
  while it is held, like a terminal's key repeat: the commander's `hold_s` keeps the axis moving and
  letting go stops it within `hold_s`;
- a button produces its key(s) once per press.

Default layout (`XBOX`: the xpad driver's numbering, Xbox-style pads; check another pad with
`jstest /dev/input/js0` and give the reader a `GamepadLayout` of its own):

| mode | input | key | meaning |
| --- | --- | --- | --- |
| joint | left stick right/left, up/down | joint1+/-, joint2+/- | joints 1 and 2 |
| joint | right stick right/left, up/down | joint3+/-, joint4+/- | joints 3 and 4 |
| joint | d-pad right/left, up/down | joint5+/-, joint6+/- | joints 5 and 6 |
| joint | RB / LB (held) | joint7+ / joint7- | joint 7 |
| ee | left stick up/down, left/right | up/down, left/right | +x/-x, +y/-y of the base frame |
| ee | right stick up/down | r / f | +z / -z |
| both | A / X | c / o | close / open the gripper |
| both | B | space | stop every axis |
| both | RT / LT (past half travel) | + / - | speed up / down |
| both | Y | i | take over from / hand back to the policy (interventions) |
| both | START | enter, n | answer the reset prompt (done) / end the episode and keep it |
| both | BACK | x | end the episode and throw it away |
| both | GUIDE | esc | quit after this episode |

Joint motions use the names `jointN+`/`jointN-` (no terminal sends them) rather than the keyboard's
letters, so a stick touched during the reset prompt can never read as its `y` (done) or `s` (skip).

Inputs already deflected or held in the initial-state burst are ignored until they have been released
once: a stick that drifts, or a button held while the pad is connected, does not start the arm.

Reading never blocks (the descriptor is non-blocking and is drained on the control loop's thread, once per
`poll()`). A device that disappears (unplugged: ENODEV; the writer of a pipe gone: end of input) sets
`fault`, logs an error, and from then on `poll()` returns no keys, so the arm stops within `hold_s`;
`TeleopSession` ends the episode on a fault, and `gamepad_status()` reports the fault.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import stat
import struct
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

EVENT = struct.Struct("=IhBB")  # time_ms, value, type, number
JS_EVENT_BUTTON, JS_EVENT_AXIS, JS_EVENT_INIT = 0x01, 0x02, 0x80
AXIS_MAX = 32767
DEVICE_GLOB = "/dev/input/js*"
MODES = ("joint", "ee")
# JSIOCGNAME(128): _IOC(_IOC_READ, 'j', 0x13, 128)
_JSIOCGNAME = (2 << 30) | (128 << 16) | (ord("j") << 8) | 0x13


class GamepadUnavailable(RuntimeError):
    """No usable gamepad: the message says what is missing."""


@dataclass(frozen=True)
class GamepadLayout:
    """Which axis or button of the pad means what. Axis values are raw (negative = up / left).

    axes: per mode, axis number -> (key while pushed positive, key while pushed negative), repeated per poll.
    held_buttons: per mode, button number -> key, repeated per poll while held.
    buttons: button number -> keys, once per press (both modes).
    trigger_buttons: axis number -> keys, once each time the axis passes half travel (analogue triggers,
      which rest at -32767).
    """

    name: str
    axes: dict[str, dict[int, tuple[str, str]]]
    held_buttons: dict[str, dict[int, str]] = field(default_factory=dict)
    buttons: dict[int, tuple[str, ...]] = field(default_factory=dict)
    trigger_buttons: dict[int, tuple[str, ...]] = field(default_factory=dict)


XBOX = GamepadLayout(
    name="xbox (xpad)",
    axes={
        "joint": {
            0: ("joint1+", "joint1-"),  # left stick x (right is positive)
            1: ("joint2-", "joint2+"),  # left stick y (up is negative)
            3: ("joint3+", "joint3-"),  # right stick x
            4: ("joint4-", "joint4+"),  # right stick y
            6: ("joint5+", "joint5-"),  # d-pad x
            7: ("joint6-", "joint6+"),  # d-pad y
        },
        "ee": {
            1: ("down", "up"),  # left stick y: up = +x
            0: ("right", "left"),  # left stick x: left = +y
            4: ("f", "r"),  # right stick y: up = +z
        },
    },
    held_buttons={"joint": {5: "joint7+", 4: "joint7-"}},  # RB / LB
    buttons={0: ("c",), 2: ("o",), 1: ("space",), 3: ("i",), 7: ("enter", "n"), 6: ("x",), 8: ("esc",), 9: ("m",)},  # 9: left stick pressed
    trigger_buttons={5: ("+",), 2: ("-",)},  # RT / LT
)

# The last fault of a reader per device path in this process, for gamepad_status().
_faults: dict[str, str] = {}


def find_gamepads(pattern: str = DEVICE_GLOB) -> list[str]:
    return sorted(glob.glob(pattern))


def _device_name(fd: int) -> str | None:
    try:
        import fcntl

        buf = bytearray(128)
        fcntl.ioctl(fd, _JSIOCGNAME, buf)
    except OSError:
        return None  # not a joystick device (a pipe in tests)
    name = bytes(buf).split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return name or None


def _probe(path: str) -> tuple[bool, str]:
    """Can `path` be opened for reading right now? (ok, description or reason)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False, f"{path} does not exist"
    except OSError as e:
        return False, f"{path} cannot be examined: {e.strerror}"
    if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):  # a FIFO stands in for a device in tests and dry runs
        return False, f"{path} is not a character device (a joystick is /dev/input/jsN)"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        hint = " (add the user to the 'input' group)" if e.errno in (errno.EACCES, errno.EPERM) else ""
        return False, f"{path} cannot be opened for reading: {e.strerror}{hint}"
    try:
        name = _device_name(fd)
    finally:
        os.close(fd)
    return True, f"gamepad {path}" + (f" ({name})" if name else "")


def _locate(path: str | None, pattern: str) -> tuple[str | None, str]:
    """(the device to read or None, its description or the reason there is none)."""
    if path is not None:
        candidates = [str(path)]
    else:
        candidates = find_gamepads(pattern)
        if not candidates:
            reason = (f"no joystick device ({pattern}) is present: is the gamepad plugged in and the joydev "
                      f"kernel module loaded? Use the keyboard (device=keyboard) otherwise")
            if _faults:
                lost, fault = next(reversed(_faults.items()))
                reason += f"; the last gamepad in use, {lost}, failed: {fault}"
            return None, reason
    reasons = []
    for candidate in candidates:
        ok, text = _probe(candidate)
        if ok:
            return candidate, text
        if candidate in _faults:
            text += f" (it failed while in use: {_faults[candidate]})"
        reasons.append(text)
    return None, "; ".join(reasons)


def gamepad_status(path: str | None = None, pattern: str = DEVICE_GLOB) -> tuple[bool, str]:
    """(available, reason): available when `path` (or, without one, any of `pattern`) can be opened for
    reading now. A fault an earlier reader hit on that device in this process is part of the reason."""
    found, reason = _locate(path, pattern)
    return found is not None, reason


def require_gamepad(path: str | None = None, pattern: str = DEVICE_GLOB) -> str:
    """The device path to read (the first of `pattern` that opens), or GamepadUnavailable with the reason."""
    found, reason = _locate(path, pattern)
    if found is None:
        raise GamepadUnavailable(f"teleop device=gamepad: {reason}")
    return found


class GamepadReader:
    """Key names from a Linux joystick device (`path`) or an already open descriptor (`fd`, e.g. a pipe)."""

    def __init__(self, path: str | None = None, *, fd: int | None = None, mode: str = "joint",
                 dead_zone: float = 0.25, layout: GamepadLayout = XBOX):
        if (path is None) == (fd is None):
            raise ValueError("GamepadReader needs exactly one of path or fd")
        if mode not in MODES:
            raise ValueError(f"gamepad mode must be one of {MODES}, got {mode!r}")
        if not 0.0 < dead_zone < 1.0:
            raise ValueError(f"gamepad dead_zone must be in (0, 1) of full stick travel, got {dead_zone!r}")
        self.path = str(path) if path is not None else f"fd {fd}"
        self.mode, self.dead_zone, self.layout = mode, float(dead_zone), layout
        self.fd = fd
        self._own_fd = fd is None
        self.fault: str | None = None
        self.name: str | None = None
        self.events = 0  # events read, init burst included
        self._buffer = b""
        self._axes: dict[int, float] = {}  # axis -> value in [-1, 1]
        self._axis_armed: dict[int, bool] = {}  # False while a deflection from the init burst persists
        self._buttons: dict[int, bool] = {}
        self._button_armed: dict[int, bool] = {}
        self._triggers: dict[int, bool] = {}  # trigger axes past half travel
        self._trigger_armed: dict[int, bool] = {}
        self._pending: list[str] = []  # button presses since the last poll
        self._closed = False

    # -- interface of KeyboardReader ----------------------------------------------------------------------------
    def start(self) -> GamepadReader:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError as e:
                raise GamepadUnavailable(f"teleop device=gamepad: {self.path} cannot be opened: {e.strerror}") from e
        else:
            os.set_blocking(self.fd, False)
        self.name = _device_name(self.fd)
        self._drain()  # the initial-state burst, when the device already sent it
        return self

    def poll(self) -> list[str]:
        """Keys since the last poll: button presses (once each, oldest first), then one key per input held
        beyond the dead zone. Never blocks; after a fault, always []."""
        if self.fd is None:
            if self._closed:
                return []
            raise RuntimeError("GamepadReader.poll() before start()")
        self._drain()
        if self.fault is not None:
            return []
        keys, self._pending = self._pending, []
        for axis, (positive, negative) in sorted(self.layout.axes.get(self.mode, {}).items()):
            value = self._axes.get(axis, 0.0)
            if self._axis_armed.get(axis, True) and abs(value) > self.dead_zone:
                keys.append(positive if value > 0 else negative)
        for button, key in sorted(self.layout.held_buttons.get(self.mode, {}).items()):
            if self._buttons.get(button, False) and self._button_armed.get(button, True):
                keys.append(key)
        return keys

    def close(self) -> None:
        if self.fd is not None and self._own_fd:
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.fd = None
        self._closed = True

    def __enter__(self) -> GamepadReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- events -----------------------------------------------------------------------------------------------
    def _drain(self) -> None:
        while self.fault is None:
            try:
                data = self._read(EVENT.size * 64)
            except BlockingIOError:
                return
            except OSError as e:
                gone = e.errno in (errno.ENODEV, errno.ENXIO, errno.EIO)
                self._fail(f"{'device disappeared (unplugged?)' if gone else 'read failed'}: [Errno {e.errno}] {e.strerror}")
                return
            if not data:
                self._fail("device closed (end of input)")
                return
            self._buffer += data
            whole = len(self._buffer) // EVENT.size * EVENT.size
            for offset in range(0, whole, EVENT.size):
                self._event(*EVENT.unpack_from(self._buffer, offset))
            self._buffer = self._buffer[whole:]

    def _read(self, n: int) -> bytes:
        return os.read(self.fd, n)

    def _event(self, time_ms: int, value: int, kind: int, number: int) -> None:
        self.events += 1
        init = bool(kind & JS_EVENT_INIT)
        kind &= ~JS_EVENT_INIT
        if kind == JS_EVENT_AXIS:
            x = max(-1.0, min(1.0, value / AXIS_MAX))
            self._axes[number] = x
            if init:
                self._axis_armed[number] = abs(x) <= self.dead_zone
            elif abs(x) <= self.dead_zone:
                self._axis_armed[number] = True
            if number in self.layout.trigger_buttons:
                # Pressed past half travel, released below a quarter; a trigger the burst reports anywhere
                # but released (some drivers say 0, half travel, for one never touched) waits for a release.
                was = self._triggers.get(number, False)
                now = x > 0.0 if not was else x > -0.5
                self._triggers[number] = now
                if init or x <= -0.5:
                    self._trigger_armed[number] = x <= -0.5
                if now and not was and not init and self._trigger_armed.get(number, True):
                    self._pending.extend(self.layout.trigger_buttons[number])
        elif kind == JS_EVENT_BUTTON:
            pressed = value != 0
            was = self._buttons.get(number, False)
            self._buttons[number] = pressed
            if init:
                self._button_armed[number] = not pressed
            elif not pressed:
                self._button_armed[number] = True
            elif not was and number in self.layout.buttons:
                self._pending.extend(self.layout.buttons[number])

    def _fail(self, reason: str) -> None:
        self.fault = f"gamepad {self.path}: {reason}"
        _faults.pop(self.path, None)
        _faults[self.path] = f"{reason} (at {time.strftime('%H:%M:%S')})"
        self._axes.clear()
        self._buttons.clear()
        self._triggers.clear()
        self._pending.clear()
        log.error("%s; no more gamepad input: the arm stops within hold_s", self.fault)


def encode_events(values: dict[int, int], kind: int = JS_EVENT_AXIS, init: bool = False, time_ms: int = 0) -> bytes:
    """Bytes of js_events setting each {number: value} (tests, dry runs)."""
    flag = JS_EVENT_INIT if init else 0
    return b"".join(EVENT.pack(time_ms, v, kind | flag, n) for n, v in values.items())
