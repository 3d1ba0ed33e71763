"""Intel RealSense colour (and optionally depth aligned to colour) through pyrealsense2's pipeline.

A live device is chosen by serial; `recording` plays a file recorded by librealsense through the same
pipeline instead (how the tests drive this class). Frame numbers and timestamps come from the device;
intrinsics are read from the started stream profile. A device that stops delivering is closed and
reopened with back-off by the capture thread (the base class); a finished recording reads as a
disconnect.
"""

from __future__ import annotations

import numpy as np

from hardware.cameras.base import Camera, CameraDisconnected, CameraError, Frame


def import_realsense():
    try:
        import pyrealsense2 as rs
    except ImportError as exc:  # pragma: no cover - depends on the machine (needs libusb-1.0-0)
        raise CameraError(f"realsense camera needs pyrealsense2 (and Debian's libusb-1.0-0): {exc}") from None
    return rs


class RealSenseCamera(Camera):
    kind = "realsense"

    def __init__(self, name, cfg, clock, **kwargs):
        super().__init__(name, cfg, clock, **kwargs)
        self._rs = None
        self._pipeline = None
        self._align = None
        self._playback = None
        self._intrinsics: dict | None = None
        self.depth_scale: float | None = None  # metres per depth unit

    @property
    def intrinsics(self) -> dict | None:
        return self._intrinsics

    def _open(self) -> None:
        rs = self._rs = import_realsense()
        cfg = self.cfg
        config = rs.config()
        where = f"recording {cfg.recording!r}" if cfg.recording else f"serial {cfg.serial!r}" if cfg.serial else "the connected device"
        if cfg.recording:
            config.enable_device_from_file(cfg.recording, repeat_playback=False)
        else:
            serials = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
            if cfg.serial:
                if cfg.serial not in serials:
                    raise CameraError(f"camera {self.name} (realsense): no device with serial {cfg.serial!r}; connected: {serials}")
                config.enable_device(cfg.serial)
            elif len(serials) != 1:
                raise CameraError(f"camera {self.name} (realsense): set a serial; connected devices: {serials}")
        fps = int(round(cfg.fps))
        config.enable_stream(rs.stream.color, cfg.width, cfg.height, rs.format.rgb8, fps)
        if cfg.depth:
            config.enable_stream(rs.stream.depth, cfg.width, cfg.height, rs.format.z16, fps)
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(config)
        except RuntimeError as exc:
            raise CameraError(f"camera {self.name} (realsense, {where}): cannot stream colour {cfg.width}x{cfg.height} @ {fps} fps: {exc}") from None
        self._pipeline = pipeline
        device = profile.get_device()
        if cfg.recording:
            self._playback = device.as_playback()
            self._playback.set_real_time(cfg.realtime)
        stream = profile.get_stream(rs.stream.color).as_video_stream_profile()
        i = stream.get_intrinsics()
        self._intrinsics = {"width": i.width, "height": i.height, "fx": i.fx, "fy": i.fy, "ppx": i.ppx, "ppy": i.ppy, "model": str(i.model), "coeffs": list(i.coeffs)}
        if cfg.depth:
            self._align = rs.align(rs.stream.color)
            self.depth_scale = device.first_depth_sensor().get_depth_scale()

    def _close(self) -> None:
        if self._pipeline is not None:
            pipeline, self._pipeline, self._playback = self._pipeline, None, None
            pipeline.stop()

    def _grab(self, timeout_s: float) -> Frame | None:
        pipeline = self._pipeline
        if pipeline is None:
            raise CameraDisconnected("pipeline not running")
        ok, frames = pipeline.try_wait_for_frames(max(1, int(timeout_s * 1000)))
        if not ok:
            playback = self._playback
            if playback is not None and playback.current_status() == self._rs.playback_status.stopped:
                raise CameraDisconnected("recording ended")
            return None
        host_time = self.clock.now()
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            return None
        # Copy out of librealsense's frame pool before the frame object is released.
        image = np.array(np.asanyarray(color.get_data()), copy=True)
        depth = None
        if self._align is not None:
            d = frames.get_depth_frame()
            depth = np.array(np.asanyarray(d.get_data()), copy=True) if d else None
        return Frame(image, int(color.get_frame_number()), color.get_timestamp() / 1000.0, host_time, depth)
