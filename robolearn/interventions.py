"""Interventions during online training: someone else takes the arm over from the policy, then hands it back.

On an arm a person does it (`intervention.by=keyboard`, `gamepad` or `spacemouse`: `i`, the gamepad's Y or the
SpaceMouse's left button toggles the takeover, the teleop keys or the device drive the arm, hardware/teleop); in
sim a scripted intervener stands in for the person so the effect can be measured (`by=scripted`): the scripted
expert takes over when the episode goes wrong, as a person watching
would — no progress for `stall_steps`, or the kettle tilting past `tilt_deg` — for up to `max_steps` steps, at
most `max_per_episode` times an episode (sim/intervener.py).

Every command an intervener gives is an action in the policy's space, sent through the same `env.step` (the
action check, the scaling and, on an arm, the safety layer). The actor (robolearn/roles/actor.py) stores an
intervention step in the online replay with the policy version INTERVENTION_VERSION and the executed action,
and each stretch of control (a segment, ended truncated where the intervener handed back) in the demo buffer
too, as HIL-SERL does: `InterventionSegments`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

from robolearn.config import check
from robolearn.replay.codec import INTERVENTION_VERSION
from robolearn.replay.recording import executed_action

INTERVENERS = ("none", "scripted", "keyboard", "gamepad", "spacemouse")
DEMO_STREAM_SUFFIX = ".interventions"  # an actor's second stream, its intervention segments as demos: <name>.interventions


@dataclass
class InterventionConfig:
    by: str = "none"  # none | scripted (sim: the scripted expert) | keyboard | gamepad | spacemouse (a person at the arm actor)
    to_demos: bool = True  # also store each intervention segment in the demo buffer (as HIL-SERL does)
    # The scripted intervener (sim) takes over when the episode goes wrong:
    stall_steps: int = 40  # ... no progress (the reward rose by less than progress) for this many steps
    progress: float = 0.01  # reward units: 1 cm of kettle-to-sink distance
    tilt_deg: float = 25.0  # ... or the kettle tilted this far from upright (about to tip)
    max_steps: int = 60  # it hands back after this many steps (or when its script is done)
    max_per_episode: int = 2
    # The stand-in takes over less as the run goes on, as a person does once the policy improves: a trigger is
    # acted on with a chance falling linearly from 1 to 0 over this many of its actor's env steps (0: always).
    fade_steps: int = 0
    # The policy's stretch ends where someone had to take over (terminated, this penalty added to its last
    # step's reward, as RLIF takes an intervention for a failure): otherwise the critic bootstraps through the
    # takeover and credits the policy's stall with the intervener's success. 0: no cut, no penalty.
    takeover_penalty: float = 100.0  # reward units (task.fall_penalty's size: a takeover is as bad as a fall)
    # The human interveners' teleop (hardware/teleop): joint or end-effector keys, their speed.
    teleop_mode: str = "ee"
    teleop_speed: float = 0.3

    def __post_init__(self) -> None:
        check(self.by in INTERVENERS, "intervention.by", self.by, f"one of {INTERVENERS}")
        for key in ("stall_steps", "max_steps"):
            check(getattr(self, key) >= 1, f"intervention.{key}", getattr(self, key), "must be positive")
        check(self.max_per_episode >= 0, "intervention.max_per_episode", self.max_per_episode, "must be >= 0")
        check(self.fade_steps >= 0, "intervention.fade_steps", self.fade_steps, "env steps, >= 0 (0: no fading)")
        check(self.takeover_penalty >= 0, "intervention.takeover_penalty", self.takeover_penalty, "must be >= 0 (0: no cut)")
        check(self.progress >= 0, "intervention.progress", self.progress, "must be >= 0")
        check(0 < self.tilt_deg <= 180, "intervention.tilt_deg", self.tilt_deg, "degrees, in (0, 180]")
        check(self.teleop_mode in ("joint", "ee"), "intervention.teleop_mode", self.teleop_mode, "joint or ee")
        check(not (self.by == "spacemouse" and self.teleop_mode != "ee"), "intervention.teleop_mode", self.teleop_mode,
              "a SpaceMouse moves the hand: ee")

    @property
    def enabled(self) -> bool:
        return self.by != "none"


class Intervener(Protocol):
    """Who may take the arm over. `act` is called before every step with the observation the policy acts on;
    it returns the intervener's action while it has control, else None. `observe` sees every step taken."""

    def reset(self) -> None: ...

    def act(self, obs: dict[str, np.ndarray]) -> Optional[np.ndarray]: ...

    def observe(self, reward: float, info: dict) -> None: ...


