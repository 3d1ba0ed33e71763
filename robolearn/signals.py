"""Signals of the run's roles (replay server, learner, actors)."""

from __future__ import annotations

import signal
import sys


def exit_cleanly_on_early_stop() -> None:
    """Until the role installs its own handlers: a SIGTERM while it imports or starts (a whole run stopped
    as it starts) ends it with exit code 0. Nothing is produced yet, and the replay store is crash-safe."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def ignore_late_stop_signals() -> None:
    """The role's work is done and saved: a SIGTERM now (the run stopping its roles one by one, after a
    group SIGTERM reached them all) must not turn a clean exit into -15. Python resets its own handlers to
    the default while it shuts down, but leaves an ignored signal ignored."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
