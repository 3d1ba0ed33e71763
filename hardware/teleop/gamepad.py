"""Gamepad teleop: available only where an optional gamepad library is already installed.

No gamepad library is a dependency of this project. `gamepad_status()` says whether one is importable
and a device is present; `robolearn.teleop device=gamepad` refuses with that reason otherwise.
"""

from __future__ import annotations

import glob
import importlib.util


class GamepadUnavailable(RuntimeError):
    """No usable gamepad: the message says what is missing."""


def gamepad_status() -> tuple[bool, str]:
    """(available, reason)."""
    if importlib.util.find_spec("pygame") is None:
        return False, "no gamepad library installed (pygame is optional and absent); use the keyboard"
    devices = glob.glob("/dev/input/js*")
    if not devices:
        return False, "pygame is installed but no joystick device (/dev/input/js*) is present"
    return False, f"gamepad {devices[0]} found, but gamepad teleop is not implemented yet; use the keyboard"


def require_gamepad() -> None:
    available, reason = gamepad_status()
    if not available:
        raise GamepadUnavailable(f"teleop device=gamepad: {reason}")
