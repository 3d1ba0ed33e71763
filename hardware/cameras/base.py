"""The camera interface: one capture thread per camera keeps the latest frame, and a monitor reports
what goes wrong with the stream.

Detected and reported (as events, counters and `health()`):
- frame gap: device frame numbers skip -> dropped frames counted (not fatal);
- frozen stream: the same frame number (or, for sources without numbers, the same image) repeats
  `frozen_after` times -> fault;
- read timeout: no new frame for `timeout_s` -> fault (checked by the thread and by every reader, so a
  capture call that blocks forever is still caught);
- mid-stream disconnect: the device read fails -> fault, then reconnect attempts with back-off;
- stale frame: the latest frame is older than `max_age_s` when read (`is_stale`; the env reports it).
Faults latch: `on_fault` is called once, and `clear_fault()` succeeds only once frames flow again.
"""

from __future__ import annotations

import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hardware.config import CameraDeviceConfig
from hardware.timing import Clock


class CameraError(RuntimeError):
    """A camera could not be opened or read; the message names the camera and the device."""


class CameraDisconnected(CameraError):
    """The device went away (unplugged, stream ended, network source closed)."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # HxWx3 uint8, RGB
    frame_number: int  # the device's own counter where it has one
    device_time: float  # s, the device's clock
    host_time: float  # host monotonic time the frame was received
    depth: np.ndarray | None = None  # HxW uint16 depth units, aligned to the colour image


@dataclass(frozen=True)
class CameraEvent:
    time: float
    camera: str
    kind: str  # frame_gap | frozen | timeout | disconnected | reconnected | restarted | fault_cleared
    message: str
    fatal: bool


@dataclass(frozen=True)
class CameraHealth:
    connected: bool
    frames: int  # new frames received
    dropped: int  # frames missing from the device's numbering
    gaps: int  # times numbering skipped
    repeats: int  # frames that repeated the previous one
    timeouts: int
    reconnects: int
    fault: str | None  # latched fault message, or None
    last_frame_number: int
    last_frame_age: float  # s since the latest new frame (inf before the first)


class Camera(ABC):
    kind: ClassVar[str]
    # Sources without trustworthy frame numbers (live OpenCV devices) detect freezes by image content.
    frozen_by_content: bool = False

    def __init__(self, name: str, cfg: CameraDeviceConfig, clock: Clock, *, on_fault: Callable[[str, str, str], None] | None = None, threaded: bool = True):
        self.name = name
        self.cfg = cfg
        self.clock = clock
        self.on_fault = on_fault
        self.threaded = threaded
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._last_number = -1
        self._last_digest: int | None = None
        self._repeats_in_a_row = 0
        self._last_new_time: float | None = None
        self._started_at = 0.0
        self._connected = False
        self._fault: str | None = None
        self._fault_kind: str | None = None
        self._fault_time: float | None = None
        self._counts = dict(frames=0, dropped=0, gaps=0, repeats=0, timeouts=0, reconnects=0)
        self._events: list[CameraEvent] = []
        self._running = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_reconnect = 0.0

    # -- device hooks ------------------------------------------------------------------------------
    @abstractmethod
    def _open(self) -> None:
        """Open the device; raise CameraError with a message naming it if that fails."""

    @abstractmethod
    def _grab(self, timeout_s: float) -> Frame | None:
        """The next frame, or None if none arrived within `timeout_s`; CameraDisconnected if gone."""

    @abstractmethod
    def _close(self) -> None: ...

    @property
    def intrinsics(self) -> dict | None:
        """Pinhole intrinsics of the colour stream where the device reports them."""
        return None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._open()  # errors here are start-up errors: nothing has moved yet
        self._connected = True
        self._started_at = self.clock.now()
        self._stopping.clear()
        self._running.set()
        if self.threaded:
            self._thread = threading.Thread(target=self._capture_loop, name=f"camera:{self.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._running.clear()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._connected:
            self._connected = False
            try:
                self._close()
            except Exception:  # noqa: BLE001 - stopping anyway
                pass

    # -- reading -----------------------------------------------------------------------------------
    def read_latest(self) -> Frame:
        """The most recent frame (never blocks on the device). Raises CameraError before the first."""
        if not self.threaded and self._running.is_set():
            self._capture_once(0.0)
        self.check()
        frame = self._latest
        if frame is None:
            raise CameraError(f"camera {self.name}: no frame received yet ({self.health().fault or 'starting'})")
        return frame

    def wait_first_frame(self, timeout_s: float) -> Frame:
        """Block (on the clock) until the first frame arrives; CameraError after `timeout_s`."""
        deadline = self.clock.now() + timeout_s
        while True:
            if not self.threaded:
                self._capture_once(0.0)
            if self._latest is not None:
                return self._latest
            if self.clock.now() >= deadline:
                raise CameraError(f"camera {self.name} ({self.kind}): no frame within {timeout_s:.1f} s of starting")
            self.clock.sleep_until(min(deadline, self.clock.now() + 0.005))

    def is_stale(self, frame: Frame, now: float | None = None) -> bool:
        now = self.clock.now() if now is None else now
        return now - frame.host_time > self.cfg.max_age_s

    def check(self) -> None:
        """Latch a timeout if no new frame arrived for `timeout_s` (runs on the reader's thread too)."""
        now = self.clock.now()
        since = self._last_new_time if self._last_new_time is not None else self._started_at
        if self._running.is_set() and self._fault is None and now - since > self.cfg.timeout_s:
            with self._lock:
                self._counts["timeouts"] += 1
            self._set_fault("timeout", f"no new frame for {now - since:.2f} s (limit {self.cfg.timeout_s:.2f} s)", now)

    def health(self) -> CameraHealth:
        now = self.clock.now()
        with self._lock:
            c = dict(self._counts)
            age = now - self._last_new_time if self._last_new_time is not None else float("inf")
            return CameraHealth(
                connected=self._connected,
                frames=c["frames"],
                dropped=c["dropped"],
                gaps=c["gaps"],
                repeats=c["repeats"],
                timeouts=c["timeouts"],
                reconnects=c["reconnects"],
                fault=self._fault,
                last_frame_number=self._last_number,
                last_frame_age=age,
            )

    def drain_events(self) -> list[CameraEvent]:
        with self._lock:
            out, self._events = self._events, []
            return out

    # -- faults ------------------------------------------------------------------------------------
    def unhealthy_reason(self) -> str | None:
        """Why the stream is not usable right now (None once connected and delivering fresh frames)."""
        now = self.clock.now()
        if not self._connected:
            return f"camera {self.name} is disconnected"
        if self._last_new_time is None or now - self._last_new_time > self.cfg.timeout_s:
            return f"camera {self.name} delivers no new frames"
        if self._repeats_in_a_row >= self.cfg.frozen_after:
            return f"camera {self.name} is frozen at frame {self._last_number}"
        if self._fault_time is not None and self._last_new_time <= self._fault_time:
            return f"camera {self.name} has not delivered a new frame since its fault"
        return None

    def clear_fault(self) -> None:
        """Explicitly clear a latched fault; refused (CameraError) while the stream is still bad."""
        if self._fault is None:
            return
        reason = self.unhealthy_reason()
        if reason:
            raise CameraError(f"cannot clear the fault of camera {self.name}: {reason}")
        now = self.clock.now()
        with self._lock:
            message = self._fault
            self._fault = None
            self._fault_kind = None
            self._fault_time = None
            self._events.append(CameraEvent(now, self.name, "fault_cleared", f"cleared: {message}", False))

    def _set_fault(self, kind: str, message: str, now: float) -> None:
        full = f"camera {self.name} ({self.kind}): {message}"
        with self._lock:
            self._events.append(CameraEvent(now, self.name, kind, full, True))
            if self._fault is not None:
                return
            self._fault = full
            self._fault_kind = kind
            self._fault_time = now
        if self.on_fault is not None:
            self.on_fault(self.name, kind, full)

    # -- capture -----------------------------------------------------------------------------------
    def _capture_loop(self) -> None:
        poll = min(0.05, self.cfg.timeout_s / 4)
        while self._running.is_set():
            self._capture_once(poll)

    def _capture_once(self, timeout_s: float) -> None:
        now = self.clock.now()
        if not self._connected:
            self._try_reconnect(now)
            return
        try:
            frame = self._grab(timeout_s)
        except CameraError as exc:
            self._on_disconnect(str(exc), now)
            return
        except Exception as exc:  # noqa: BLE001 - vendor libraries raise RuntimeError and friends
            self._on_disconnect(f"{type(exc).__name__}: {exc}", now)
            return
        if frame is None:
            self.check()
        else:
            self._ingest(frame)

    def _ingest(self, frame: Frame) -> None:
        """Frame-number bookkeeping: gaps, repeats (frozen), restarts; keep the frame if it is new."""
        now = frame.host_time
        events: list[tuple[str, str, bool]] = []
        with self._lock:
            number, last = frame.frame_number, self._last_number
            repeat = number == last
            if self.frozen_by_content and not repeat:
                digest = zlib.crc32(np.ascontiguousarray(frame.image[::8, ::8]).data)
                repeat = digest == self._last_digest
                self._last_digest = digest
            if repeat:
                self._counts["repeats"] += 1
                self._repeats_in_a_row += 1
                frozen = self._repeats_in_a_row == self.cfg.frozen_after  # report the transition once
            else:
                frozen = False
                self._repeats_in_a_row = 0
                if last >= 0 and number > last + 1:
                    missing = number - last - 1
                    self._counts["dropped"] += missing
                    self._counts["gaps"] += 1
                    events.append(("frame_gap", f"camera {self.name}: {missing} frame(s) dropped between {last} and {number}", False))
                elif last >= 0 and number < last:
                    events.append(("restarted", f"camera {self.name}: frame numbers restarted ({last} -> {number})", False))
                self._counts["frames"] += 1
                self._last_number = number
                self._last_new_time = now
                self._latest = frame
            for kind, message, fatal in events:
                self._events.append(CameraEvent(now, self.name, kind, message, fatal))
        if frozen:
            self._set_fault("frozen", f"frame {number} repeated {self._repeats_in_a_row} times", now)

    def _on_disconnect(self, message: str, now: float) -> None:
        self._connected = False
        try:
            self._close()
        except Exception:  # noqa: BLE001 - already broken
            pass
        self._set_fault("disconnected", f"lost mid-stream: {message}", now)
        self._next_reconnect = now + 0.5

    def _try_reconnect(self, now: float) -> None:
        if not self.cfg.reconnect or now < self._next_reconnect:
            if self.threaded:
                self._stopping.wait(0.05)
            return
        try:
            self._open()
        except Exception as exc:  # noqa: BLE001 - keep trying with back-off
            self._next_reconnect = now + 1.0
            with self._lock:
                self._events.append(CameraEvent(now, self.name, "reconnect_failed", f"camera {self.name}: reconnect failed: {exc}", False))
            return
        self._connected = True
        self._repeats_in_a_row = 0
        with self._lock:
            self._counts["reconnects"] += 1
            self._events.append(CameraEvent(now, self.name, "reconnected", f"camera {self.name}: reconnected (fault stays latched until cleared)", False))

