"""Cameras through their real libraries: RealSense via pyrealsense2's own pipeline on a recording made
here with a software device, OpenCV on a video file written here; plus the fake camera's monitoring."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from hardware.cameras import CameraError, Frame, make_camera
from hardware.config import FakeCameraConfig, OpenCVCameraConfig, RealSenseCameraConfig
from hardware.timing import MonotonicClock, VirtualClock
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(60)



# -- RealSense ----------------------------------------------------------------------------------------------
RS_W, RS_H, RS_FPS = 64, 48, 30
RS_DROPPED = 8


@pytest.fixture(scope="module")
def realsense_recording(tmp_path_factory):
    """A 15-frame colour recording made through librealsense's recorder, frame 8 never sent."""
    rs = pytest.importorskip("pyrealsense2", reason="pyrealsense2 not importable (needs Debian's libusb-1.0-0)")
    path = tmp_path_factory.mktemp("realsense") / "colour.db3"
    device = rs.software_device()
    sensor = device.add_sensor("Color")
    stream = rs.video_stream()
    stream.type, stream.index, stream.uid = rs.stream.color, 0, 0
    stream.width, stream.height, stream.fps, stream.bpp, stream.fmt = RS_W, RS_H, RS_FPS, 3, rs.format.rgb8
    intrinsics = rs.intrinsics()
    intrinsics.width, intrinsics.height = RS_W, RS_H
    intrinsics.fx, intrinsics.fy, intrinsics.ppx, intrinsics.ppy = 60.0, 61.0, 31.5, 23.5
    intrinsics.model, intrinsics.coeffs = rs.distortion.none, [0.0] * 5
    stream.intrinsics = intrinsics
    profile = sensor.add_video_stream(stream)
    recorder = rs.recorder(str(path), device)
    sensor.open(profile)
    sensor.start(rs.frame_queue(16))
    for number in range(1, 16):
        if number != RS_DROPPED:
            frame = rs.software_video_frame()
            frame.pixels = np.full((RS_H, RS_W, 3), number * 10, dtype=np.uint8)
            frame.stride, frame.bpp = RS_W * 3, 3
            frame.timestamp = number * 1000.0 / RS_FPS  # ms on the device clock
            frame.domain = rs.timestamp_domain.hardware_clock
            frame.frame_number = number
            frame.profile = profile.as_video_stream_profile()
            sensor.on_video_frame(frame)
        time.sleep(1.0 / RS_FPS)  # paced at the real rate, so playback timing is realistic
    sensor.stop()
    sensor.close()
    del recorder  # flushes the file
    return path


def test_realsense_plays_a_recording_through_the_pipeline_and_detects_the_dropped_frame(realsense_recording):
    faults = []
    cfg = RealSenseCameraConfig(recording=str(realsense_recording), width=RS_W, height=RS_H, fps=RS_FPS, reconnect=False)
    camera = make_camera("front", cfg, MonotonicClock(), on_fault=lambda *a: faults.append(a))
    seen = []
    original = camera._ingest

    def spy(frame):  # record every frame the capture thread hands over
        seen.append((frame.frame_number, frame.device_time, int(frame.image[0, 0, 0]), frame.image.shape))
        original(frame)

    camera._ingest = spy
    camera.start()
    try:
        assert camera.intrinsics["fx"] == pytest.approx(60.0) and camera.intrinsics["ppy"] == pytest.approx(23.5)
        assert eventually(lambda: faults, 5.0), "the end of the recording was not reported"
        health = camera.health()
    finally:
        camera.stop()
    numbers = [n for n, *_ in seen]
    assert numbers == [n for n in range(1, 16) if n != RS_DROPPED]
    for number, device_time, value, shape in seen:
        assert device_time == pytest.approx(number / RS_FPS, abs=1e-6)  # the device clock, not the host's
        assert value == number * 10 and shape == (RS_H, RS_W, 3)
    assert health.dropped == 1 and health.gaps == 1
    events = [e.message for e in camera.drain_events()]
    assert f"camera front: 1 frame(s) dropped between {RS_DROPPED - 1} and {RS_DROPPED + 1}" in events
    # The recording ending mid-stream reads as a disconnect: a latched fault.
    assert faults[0][1] == "disconnected" and "recording ended" in faults[0][2]
    assert health.fault is not None and not health.connected


def test_realsense_with_an_unknown_serial_fails_at_start_naming_it():
    pytest.importorskip("pyrealsense2", reason="pyrealsense2 not importable")
    camera = make_camera("wrist", RealSenseCameraConfig(serial="000000000042"), MonotonicClock())
    with pytest.raises(CameraError, match="no device with serial '000000000042'"):
        camera.start()


# -- OpenCV -------------------------------------------------------------------------------------------------
CV_W, CV_H, CV_FPS, CV_FRAMES = 64, 48, 25, 12


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("opencv") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CV_FPS, (CV_W, CV_H))
    assert writer.isOpened()
    for i in range(CV_FRAMES):
        bgr = np.zeros((CV_H, CV_W, 3), dtype=np.uint8)
        bgr[..., 2] = 20 * i  # red in RGB carries the frame index
        writer.write(bgr)
    writer.release()
    return path


