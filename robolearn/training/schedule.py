"""When a run evaluates and saves: by env steps, and by wall-clock so that a CPU run shows its first
evaluation and checkpoint within minutes (the step schedule's first ones are an hour away there)."""

from __future__ import annotations

import math
from typing import Callable, Optional


def minutes(value: Optional[float]) -> float:
    """A wall-clock setting in seconds; null (or 0) means never."""
    return 60 * float(value or math.inf)


class WallClockSchedule:
    """Evaluations and checkpoints by wall-clock as well as by steps: a first eval and checkpoint within
    minutes of the start."""

    def __init__(self, now: Callable[[], float], first_eval_min: Optional[float], eval_every_min: Optional[float],
                 save_every_min: Optional[float]):
        self.now = now
        started = now()
        self.eval_every = minutes(eval_every_min)
        self.save_every = minutes(save_every_min)
        self.next_eval = started + minutes(first_eval_min)
        self.next_save = started + min(self.save_every, self.next_eval - started)

    @classmethod
    def of(cls, now, cfg) -> "WallClockSchedule":
        """The schedule of a TrainConfig (or anything with its eval.first_min/every_min and save_every_min)."""
        return cls(now, cfg.eval.first_min, cfg.eval.every_min, cfg.save_every_min)

    def eval_due(self) -> bool:
        return self.now() >= self.next_eval

    def save_due(self) -> bool:
        return self.now() >= self.next_save

    def evaluated(self) -> None:
        self.next_eval = self.now() + self.eval_every

    def saved(self) -> None:
        self.next_save = self.now() + self.save_every
