"""Clocks and the absolute-deadline scheduler of the policy loop.

A Python loop cannot hold 1 kHz here (sleep overshoots by up to several ms), so the fast loops stay in the
vendor libraries and the policy loop runs on absolute deadlines: sleep until shortly before the deadline,
then spin. Deadlines are absolute (t0 + k * period), so lateness does not accumulate; a missed deadline
is counted and the schedule re-anchors instead of bursting commands to catch up.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic time base."""

    def sleep_until(self, t: float) -> None:
        """Return at (not before) time `t`."""


class MonotonicClock:
    """Wall-clock time: `time.monotonic`, sleep then spin the last `spin_s` before a deadline."""

    def __init__(self, spin_s: float = 0.001):
        self.spin_s = spin_s
        self.now = time.monotonic  # bound once: the hot paths call it often

    def sleep_until(self, t: float) -> None:
        now = time.monotonic
        remaining = t - now()
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        while now() < t:
            pass


class VirtualClock:
    """Time that advances only when someone waits: fake hardware runs deterministically and instantly."""

    def __init__(self, start: float = 0.0):
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def sleep_until(self, t: float) -> None:
        if t > self._t:
            self._t = float(t)

    def advance(self, dt: float) -> None:
        self._t += float(dt)


@dataclass(frozen=True)
class Tick:
    deadline: float  # when this step was due
    woke: float  # when the wait returned
    lateness: float  # woke - deadline (s)
    missed: bool  # the caller arrived after the deadline: no wait was possible
    period: float  # woke - previous woke (s); the nominal period on the first tick


class DeadlineLoop:
    """Waits for successive absolute deadlines `period` apart."""

    def __init__(self, clock: Clock, period: float):
        if period <= 0:
            raise ValueError(f"period must be positive, got {period}")
        self.clock = clock
        self.period = period
        self.misses = 0
        self._next: float | None = None
        self._last_woke: float | None = None

    def restart(self) -> None:
        """Anchor the schedule at now: the first deadline is one period away."""
        now = self.clock.now()
        self._next = now + self.period
        self._last_woke = now

    def wait(self) -> Tick:
        if self._next is None:
            self.restart()
        deadline = self._next
        now = self.clock.now()
        missed = now > deadline
        if missed:
            self.misses += 1
            woke = now
            self._next = now + self.period  # re-anchor: no burst of catch-up steps
        else:
            self.clock.sleep_until(deadline)
            woke = self.clock.now()
            self._next = deadline + self.period
        period = woke - self._last_woke if self._last_woke is not None else self.period
        self._last_woke = woke
        return Tick(deadline=deadline, woke=woke, lateness=woke - deadline, missed=missed, period=period)


def set_realtime_priority(priority: int, thread_id: int = 0) -> None:
    """Run a thread (native id; 0 = the calling one) under SCHED_FIFO at `priority`, or back under
    normal scheduling with 0. Raises PermissionError where the process may not (no root, CAP_SYS_NICE
    or rtprio limit)."""
    if priority > 0:
        os.sched_setscheduler(thread_id, os.SCHED_FIFO, os.sched_param(priority))
    else:
        os.sched_setscheduler(thread_id, os.SCHED_OTHER, os.sched_param(0))
