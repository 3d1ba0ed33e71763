"""`python -m hardware.teleop`: teleoperate the arm from the keyboard or a gamepad and record demos.

    python -m hardware.teleop                                  # the fake arm
    python -m hardware.teleop mode=ee robot@env.hardware.driver=franka env.robot=fr3 env.hardware.driver.host=172.16.0.2
    python -m hardware.teleop device=gamepad                   # the first /dev/input/js*, or gamepad.path=...

Keys - joint mode: q/a w/s e/d r/f t/g y/h u/j move joints 1-7; ee mode: w/s a/d r/f move the hand along
x/y/z of the base frame. Both: space stop, o/c open/close the gripper, +/- speed, n end the episode and
keep it, x end it and throw it away, esc quit. Gamepad (device=gamepad, Linux joystick API): sticks, d-pad
and buttons produce the same commands (layout in hardware/teleop/gamepad.py); a gamepad that disappears
ends the session. Every command goes through the env and its safety layer; the recorded actions are the
executed, safety-filtered ones, in the policy's action space, appended to `demos_path` (a replay file
training loads with demos.path=...).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from hardware.config import load_command_config
from hardware.resets import HumanResetPrompt, ResetFailed, ResetRoutine
from hardware.teleop.commands import MODES, TeleopCommander
from hardware.env import EStopLatched
from hardware.teleop.gamepad import GamepadReader, GamepadUnavailable, require_gamepad
from hardware.teleop import keyboard
from hardware.teleop.keyboard import InputUnavailable, KeyboardReader, terminal_problem
from hardware.teleop.session import TeleopSession
from robolearn.config import check, register_schema
from robolearn.display import DisplayConfig, open_view
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR
from robolearn.process import exits
from robolearn.replay.recording import EpisodeRecorder

DEVICES = ("keyboard", "gamepad")


@dataclass
class GamepadSettings:
    path: str | None = None  # null: the first readable /dev/input/js*; or a device path, e.g. /dev/input/js1
    dead_zone: float = 0.25  # share of full stick travel around the centre that does not move the arm

    def __post_init__(self) -> None:
        check(0 < self.dead_zone < 1, "gamepad.dead_zone", self.dead_zone, "a share of full stick travel, in (0, 1)")


@dataclass
class TeleopConfig:
    env: Any = None  # the real-robot env config, validated when the env is built
    device: str = "keyboard"  # keyboard | gamepad (Linux joystick API; layout in hardware/teleop/gamepad.py)
    gamepad: GamepadSettings = field(default_factory=GamepadSettings)
    mode: str = "joint"  # joint: q/a w/s e/d r/f t/g y/h u/j move joints 1-7. ee: w/s a/d r/f move x/y/z
    speed: float = 0.3  # share of the action limit per key
    ee_speed: float = 0.05  # m/s in ee mode
    hold_s: float = 0.6  # a key drives its axis this long after its last repeat
    episodes: int = 5
    seed: int = 0
    max_steps: int | None = None  # null: the env's episode length
    record: bool = True
    demos_path: str = "demos/teleop.npz"  # appended to when it exists
    display: DisplayConfig = field(default_factory=DisplayConfig)  # a live view (docs/watching.md)

    def __post_init__(self) -> None:
        check(self.device in DEVICES, "device", self.device, f"one of {list(DEVICES)}")
        check(self.mode in MODES, "mode", self.mode, f"one of {list(MODES)}")
        check(self.episodes >= 1, "episodes", self.episodes, "must be at least 1")


register_schema("teleop_schema", TeleopConfig)


def run(cfg: TeleopConfig | DictConfig, keys=None, say=print, stdin_fd: int | None = None) -> dict:
    """Teleop episodes; the result's `outcome` is done | fault | stopped (exit_code() maps it). Refuses
    (InputUnavailable, GamepadUnavailable) before anything connects when no person can drive the arm:
    keyboard teleop needs a foreground terminal on `stdin_fd` (default: stdin)."""
    cfg = load_command_config(TeleopConfig, cfg, "teleop")
    gamepad_path = require_gamepad(cfg.gamepad.path) if cfg.device == "gamepad" else None
    if keys is None and cfg.device == "keyboard":
        fd = keyboard.stdin_fd() if stdin_fd is None else stdin_fd
        problem = terminal_problem(fd)
        if problem:
            raise InputUnavailable(f"keyboard teleop needs a person at a terminal: {problem}")
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True) if isinstance(cfg.env, DictConfig) else cfg.env
    env = make_env(env_cfg)
    own_keys = keys is None
    view = None
    try:
        view = open_view(cfg.display, "teleop")
        commander = TeleopCommander(env.contract, cfg.mode, speed=cfg.speed, ee_speed=cfg.ee_speed, hold_s=cfg.hold_s)
        if own_keys:
            if gamepad_path is not None:
                keys = GamepadReader(gamepad_path, mode=cfg.mode, dead_zone=cfg.gamepad.dead_zone).start()
            else:
                keys = KeyboardReader(stdin_fd).start(require_terminal=True)
        recorder = None
        if cfg.record:
            room = cfg.episodes * (env.cfg.max_episode_steps + 1)
            recorder = EpisodeRecorder.open(cfg.demos_path, env.observation_space, env.action_space.shape, room)
        plan = env.hw.resets
        resets = ResetRoutine(env, plan, HumanResetPrompt(keys, env.clock, plan.human_timeout_s, say=say))
        session = TeleopSession(env, keys, commander, recorder, say=say, view=view)
        if gamepad_path is not None:
            say(f"teleop ({cfg.mode} mode) on {env.hw.driver.kind.value} from gamepad {gamepad_path}: sticks move, "
                "B stops, A/X close/open, RT/LT speed, START keeps the episode, BACK discards, GUIDE quits")
        else:
            say(f"teleop ({cfg.mode} mode) on {env.hw.driver.kind.value}: hold keys to move, space stops, n keeps the episode, x discards, esc quits")
        episodes, previous, stopped, latched = [], None, "", ""
        for i in range(cfg.episodes):
            try:
                answer = resets.between_episodes(previous)
                if answer in ("quit", "timeout"):
                    stopped = "" if answer == "quit" else "scene reset prompt: nobody answered"
                    break
                episode = session.run_episode(seed=cfg.seed + i, max_steps=cfg.max_steps)
            except EStopLatched as exc:  # a scripted reset or the homing met a latched fault
                latched = str(exc)
                break
            except ResetFailed as exc:
                stopped = f"reset: {exc}"
                break
            episodes.append(episode)
            previous = episode.success
            if episode.quit or episode.ended_by == "safety":
                break
        saved = recorder.save() if recorder is not None and recorder.kept else None
    finally:
        display = view.close() if view is not None else None
        if own_keys and keys is not None:
            keys.close()
        env.close()
    faults = [e for e in episodes if e.ended_by == "safety"]
    input_fault = getattr(keys, "fault", None)
    if faults or latched:
        fatal = [ev for ev in faults[-1].safety_events if ev.get("fatal")] if faults else []
        outcome = "fault"
        stopped = "safety e-stop latched: " + (latched or (f"{fatal[0]['layer']}: {fatal[0]['message']}" if fatal else "see the safety events"))
    elif input_fault or any(e.ended_by == "device" for e in episodes):
        outcome, stopped = "stopped", f"input device lost: {input_fault}"
    else:
        outcome = "stopped" if stopped else "done"
    return {
        "outcome": outcome,
        "stopped": stopped,
        "episodes": len(episodes),
        "kept": sum(e.kept for e in episodes),
        "steps": [e.steps for e in episodes],
        "ended_by": [e.ended_by for e in episodes],
        "safety_events": sum(len(e.safety_events) for e in episodes),
        "demos": str(saved) if saved else None,
        "demo_transitions": recorder.store.num_transitions() if recorder is not None else 0,
        "undriven": sum(e.human_commands == 0 for e in episodes),
        "input_fault": input_fault,
        **({"display": display} if display is not None else {}),
    }


def exit_code(result: dict) -> int:
    """0 done (the operator quitting with esc included), 3 a latched safety fault, 4 stopped early (input
    device lost, reset prompt unanswered); refusals exit 2 (robolearn/process/exits.py)."""
    return {"done": exits.OK, "fault": exits.FAULT, "stopped": exits.STOPPED}.get(result["outcome"], exits.FAILED)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="teleop")
@exits.reported("teleop", known=(InputUnavailable, GamepadUnavailable, EStopLatched))
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    print(json.dumps(result))
    code = exit_code(result)
    if code != exits.OK:
        print(f"teleop: {result['outcome']}: {result['stopped']}", file=sys.stderr)
        sys.exit(code)
