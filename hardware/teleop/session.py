"""Teleop episodes recorded as demos, and human interventions during a policy's episode.

Both drive the real-robot env through `env.step`, so every teleop command passes the same action
check, scaling and safety layer as a policy's. Both record `info["executed_action"]`: what the arm was
actually told after the safety layer, in the policy's action space.

Control keys (besides the motion keys of `TeleopCommander`): n = end the episode and keep it,
x = end it and throw it away, esc = quit after this episode (kept), m = the task is done as of now (a success label
from this frame on, for the success classifier: robolearn/success_classifier.py). An episode in which the person gave
no motion or gripper command is never kept, whatever ended it: nobody drove it. During a policy episode, i toggles
the human's takeover. An input device that reports a `fault` (a gamepad that disappeared) ends the
teleop episode at once, discarded, and the session (`quit`): nobody is steering any more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hardware.teleop.commands import TeleopCommander
from robolearn.replay.recording import EpisodeRecorder, executed_action
from robolearn.rollout import Step, run_episode


@dataclass
class TeleopEpisode:
    steps: int = 0
    kept: bool = False
    success: bool = False
    episode_return: float = 0.0
    ended_by: str = ""  # env | operator | discard | quit | safety | device
    human_commands: int = 0  # motion and gripper keys the person gave; none: the episode is not saved
    safety_events: list[dict] = field(default_factory=list)
    quit: bool = False
    success_marked_at: int | None = None  # the frame the person marked the task done from (key m)


class TeleopSession:
    """Runs teleop episodes on an env (`RealRobotEnv`), recording kept ones into `recorder`."""

    def __init__(self, env, keys, commander: TeleopCommander, recorder: EpisodeRecorder | None = None,
                 say: Callable[[str], None] = print, view=None):
        self.env, self.keys, self.commander, self.recorder, self.say = env, keys, commander, recorder, say
        self.view = view  # a live view (robolearn/display.py) or None

    def run_episode(self, seed: int | None = None, max_steps: int | None = None) -> TeleopEpisode:
        env, commander, recorder = self.env, self.commander, self.recorder
        out = TeleopEpisode()
        keep = True
        now = 0.0  # when the keys were last polled: the commander's action is computed for that time
        commands_before = commander.commands

        def start(obs, info) -> None:
            out.safety_events.extend(info["safety"]["events"])
            commander.stop()
            if recorder is not None:
                recorder.begin(obs)

        def poll_keys() -> str | None:
            nonlocal keep, now
            now = env.clock.now()
            for key in self.keys.poll():
                if commander.press(key, now):
                    continue
                if key == "n":
                    out.ended_by = "operator"
                elif key == "x":
                    out.ended_by, keep = "discard", False
                elif key == "esc":
                    out.ended_by, out.quit = "quit", True
                elif key == "m" and recorder is not None:
                    out.success_marked_at = recorder.mark_success()
                    self.say(f"success marked from frame {out.success_marked_at} on")
            fault = getattr(self.keys, "fault", None)
            if fault and not out.ended_by:
                out.ended_by, out.quit, keep = "device", True, False
                self.say(f"input device lost, stopping: {fault}")
            return out.ended_by or None

        def record(step: Step) -> None:
            out.steps += 1
            out.safety_events.extend(step.info["safety"]["events"])
            if recorder is not None:
                recorder.add(executed_action(step.info, step.action), step.reward, step.terminated, step.truncated,
                             step.next_obs)

        episode = run_episode(
            env, lambda obs: commander.action(now, obs["joint_pos"]), seed=seed, on_start=start, before_step=poll_keys,
            record=record, on_step=lambda step: "max_steps" if max_steps is not None and out.steps >= max_steps else None,
            on_end=lambda episode: env.safety.hold(), view=self.view)
        out.episode_return = episode.episode_return
        last_info = episode.info or episode.reset_info  # no step taken: the reset's
        if not out.ended_by:  # the env ended it, or max_steps
            out.ended_by = "safety" if last_info["safety"]["estop"] else "env"
        out.success = bool(last_info.get("success", False))
        out.human_commands = commander.commands - commands_before
        undriven = keep and out.human_commands == 0
        if undriven:
            keep = False  # nobody drove it: its actions are the commander's zeros, not a demonstration
        if recorder is not None:
            written = recorder.end(keep=keep)
            out.kept = written > 0
        why = ("not recorded: no human command in the episode (nobody drove the arm)" if undriven
               else "kept" if out.kept else "not recorded")
        self.say(f"episode ended ({out.ended_by}) after {out.steps} steps, success={out.success}, {why}")
        return out


class HumanIntervener:
    """A person who can take the arm over from a policy: `i` toggles the takeover, motion keys then drive the
    arm, esc asks to quit (`quit`). The intervener of robolearn/interventions.py: `act` returns the teleop
    action while the person has control, else None. An input device that reports a `fault` (a gamepad that
    disappeared) hands control back to the policy at once and says so: nobody is steering any more."""

    def __init__(self, keys, commander: TeleopCommander, clock, say: Callable[[str], None] = print):
        self.keys, self.commander, self.clock, self.say = keys, commander, clock, say
        self.intervening = False
        self.quit = False
        self.device_fault: str | None = None

    @classmethod
    def for_env(cls, env, cfg, say: Callable[[str], None] = print) -> HumanIntervener:
        """The keyboard of this process's terminal, the first gamepad or the first SpaceMouse (`cfg.by`), for `env`'s contract."""
        from hardware.teleop.gamepad import GamepadReader, require_gamepad
        from hardware.teleop.keyboard import KeyboardReader

        unwrapped = env.unwrapped
        commander = TeleopCommander(unwrapped.contract, cfg.teleop_mode, speed=cfg.teleop_speed)
        if cfg.by == "gamepad":
            keys = GamepadReader(require_gamepad(), mode=cfg.teleop_mode).start()
        elif cfg.by == "spacemouse":
            from hardware.teleop.spacemouse import SpaceMouseReader

            keys = SpaceMouseReader().start()
        else:
            keys = KeyboardReader().start(require_terminal=True)
        clock = getattr(unwrapped, "clock", None) or _MonotonicClock()
        say(f"interventions: press i ({cfg.by}) to take the arm over and again to hand it back")
        return cls(keys, commander, clock, say)

    def reset(self) -> None:
        self.intervening = False
        self.commander.stop()

    def observe(self, reward: float, info: dict) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        now = self.clock.now()
        for key in self.keys.poll():
            if key == "i":
                self.intervening = not self.intervening
                self.commander.stop()
                self.say("human has control" if self.intervening else "policy has control")
            elif key == "esc":
                self.quit = True
            elif self.intervening:
                self.commander.press(key, now)
        fault = getattr(self.keys, "fault", None)
        if fault and self.intervening:
            self.intervening = False
            self.commander.stop()
            self.device_fault = str(fault)
            self.say(f"input device lost, the policy has control again: {fault}")
        return self.commander.action(now, obs["joint_pos"]) if self.intervening else None


class _MonotonicClock:
    def now(self) -> float:
        import time

        return time.monotonic()


class InterventionPolicy:
    """A policy a human can take over (HumanIntervener): the wrapped policy still sees every observation (its
    frame stack stays current) and its action is computed every step; while the human has control the teleop
    action replaces it. `intervening` says who produced the last action."""

    def __init__(self, policy, keys, commander: TeleopCommander, clock, say: Callable[[str], None] = print):
        self.policy = policy
        self.human = HumanIntervener(keys, commander, clock, say)

    @property
    def intervening(self) -> bool:
        return self.human.intervening

    @property
    def quit(self) -> bool:
        return self.human.quit

    def reset(self) -> None:
        self.policy.reset()
        self.human.reset()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        taken = self.human.act(obs)
        action = self.policy.act(obs)
        return action if taken is None else taken


class InterventionRecorder:
    """Stores each stretch of human control as an episode of its own (see robolearn.replay.recording)."""

    def __init__(self, recorder: EpisodeRecorder):
        self.recorder = recorder
        self.segments = 0
        self.steps = 0

    def step(self, intervening: bool, obs_before, action, info, reward, terminated, truncated, obs_after) -> None:
        rec = self.recorder
        if intervening:
            if not rec.recording:
                rec.begin(obs_before)
            rec.add(executed_action(info, action), reward, terminated, truncated, obs_after)
            self.steps += 1
            if terminated or truncated:
                self._close()
        elif rec.recording:
            self._close()  # handed back to the policy: the segment ends truncated (bootstrapped)

    def end_episode(self) -> None:
        if self.recorder.recording:
            self._close()

    def _close(self) -> None:
        if self.recorder.end(keep=True) > 0:
            self.segments += 1
