"""The absolute-deadline loop: exact on a virtual clock, sub-millisecond lateness on the wall clock."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hardware.timing import DeadlineLoop, MonotonicClock, VirtualClock


def test_deadlines_are_absolute_and_a_miss_reanchors_without_a_burst():
    clock = VirtualClock(10.0)
    loop = DeadlineLoop(clock, 0.1)
    loop.restart()
    ticks = [loop.wait() for _ in range(3)]
    assert [t.deadline for t in ticks] == pytest.approx([10.1, 10.2, 10.3])
    assert all(t.lateness == 0 and not t.missed for t in ticks)
    clock.advance(0.05)  # work inside the period: still on schedule
    assert loop.wait().deadline == pytest.approx(10.4)
    clock.advance(0.25)  # an overrun past the next deadline
    late = loop.wait()
    assert late.missed and late.lateness == pytest.approx(0.15) and loop.misses == 1
    after = loop.wait()  # re-anchored: one full period later, not immediately
    assert not after.missed and after.period == pytest.approx(0.1)
    assert after.deadline == pytest.approx(late.woke + 0.1)


def test_wall_clock_lateness_stays_well_under_a_millisecond():
    loop = DeadlineLoop(MonotonicClock(spin_s=0.001), 0.02)
    loop.restart()
    ticks = [loop.wait() for _ in range(25)]
    on_time = [t.lateness for t in ticks if not t.missed]
    # A shared 2-core CI machine can deschedule us for a whole period now and then: allow one miss.
    assert loop.misses <= 1
    assert np.median(on_time) < 0.0005  # sleep, then spin the last millisecond
    assert min(on_time) >= 0.0  # never early


def test_monotonic_clock_never_returns_early():
    clock = MonotonicClock(spin_s=0.0005)
    for _ in range(20):
        target = time.monotonic() + 0.003
        clock.sleep_until(target)
        assert time.monotonic() >= target
