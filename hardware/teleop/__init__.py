"""Teleoperation: keyboard or gamepad (Linux joystick API) input, key -> joint or end-effector
velocity commands, teleop demo episodes and human interventions, all through the env and its safety layer."""

from hardware.teleop.commands import TeleopCommander
from hardware.teleop.gamepad import GamepadLayout, GamepadReader, GamepadUnavailable, gamepad_status, require_gamepad
from hardware.teleop.keyboard import InputUnavailable, KeyboardReader, ScriptedKeys, decode_keys, terminal_problem
from hardware.teleop.session import InterventionPolicy, InterventionRecorder, TeleopEpisode, TeleopSession

__all__ = [
    "GamepadLayout", "GamepadReader", "GamepadUnavailable", "InputUnavailable", "InterventionPolicy", "InterventionRecorder",
    "KeyboardReader", "ScriptedKeys", "TeleopCommander", "TeleopEpisode", "TeleopSession", "decode_keys",
    "gamepad_status", "require_gamepad", "terminal_problem",
]
