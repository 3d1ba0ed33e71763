"""Pre-flight `tracker`: the kettle and sink markers are seen, and their poses give the shared reward."""

from __future__ import annotations

import time

import numpy as np

from hardware.cameras import CameraError
from hardware.preflight.report import FAIL, PASS, SKIP
from hardware.safety.kinematics import TcpKinematics
from hardware.tracking import make_tracker
from robolearn.task import compute_reward


def check_tracker(pf, cameras_ok: bool) -> None:
    t = pf.hw.tracker
    if t.kind.value == "none":
        pf.add("tracker", FAIL if pf.options.require_tracker else SKIP, "no tracker configured")
        return
    camera = pf.cameras.get(t.camera)
    if camera is None or not cameras_ok and camera.health().fault is not None:
        pf.add("tracker", SKIP, f"not run: camera {t.camera!r} failed its check")
        return
    tracker = make_tracker(t)
    frames = kettle = sink = 0
    last_number = -1
    end = time.monotonic() + pf.options.tracker_window_s
    while time.monotonic() < end:
        try:
            frame = camera.read_latest()
        except CameraError:
            time.sleep(0.01)
            continue
        if frame.frame_number != last_number:
            last_number = frame.frame_number
            poses = tracker.detect(frame.image)
            frames += 1
            kettle += t.kettle_marker_id in poses
            sink += t.sink_marker_id in poses
            tracker.update(frame)
        time.sleep(0.01)
    rate = min(kettle, sink) / max(frames, 1)
    data = {"frames": frames, "kettle_seen": kettle, "sink_seen": sink}
    if rate < pf.options.tracker_min_detection:
        missing = [f"kettle marker {t.kettle_marker_id} in {kettle}/{frames}", f"sink marker {t.sink_marker_id} in {sink}/{frames}"]
        pf.add("tracker", FAIL, f"markers not seen reliably ({'; '.join(missing)} frames; needs {pf.options.tracker_min_detection:.0%})", **data)
        return
    q = pf.driver.read_state().q if pf.driver is not None and pf.driver.is_connected else pf.contract.robot.home
    tracked = tracker.task_state(pf.clock.now(), np.asarray(TcpKinematics(pf.contract.robot).position(np.asarray(q).tolist())))
    if tracked is None:
        pf.add("tracker", FAIL, "markers seen but their poses are stale", **data)
        return
    state, sink_geometry = tracked
    reward, terms, success = compute_reward(state, sink_geometry, tracker.kettle, pf.cfg.task)
    data.update(kettle_pos=np.round(state.kettle_pos, 4).tolist(), sink_centre=np.round(sink_geometry.centre, 4).tolist(),
                reward=round(float(reward), 4), success=bool(success), reward_terms={k: round(float(v), 4) for k, v in terms.items()})
    pf.add("tracker", PASS, f"both markers in {min(kettle, sink)}/{frames} frames; kettle at {data['kettle_pos']} m, sink at {data['sink_centre']} m; "
              f"reward {data['reward']} (success {data['success']})", **data)
