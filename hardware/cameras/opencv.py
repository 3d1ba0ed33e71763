"""Any camera OpenCV can open: a device index, a video file or a stream URL (cv2.VideoCapture).

The requested resolution and fps are set, read back, and (with `verify`) a mismatch is a start-up error
naming both: drivers silently fall back to another mode, and a policy would then see other images.
Files are paced at their own fps (`realtime`) and report their frame position; live devices are
numbered by arrival, so a frozen live stream is detected by image content.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from hardware.cameras.base import Camera, CameraDisconnected, CameraError, Frame


class OpenCVCamera(Camera):
    kind = "opencv"

    def __init__(self, name, cfg, clock, **kwargs):
        super().__init__(name, cfg, clock, **kwargs)
        source = cfg.source.strip()
        self.source: int | str = int(source) if source.isdigit() else source
        self.is_file = isinstance(self.source, str) and Path(self.source).is_file()
        self.frozen_by_content = not self.is_file
        self._cap: cv2.VideoCapture | None = None
        self._count = 0
        self._next_due = 0.0
        self.applied: tuple[int, int, float] | None = None  # (width, height, fps) the device applied

    def _open(self) -> None:
        cfg = self.cfg
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            raise CameraError(f"camera {self.name} (opencv): cannot open source {self.source!r}")
        if not self.is_file:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
            cap.set(cv2.CAP_PROP_FPS, cfg.fps)
        applied = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), float(cap.get(cv2.CAP_PROP_FPS)))
        self.applied = applied
        if cfg.verify and (applied[:2] != (cfg.width, cfg.height) or abs(applied[2] - cfg.fps) > 0.5):
            cap.release()
            raise CameraError(
                f"camera {self.name} (opencv, {self.source!r}): requested {cfg.width}x{cfg.height} @ {cfg.fps:g} fps, "
                f"got {applied[0]}x{applied[1]} @ {applied[2]:g} fps (fix env.hardware.cameras.{self.name} or set verify: false)"
            )
        self._cap = cap
        self._next_due = self.clock.now()

    def _close(self) -> None:
        if self._cap is not None:
            cap, self._cap = self._cap, None
            cap.release()

    def _grab(self, timeout_s: float) -> Frame | None:
        cap = self._cap
        if cap is None:
            raise CameraDisconnected("not open")
        if self.is_file and self.cfg.realtime and self.threaded:
            wait = self._next_due - self.clock.now()
            if wait > 0:
                if self._stopping.wait(min(wait, timeout_s)) or self.clock.now() < self._next_due:
                    return None
            self._next_due = max(self._next_due + 1.0 / self.applied[2], self.clock.now() - 1.0)
        ok, bgr = cap.read()
        host_time = self.clock.now()
        if not ok or bgr is None:
            raise CameraDisconnected("end of file" if self.is_file else "read failed (device gone?)")
        if self.is_file:
            number = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            device_time = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        else:
            self._count += 1
            number, device_time = self._count, host_time
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), number, device_time, host_time)
