"""A 3Dconnexion SpaceMouse for interventions and teleop, read through pyspacemouse (a maintained package: HID
reports, device table, axis conventions; `pip install 'robolearn[spacemouse]'`, and the system's hidapi).

`SpaceMouseReader` has the interface of `KeyboardReader` (`start()`, `poll()`, `close()`) and turns the device's
state into the end-effector key names `TeleopCommander` understands, as the gamepad does: the hand moves along
the base frame's axes while the cap is pushed beyond `dead_zone` of its travel (the commander's `hold_s` keeps
an axis moving between polls; letting go stops it within `hold_s`), and the orientation is held. Read in the
Z-up convention (`HID_Z_UP`: +x right, +y away from the user, +z up), with the user facing the robot from its
front (the base frame's +x pointing at the user):

| input | key | meaning |
| --- | --- | --- |
| push away / pull toward you | s / w | -x / +x of the base frame |
| push right / left | a / d | +y / -y |
| lift / press down | r / f | +z / -z |
| left button | i | take over from / hand back to the policy |
| right button | c / o | close / open the gripper (each press toggles) |

A device that stops answering (unplugged) sets `fault`; from then on `poll()` returns no keys, so the arm stops
within `hold_s` and an intervention hands back to the policy (hardware/teleop/session.py).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# (state attribute, key when positive, key when negative), in the Z-up convention
AXES = (("y", "s", "w"), ("x", "a", "d"), ("z", "r", "f"))


class SpaceMouseUnavailable(RuntimeError):
    """No pyspacemouse, no hidapi, or no SpaceMouse connected."""


class SpaceMouseReader:
    """Key names from a SpaceMouse (`device`: an open pyspacemouse device, for tests; default: the first found)."""

    def __init__(self, device: Any = None, *, dead_zone: float = 0.2, reads_per_poll: int = 8):
        if not 0.0 < dead_zone < 1.0:
            raise ValueError(f"spacemouse dead_zone must be in (0, 1) of full travel, got {dead_zone!r}")
        self.device, self.dead_zone, self.reads_per_poll = device, float(dead_zone), int(reads_per_poll)
        self.fault: str | None = None
        self._buttons: list[int] = []
        self._gripper_closed = False

    def start(self) -> SpaceMouseReader:
        if self.device is None:
            try:
                import pyspacemouse
                from pyspacemouse.types import AxisConvention
            except ImportError as exc:
                raise SpaceMouseUnavailable(f"intervention.by=spacemouse needs pyspacemouse: pip install 'robolearn[spacemouse]' ({exc})") from None
            try:
                self.device = pyspacemouse.open(nonblocking=True, axis_convention=AxisConvention.HID_Z_UP)
            except Exception as exc:  # noqa: BLE001 - no hidapi, no device, no permission: each its own type
                raise SpaceMouseUnavailable(f"no SpaceMouse could be opened ({type(exc).__name__}: {exc}); check it is plugged "
                                            "in, that hidapi is installed and that this user may read /dev/hidraw*") from None
        self._buttons = list(self._read().buttons) if self.fault is None else []  # held at start: not a press
        return self

    def _read(self):
        state = None
        for _ in range(self.reads_per_poll):  # drain the reports that arrived since the last poll
            try:
                state = self.device.read()
            except Exception as exc:  # noqa: BLE001 - an unplugged device raises whatever its HID layer raises
                self.fault = f"spacemouse: {type(exc).__name__}: {exc}"
                log.error("%s; no more commands from it", self.fault)
                return None
        if not getattr(self.device, "connected", True):
            self.fault = "spacemouse: the device is no longer connected"
            log.error("%s; no more commands from it", self.fault)
            return None
        return state

    def poll(self) -> list[str]:
        """Button presses (once each), then one key per axis pushed beyond the dead zone. After a fault, always []."""
        if self.fault is not None:
            return []
        state = self._read()
        if state is None:
            return []
        keys: list[str] = []
        buttons = list(state.buttons)
        pressed = [i for i, b in enumerate(buttons) if b and not (i < len(self._buttons) and self._buttons[i])]
        self._buttons = buttons
        for button in pressed:
            if button == 0:
                keys.append("i")
            elif button == 1:
                self._gripper_closed = not self._gripper_closed
                keys.append("c" if self._gripper_closed else "o")
        for attribute, positive, negative in AXES:
            value = float(getattr(state, attribute))
            if abs(value) > self.dead_zone:
                keys.append(positive if value > 0 else negative)
        return keys

    def close(self) -> None:
        if self.device is not None:
            try:
                self.device.close()
            except Exception:  # noqa: BLE001 - closing a device already gone
                pass
