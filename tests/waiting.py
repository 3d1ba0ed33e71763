"""Waiting in tests for something another thread or process does: one place, two forms.

`eventually` answers whether the condition came true in time (the test asserts it, with its own message);
`wait_for` is for set-up steps that must happen before a test can go on, and fails naming what did not.
Both poll; the timeouts are upper bounds for a loaded CI machine, never a measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(predicate: Callable[[], object], timeout_s: float, poll_s: float = 0.005) -> bool:
    """True as soon as `predicate()` is; otherwise its value at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())


def wait_for(predicate: Callable[[], object], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Return once `predicate()` holds; raise AssertionError naming `what` after `timeout_s`."""
    if not eventually(predicate, timeout_s, poll_s=0.01):
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
