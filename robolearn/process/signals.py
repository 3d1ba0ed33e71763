"""Signals of a run: the training workspace's stop requests, and the async roles' start and exit."""

from __future__ import annotations

import logging
import signal
import sys
import threading

log = logging.getLogger(__name__)


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


class StopRequests:
    """SIGTERM (a scheduler, `timeout`) and the first Ctrl-C ask the run to stop at the next episode end
    and save; a second Ctrl-C raises KeyboardInterrupt as usual. Handlers are installed only in the main
    thread and restored on exit."""

    def __init__(self):
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        log.warning("%s: finishing this episode, then saving (Ctrl-C again stops without saving)", self.requested)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