# Named, not imported (the core imports neither sim nor hardware), as env.factory names the env's factory.
SCRIPTED_INTERVENER = "sim.intervener.ScriptedIntervener"
HUMAN_INTERVENER = "hardware.teleop.session.HumanIntervener.for_env"


def make_intervener(cfg: InterventionConfig, env, say=print) -> Optional[Intervener]:
    """The intervener `cfg.by` names, for this env (None: nobody intervenes)."""
    from hydra.utils import get_method

    if cfg.by == "none":
        return None
    if cfg.by == "scripted":
        if not hasattr(env.unwrapped, "privileged_state") or getattr(env.unwrapped, "safety", None) is not None:
            raise ValueError("intervention.by=scripted needs the sim (it reads the simulator's state); on an arm a person "
                             "intervenes: intervention.by=keyboard, gamepad or spacemouse")
        return get_method(SCRIPTED_INTERVENER)(env, cfg)
    return get_method(HUMAN_INTERVENER)(env, cfg, say=say)


class InterventionSegments:
    """Each stretch of an intervener's control as an episode of its own, sent to `sink` (an ActorClient on a demo
    stream: `start_episode(obs)`, `add(...)`) when it ends: handed back (its last step marked truncated, so the
    learner bootstraps there), or the episode ended."""

    def __init__(self, sink):
        self.sink = sink
        self._first_obs: Optional[dict] = None
        self._steps: list[tuple] = []
        self.segments = 0
        self.steps = 0

    def step(self, intervened: bool, obs, action, reward: float, terminated: bool, truncated: bool, next_obs) -> None:
        if not intervened:
            self.end()
            return
        if self._first_obs is None:
            self._first_obs = obs
        self._steps.append((np.asarray(action, np.float32), float(reward), bool(terminated), bool(truncated), next_obs))
        if terminated or truncated:
            self.end()

    def end(self) -> None:
        """Close the open segment (handed back, or the episode stopped) and send it."""
        if self._first_obs is None:
            return
        steps, first = self._steps, self._first_obs
        self._steps, self._first_obs = [], None
        action, reward, terminated, truncated, next_obs = steps[-1]
        steps[-1] = (action, reward, terminated, truncated or not terminated, next_obs)
        self.sink.start_episode(first)
        for action, reward, terminated, truncated, next_obs in steps:
            self.sink.add(action, reward, terminated, truncated, next_obs, INTERVENTION_VERSION)
        self.segments += 1
        self.steps += len(steps)


class TakeoverCut:
    """The online stream with the policy's stretch cut where an intervener takes over: each policy step is held
    back one step (until it is known whether the next step is a takeover); at a takeover it is sent terminated
    with `penalty` added to its reward, and the intervention starts an episode of its own in the stream from
    the observation it took over at (so nothing bootstraps from the intervener's steps into the policy's).
    `sink`: an ActorClient (`add`, `start_episode`). With penalty 0 every step goes straight through."""

    def __init__(self, sink, penalty: float):
        self.sink, self.penalty = sink, float(penalty)
        self._held: Optional[tuple] = None  # (action, reward, terminated, truncated, next_obs, version) of a policy step
        self.cuts = 0

    def step(self, intervened: bool, obs, action, reward: float, terminated: bool, truncated: bool, next_obs, version: int) -> None:
        if self.penalty <= 0:
            self.sink.add(action, reward, terminated, truncated, next_obs, version)
            return
        if self._held is not None:
            held, self._held = self._held, None
            if intervened:  # the policy's last step before a takeover
                action_h, reward_h, _, _, next_obs_h, version_h = held
                self.sink.add(action_h, reward_h - self.penalty, True, False, next_obs_h, version_h)
                self.sink.start_episode(obs)
                self.cuts += 1
            else:
                self.sink.add(*held)
        current = (action, float(reward), bool(terminated), bool(truncated), next_obs, version)
        if intervened or terminated or truncated:
            self.sink.add(*current)
        else:
            self._held = current

    def flush(self) -> None:
        """Send a held step as it was (the episode stopped without an end: a stop, a lost link)."""
        if self._held is not None:
            held, self._held = self._held, None
            self.sink.add(*held)


def stored_action(intervened: bool, action: np.ndarray, info: dict) -> np.ndarray:
    """The action stored for a step: an intervention's as executed (after the safety layer, in the policy's
    space), a policy's as it chose it."""
    return executed_action(info, action) if intervened else action
