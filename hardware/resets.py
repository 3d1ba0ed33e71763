"""Resets on hardware: scripted safe motions between episodes, and a timed prompt for a human to reset
the scene (put the kettle back) when needed.

Scripted motions go through `RealRobotEnv.move_joints`, i.e. through the safety layer, waypoint by
waypoint; every waypoint is checked against the soft joint limits and the workspace box at start-up.
The human prompt never blocks on `input()`: the arm is held (the safety layer's `hold`), the prompt polls
a key source at a few Hz until the operator answers or its timeout passes, and says which happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from robolearn.config import ConfigError

HUMAN_WHEN = ("never", "after_success", "every_episode")


@dataclass
class ResetPlan:
    # Joint configurations (rad) visited, in order, before the env homes: e.g. lift clear of the sink.
    waypoints: list[list[float]] = field(default_factory=list)
    # When to ask a human to reset the scene: never | after_success (the kettle is in the sink) | every_episode.
    human: str = "after_success"
    human_timeout_s: float = 120.0
    # What a prompt that times out does: stop the run (True) or carry on with the scene as it is.
    stop_on_timeout: bool = True


class HumanResetPrompt:
    """Asks the operator to reset the scene; answered with a key: enter/y = done, s = skip, esc = quit."""

    def __init__(self, keys, clock, timeout_s: float, say: Callable[[str], None] = print, poll_s: float = 0.1):
        if not timeout_s > 0:
            raise ConfigError(f"invalid value for resets.human_timeout_s: {timeout_s!r} (must be positive)")
        self.keys, self.clock, self.timeout_s, self.say, self.poll_s = keys, clock, timeout_s, say, poll_s

    def ask(self, reason: str) -> str:
        """'done' | 'skip' | 'quit' | 'timeout'. The caller holds the arm while this runs."""
        self.keys.poll()  # keys pressed before the question are not answers
        self.say(f"RESET THE SCENE ({reason}): press Enter or y when done, s to skip, Esc to stop "
                 f"(waiting up to {self.timeout_s:.0f} s; the arm is held)")
        deadline = self.clock.now() + self.timeout_s
        last_reminder = self.clock.now()
        while True:
            for key in self.keys.poll():
                if key in ("enter", "y"):
                    return "done"
                if key == "s":
                    return "skip"
                if key == "esc":
                    return "quit"
            now = self.clock.now()
            if now >= deadline:
                self.say(f"no answer within {self.timeout_s:.0f} s")
                return "timeout"
            if now - last_reminder >= 15.0:
                self.say(f"... still waiting for the scene reset ({deadline - now:.0f} s left)")
                last_reminder = now
            self.clock.sleep_until(min(deadline, now + self.poll_s))


class ResetRoutine:
    """Between episodes: scripted waypoints through the safety layer, then (when needed) the human prompt.
    The env's own `reset()` then homes, also through the safety layer."""

    def __init__(self, env, plan: ResetPlan, prompt: HumanResetPrompt | None):
        if plan.human not in HUMAN_WHEN:
            raise ConfigError(f"invalid value for resets.human: {plan.human!r} (one of {list(HUMAN_WHEN)})")
        if plan.human != "never" and prompt is None:
            raise ConfigError(f"invalid value for resets.human: {plan.human!r} (needs a keyboard for the prompt; set resets.human=never for unattended runs)")
        self.env, self.plan, self.prompt = env, plan, prompt
        self.waypoints = [self._checked(i, w) for i, w in enumerate(plan.waypoints)]

    def _checked(self, i: int, waypoint) -> np.ndarray:
        env = self.env
        q = np.asarray(waypoint, dtype=np.float64)
        key = f"resets.waypoints[{i}]"
        if q.shape != env.home.shape or not np.all(np.isfinite(q)):
            raise ConfigError(f"invalid value for {key}: {list(waypoint)!r} (needs {env.home.shape[0]} finite joint angles)")
        limits = env.safety.limits
        for j in range(limits.n):
            if not limits.soft_q_min[j] <= q[j] <= limits.soft_q_max[j]:
                raise ConfigError(f"invalid value for {key}: joint {j + 1} at {q[j]:.3f} rad is outside its soft limits [{limits.soft_q_min[j]:.3f}, {limits.soft_q_max[j]:.3f}]")
        tcp = env.robot.tcp_position(q)
        if not limits.inside_workspace(tcp, 0.0):
            raise ConfigError(f"invalid value for {key}: its TCP {np.round(tcp, 3).tolist()} m is outside the workspace box")
        return q

    def between_episodes(self, previous_success: bool | None) -> str:
        """Run the scripted motions and the prompt if needed: 'ok' | 'skip' | 'quit' | 'timeout'."""
        for q in self.waypoints:
            self.env.move_joints(q)
        human = self.plan.human
        needed = human == "every_episode" or (human == "after_success" and bool(previous_success))
        if not needed:
            return "ok"
        self.env.safety.hold()
        reason = "the kettle is in the sink" if previous_success else "before the next episode"
        answer = self.prompt.ask(reason)
        return "ok" if answer == "done" else answer
