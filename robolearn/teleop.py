"""Teleoperate the arm from the keyboard or a gamepad and record demos (implementation: hardware/teleop/).

    python -m robolearn.teleop                                  # the fake arm
    python -m robolearn.teleop mode=ee robot@env.hardware.driver=franka env.robot=fr3 env.hardware.driver.host=172.16.0.2
    python -m robolearn.teleop device=gamepad                   # the first /dev/input/js*, or gamepad.path=...

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

import hydra
from omegaconf import DictConfig, OmegaConf

from robolearn.config import ConfigError
from robolearn.paths import CONFIG_DIR

DEVICES = ("keyboard", "gamepad")


def run(cfg: DictConfig, keys=None, say=print) -> dict:
    from hardware.resets import HumanResetPrompt, ResetRoutine
    from hardware.teleop import GamepadReader, KeyboardReader, TeleopCommander, TeleopSession
    from hardware.teleop.gamepad import require_gamepad
    from robolearn.envs import make_env
    from robolearn.replay.recording import EpisodeRecorder

    if cfg.device not in DEVICES:
        raise ConfigError(f"invalid value for device: {cfg.device!r} (one of {list(DEVICES)})")
    gamepad_path = None
    if cfg.device == "gamepad":
        gamepad = cfg.get("gamepad") or {}
        dead_zone = gamepad.get("dead_zone", 0.25)
        if not isinstance(dead_zone, (int, float)) or not 0 < dead_zone < 1:
            raise ConfigError(f"invalid value for gamepad.dead_zone: {dead_zone!r} (a share of full stick travel, in (0, 1))")
        gamepad_path = require_gamepad(gamepad.get("path"))
    if int(cfg.episodes) < 1:
        raise ConfigError(f"invalid value for episodes: {cfg.episodes!r} (must be at least 1)")
    env = make_env(OmegaConf.to_container(cfg.env, resolve=True))
    own_keys = keys is None
    try:
        commander = TeleopCommander(env.contract, cfg.mode, speed=cfg.speed, ee_speed=cfg.ee_speed, hold_s=cfg.hold_s)
        if own_keys:
            if gamepad_path is not None:
                keys = GamepadReader(gamepad_path, mode=cfg.mode, dead_zone=float(dead_zone)).start()
            else:
                keys = KeyboardReader().start()
        recorder = None
        if cfg.record:
            room = int(cfg.episodes) * (env.cfg.max_episode_steps + 1)
            recorder = EpisodeRecorder.open(cfg.demos_path, env.observation_space, env.action_space.shape, room)
        plan = env.hw.resets
        resets = ResetRoutine(env, plan, HumanResetPrompt(keys, env.clock, plan.human_timeout_s, say=say))
        session = TeleopSession(env, keys, commander, recorder, say=say)
        if gamepad_path is not None:
            say(f"teleop ({cfg.mode} mode) on {env.hw.driver.kind.value} from gamepad {gamepad_path}: sticks move, "
                "B stops, A/X close/open, RT/LT speed, START keeps the episode, BACK discards, GUIDE quits")
        else:
            say(f"teleop ({cfg.mode} mode) on {env.hw.driver.kind.value}: hold keys to move, space stops, n keeps the episode, x discards, esc quits")
        episodes, previous = [], None
        for i in range(int(cfg.episodes)):
            answer = resets.between_episodes(previous)
            if answer in ("quit", "timeout"):
                break
            episode = session.run_episode(seed=int(cfg.seed) + i, max_steps=cfg.max_steps)
            episodes.append(episode)
            previous = episode.success
            if episode.quit or episode.ended_by == "safety":
                break
        saved = recorder.save() if recorder is not None and recorder.kept else None
    finally:
        if own_keys and keys is not None:
            keys.close()
        env.close()
    return {
        "episodes": len(episodes),
        "kept": sum(e.kept for e in episodes),
        "steps": [e.steps for e in episodes],
        "ended_by": [e.ended_by for e in episodes],
        "safety_events": sum(len(e.safety_events) for e in episodes),
        "demos": str(saved) if saved else None,
        "demo_transitions": recorder.store.num_transitions() if recorder is not None else 0,
        "input_fault": getattr(keys, "fault", None),
    }


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="teleop")
def main(cfg: DictConfig) -> None:
    print(json.dumps(run(cfg)))


if __name__ == "__main__":
    main()