def test_opencv_reads_a_video_file_in_order_at_its_fps(video_file):
    faults = []
    cfg = OpenCVCameraConfig(source=str(video_file), width=CV_W, height=CV_H, fps=CV_FPS, reconnect=False)
    camera = make_camera("front", cfg, MonotonicClock(), on_fault=lambda *a: faults.append(a))
    seen = []
    original = camera._ingest
    camera._ingest = lambda frame: (seen.append(frame), original(frame))
    start = time.monotonic()
    camera.start()
    try:
        assert camera.applied == (CV_W, CV_H, pytest.approx(CV_FPS))
        assert eventually(lambda: faults, 5.0)
        elapsed = time.monotonic() - start
    finally:
        camera.stop()
    assert [f.frame_number for f in seen] == list(range(1, CV_FRAMES + 1))
    for i, frame in enumerate(seen):
        assert abs(int(frame.image[..., 0].mean()) - 20 * i) <= 3  # RGB order, lossy codec
        assert frame.device_time == pytest.approx(i / CV_FPS, abs=1e-3)
    assert elapsed >= (CV_FRAMES - 1) / CV_FPS  # paced at the file's fps, not as fast as it decodes
    assert faults[0][1] == "disconnected" and "end of file" in faults[0][2]


def test_opencv_refuses_a_resolution_or_fps_it_did_not_get(video_file):
    cfg = OpenCVCameraConfig(source=str(video_file), width=640, height=480, fps=CV_FPS)
    with pytest.raises(CameraError, match=r"requested 640x480 @ 25 fps, got 64x48 @ 25 fps"):
        make_camera("front", cfg, MonotonicClock()).start()
    cfg = OpenCVCameraConfig(source=str(video_file), width=CV_W, height=CV_H, fps=60)
    with pytest.raises(CameraError, match="@ 60 fps"):
        make_camera("front", cfg, MonotonicClock()).start()


def test_opencv_unopenable_source_is_named():
    cfg = OpenCVCameraConfig(source="/nonexistent/clip.avi")
    with pytest.raises(CameraError, match="cannot open source '/nonexistent/clip.avi'"):
        make_camera("front", cfg, MonotonicClock()).start()


def test_opencv_live_stream_freeze_is_detected_by_content(video_file):
    """Live devices number frames by arrival, so a stuck driver repeating one image is caught by content."""
    live = make_camera("front", OpenCVCameraConfig(source="0"), VirtualClock())
    assert live.frozen_by_content and not live.is_file
    cfg = OpenCVCameraConfig(source=str(video_file), width=CV_W, height=CV_H, fps=CV_FPS, frozen_after=3)
    faults = []
    camera = make_camera("front", cfg, VirtualClock(), on_fault=lambda *a: faults.append(a), threaded=False)
    assert not camera.frozen_by_content  # a file has trustworthy frame positions
    camera.start()
    camera.frozen_by_content = True  # behave as a live device from here on
    stuck = np.zeros((CV_H, CV_W, 3), dtype=np.uint8)
    for number in range(100, 103):
        camera._ingest(Frame(stuck, number, 0.0, 0.0))
    assert not faults  # one new image, then two repeats
    camera._ingest(Frame(stuck, 103, 0.0, 0.0))
    assert faults and faults[0][1] == "frozen"
    camera.stop()


# -- fake camera monitoring ------------------------------------------------------------------------------
def fake(clock, **cfg):
    """A fake camera; threaded on the wall clock, read-driven on a virtual one."""
    faults = []
    settings = dict(width=32, height=24, fps=30, timeout_s=0.2, max_age_s=0.05, frozen_after=4)
    settings.update(cfg)
    threaded = not isinstance(clock, VirtualClock)
    camera = make_camera("front", FakeCameraConfig(**settings), clock, on_fault=lambda *a: faults.append(a), threaded=threaded)
    camera.start()
    return camera, faults


def test_fake_camera_reports_gaps_freezes_timeouts_and_disconnects_on_a_virtual_clock():
    clock = VirtualClock()
    camera, faults = fake(clock)

    def read():
        clock.advance(1 / 30)
        return camera.read_latest()

    first = read().frame_number
    camera.drop_frames(2)
    assert read().frame_number == first + 3
    assert camera.health().dropped == 2 and not faults
    camera.freeze()
    for _ in range(4):
        read()
    assert faults[-1][1] == "frozen"
    with pytest.raises(CameraError, match="frozen"):
        camera.clear_fault()
    camera.resume()
    read()
    camera.clear_fault()
    camera.stall()
    clock.advance(0.25)
    read()  # the reader's own check catches a capture that delivers nothing
    assert faults[-1][1] == "timeout"
    camera.resume()
    camera.unplug()
    read()
    assert not camera.health().connected
    with pytest.raises(CameraError, match="disconnected"):
        camera.clear_fault()
    camera.plug_in()
    clock.advance(1.0)
    read()  # reconnects after the back-off
    read()
    assert camera.health().reconnects == 1 and camera.unhealthy_reason() is None
    camera.clear_fault()
    assert camera.health().fault is None
    camera.stop()


def test_fake_camera_thread_keeps_the_latest_frame_fresh():
    camera, faults = fake(MonotonicClock())
    try:
        first = camera.wait_first_frame(1.0)
        time.sleep(0.2)
        latest = camera.read_latest()
        assert latest.frame_number >= first.frame_number + 4  # ~30 fps
        assert not camera.is_stale(latest)
        camera.stall()
        time.sleep(0.1)
        assert camera.is_stale(camera.read_latest())  # older than max_age_s
        assert eventually(lambda: faults, 0.5) and faults[0][1] == "timeout"
    finally:
        camera.stop()


def test_fake_camera_replays_a_video_file(video_file):
    camera = make_camera("front", FakeCameraConfig(replay=str(video_file), width=CV_W, height=CV_H), VirtualClock(), threaded=False)
    camera.start()
    values = [int(camera.read_latest().image[..., 0].mean()) for _ in range(CV_FRAMES + 1)]
    camera.stop()
    assert all(abs(v - 20 * (i % CV_FRAMES)) <= 3 for i, v in enumerate(values))
