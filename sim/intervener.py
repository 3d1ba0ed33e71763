"""The scripted intervener: the scripted expert standing in for a person who watches the sim and takes over when
an episode goes wrong (robolearn/interventions.py; `intervention.by=scripted`)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from robolearn.interventions import InterventionConfig
from sim.expert import KettleSinkExpert, Phase


def kettle_tilt_deg(privileged: np.ndarray) -> float:
    """The angle between the kettle's up axis and the world's (privileged state: kettle_quat is w, x, y, z)."""
    _, x, y, _ = (float(v) for v in privileged[3:7])
    return math.degrees(math.acos(max(-1.0, min(1.0, 1.0 - 2.0 * (x * x + y * y)))))


class ScriptedIntervener:
    """The scripted expert (sim.expert.KettleSinkExpert) standing in for a person watching the sim: it reads the
    simulator's state (a person's eyes), never the learner."""

    def __init__(self, env, cfg: InterventionConfig, expert=None):
        self.env, self.cfg = env.unwrapped, cfg
        self.expert = expert if expert is not None else KettleSinkExpert(env)
        self.steps_seen = 0  # this actor's env steps, over every episode (cfg.fade_steps)
        self._fade_rng = np.random.default_rng(0)
        self.reset()

    def reset(self) -> None:
        self.intervening = False
        self.taken_this_episode = 0
        self.steps_in_control = 0
        self.best_reward = -math.inf
        self.since_progress = 0
        self.reason = ""  # why the last takeover happened: stall | tilt
        self.declined_for = 0  # steps before a trigger counts again, after one was let go (cfg.fade_steps)

    def observe(self, reward: float, info: dict) -> None:
        self.steps_seen += 1
        if reward > self.best_reward + self.cfg.progress:
            self.best_reward, self.since_progress = float(reward), 0
        else:
            self.since_progress += 1

    def act(self, obs: dict[str, np.ndarray]) -> Optional[np.ndarray]:
        cfg = self.cfg
        if self.intervening and (self.steps_in_control >= cfg.max_steps or self._script_done()):
            self.intervening = False  # hand back; the policy gets stall_steps again before the next takeover
            self.best_reward, self.since_progress = -math.inf, 0
        if not self.intervening and self.taken_this_episode < cfg.max_per_episode:
            reason = "" if self.declined_for > 0 else self._gone_wrong(obs)
            self.declined_for = max(0, self.declined_for - 1)
            if reason and not self._still_willing():
                # Lets it go this time (cfg.fade_steps): the policy gets stall_steps before the next trigger.
                self.declined_for, reason = cfg.stall_steps, ""
                self.best_reward, self.since_progress = -math.inf, 0
            if reason:
                self.intervening, self.reason = True, reason
                self.taken_this_episode += 1
                self.steps_in_control = 0
                self.expert.take_over(obs)
        if not self.intervening:
            return None
        self.steps_in_control += 1
        return self.expert.act(obs)

    def _gone_wrong(self, obs) -> str:
        if self.since_progress >= self.cfg.stall_steps:
            return "stall"
        privileged = obs["privileged"] if "privileged" in obs else self.env.privileged_state()
        if kettle_tilt_deg(privileged) >= self.cfg.tilt_deg:
            return "tilt"
        return ""

    def _still_willing(self) -> bool:
        """Whether a trigger now is acted on (cfg.fade_steps)."""
        if not self.cfg.fade_steps:
            return True
        return bool(self._fade_rng.uniform() < 1.0 - self.steps_seen / self.cfg.fade_steps)

    def _script_done(self) -> bool:
        return self.expert.phase in (Phase.RETREAT, Phase.DONE)
