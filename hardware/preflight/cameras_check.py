"""Pre-flight `cameras`: each camera delivers new frames at (nearly) its configured rate, with fresh timestamps."""

from __future__ import annotations

import time

import numpy as np

from hardware.cameras import CameraError, make_camera
from hardware.preflight.report import FAIL, PASS, SKIP


def camera_names(pf) -> list[str]:
    names = [name for name, _, _ in pf.contract.cameras]
    t = pf.hw.tracker
    if t.kind.value != "none" and t.camera not in names:
        names.append(t.camera)
    return names

def check_cameras(pf) -> bool:
    names = camera_names(pf)
    if not names:
        pf.add("cameras", SKIP, "no cameras configured")
        return True
    started = {}
    problems = []
    for name in names:
        cfg = pf.hw.cameras[name]
        camera = make_camera(name, cfg, pf.clock, threaded=True)
        try:
            camera.start()
            camera.wait_first_frame(max(2.0, cfg.timeout_s))
        except CameraError as exc:
            problems.append(f"{name}: {exc}")
            camera.stop()
            continue
        pf.cameras[name] = started[name] = camera
        pf.hook(f"camera:{name}", camera)
    stats = {name: {"numbers": set(), "max_age": 0.0, "device_back": False, "last_device": -np.inf} for name in started}
    end = time.monotonic() + pf.options.camera_window_s
    first_health = {name: cam.health().frames for name, cam in started.items()}
    while time.monotonic() < end:
        now = pf.clock.now()
        for name, cam in started.items():
            try:
                frame = cam.read_latest()
            except CameraError:
                continue
            s = stats[name]
            if frame.frame_number not in s["numbers"]:
                s["numbers"].add(frame.frame_number)
                if frame.device_time < s["last_device"]:
                    s["device_back"] = True
                s["last_device"] = frame.device_time
            s["max_age"] = max(s["max_age"], now - frame.host_time)
        time.sleep(0.005)
    data = {}
    for name, cam in started.items():
        cfg, s, health = pf.hw.cameras[name], stats[name], cam.health()
        fps = (health.frames - first_health[name]) / pf.options.camera_window_s
        data[name] = {"fps": round(fps, 1), "configured_fps": cfg.fps, "max_age_ms": round(s["max_age"] * 1000, 1), "dropped": health.dropped}
        if health.fault is not None:
            problems.append(f"{name}: {health.fault}")
        elif fps < pf.options.min_fps_fraction * cfg.fps:
            problems.append(f"{name}: {fps:.1f} fps, configured {cfg.fps:g} (needs >= {pf.options.min_fps_fraction:.0%})")
        elif s["max_age"] > cfg.max_age_s:
            problems.append(f"{name}: frames up to {s['max_age'] * 1000:.0f} ms old when read (max_age_s {cfg.max_age_s * 1000:.0f} ms)")
        elif s["device_back"]:
            problems.append(f"{name}: device timestamps went backwards")
    if problems:
        pf.add("cameras", FAIL, "; ".join(problems), **data)
        return False
    summary = ", ".join(f"{n} {d['fps']:.1f}/{d['configured_fps']:g} fps, max age {d['max_age_ms']:.0f} ms" for n, d in data.items())
    pf.add("cameras", PASS, summary, **data)
    return True
