"""A camera without a device: synthetic frames drawn from a scene callback, or frames replayed from a
video file, with hooks that break the stream the ways real cameras break.

On the wall clock a capture thread produces frames at the configured fps; on a virtual clock each read
produces the next frame at once (numbered consecutively), so dry runs are deterministic.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable

import numpy as np

from hardware.cameras.base import Camera, CameraDisconnected, CameraError, Frame
from hardware.config import FakeCameraConfig
from hardware.timing import Clock

# Scene callback: what the synthetic view shows. Returns the TCP position (m, robot base frame) and the
# gripper opening (m), or None for an empty scene.
SceneFn = Callable[[], "tuple[tuple[float, float, float], float] | None"]

# Robot-base-frame extents each synthetic view maps onto its image (m): (u axis, v axis) ranges.
_VIEWS = (
    ((1, -0.6, 0.6), (2, 1.0, -0.1)),  # from the front: u = y, v = z (up is up)
    ((1, -0.6, 0.6), (0, 0.9, 0.0)),  # from above: u = y, v = x
)


class FakeCamera(Camera):
    kind = "fake"

    def __init__(self, name: str, cfg: FakeCameraConfig, clock: Clock, *, scene: SceneFn | None = None, **kwargs):
        super().__init__(name, cfg, clock, **kwargs)
        self.scene = scene
        self._index = 0  # number of the last frame produced
        self._last_emit = 0.0
        self._replay: list[np.ndarray] | None = None
        h, w = cfg.height, cfg.width
        # A fixed per-camera backdrop so views differ; the scene is drawn over it.
        seed = zlib.crc32(name.encode())
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        hue = np.array([seed % 97, (seed // 97) % 89, (seed // 8633) % 83], dtype=np.float32) / 100.0
        self._backdrop = (40 + 60 * hue[None, None, :] + 50 * (yy / h)[..., None] * (1 - hue[None, None, :]) + 20 * (xx / w)[..., None]).astype(np.uint8)
        self._view = _VIEWS[seed % len(_VIEWS)]
        self._cols = np.arange(w, dtype=np.float32)
        self._rows = np.arange(h, dtype=np.float32)
        # Fault hooks.
        self._hook_lock = threading.Lock()
        self._stalled = False
        self._frozen = False
        self._skip = 0
        self._unplugged = False

    # -- fault hooks -------------------------------------------------------------------------------
    def stall(self) -> None:
        """Stop delivering frames (the device hangs)."""
        with self._hook_lock:
            self._stalled = True

    def resume(self) -> None:
        with self._hook_lock:
            self._stalled = False
            self._frozen = False

    def freeze(self) -> None:
        """Keep delivering the last frame again and again (same frame number)."""
        with self._hook_lock:
            self._frozen = True

    def drop_frames(self, count: int) -> None:
        """The next `count` frame numbers never arrive."""
        with self._hook_lock:
            self._skip += int(count)

    def unplug(self) -> None:
        with self._hook_lock:
            self._unplugged = True

    def plug_in(self) -> None:
        with self._hook_lock:
            self._unplugged = False

    # -- device ------------------------------------------------------------------------------------
    def _open(self) -> None:
        if self._unplugged:
            raise CameraError(f"camera {self.name} (fake): device not found (unplugged by a test hook)")
        if self.cfg.replay and self._replay is None:
            self._replay = _load_video(self.cfg.replay, self.name)
        self._last_emit = self.clock.now() - 1.0 / self.cfg.fps  # the first frame is due at once

    def _close(self) -> None:
        pass

    def _grab(self, timeout_s: float) -> Frame | None:
        now = self.clock.now()
        if self.threaded:
            # Pace at the configured fps (every outcome below, a repeat included, takes one period).
            due = self._last_emit + 1.0 / self.cfg.fps
            if due > now:
                if self._stopping.wait(min(due - now, timeout_s)) or self.clock.now() < due:
                    return None
            now = self._last_emit = self.clock.now()
        with self._hook_lock:
            unplugged, stalled, frozen = self._unplugged, self._stalled, self._frozen
        if unplugged:
            raise CameraDisconnected("device unplugged")
        if stalled:
            if self.threaded:
                self._stopping.wait(timeout_s)
            return None
        if frozen and self._latest is not None:
            last = self._latest
            return Frame(last.image, last.frame_number, last.device_time, now)
        with self._hook_lock:
            skip, self._skip = self._skip, 0
        self._index += 1 + skip
        return Frame(self._render(self._index), self._index, self._index / self.cfg.fps, now)

    def _render(self, index: int) -> np.ndarray:
        if self._replay is not None:
            return self._replay[(index - 1) % len(self._replay)]
        image = self._backdrop.copy()
        scene = self.scene() if self.scene is not None else None
        if scene is None:
            return image
        (tcp, width) = scene
        h, w = image.shape[:2]
        (ua, u0, u1), (va, v0, v1) = self._view
        u = (tcp[ua] - u0) / (u1 - u0) * w
        v = (tcp[va] - v0) / (v1 - v0) * h
        sigma = max(w, h) / 14.0
        # Separable Gaussian blob at the TCP: sub-pixel moves of the arm change the pixels.
        blob = np.outer(np.exp(-0.5 * ((self._rows - v) / sigma) ** 2), np.exp(-0.5 * ((self._cols - u) / sigma) ** 2))
        image[..., 0] = np.clip(image[..., 0] + 200.0 * blob, 0, 255).astype(np.uint8)
        # Gripper opening as a bar along the bottom edge.
        bar = int(round(w * min(max(width / 0.08, 0.0), 1.0)))
        image[-max(1, h // 16):, :bar, 2] = 230
        return image


def _load_video(path: str, name: str, limit: int = 3000) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(path)
    frames = []
    while len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise CameraError(f"camera {name} (fake): no frames could be read from {path!r}")
    return frames
