"""Pre-flight check: passes on a healthy fake arm (the watchdogs really trip), and fails clearly, naming
the problem, on each planted fault: limits above the datasheet, unreachable robot, robot in error,
frozen camera, missing calibration, markers not seen, watchdogs that do not trip."""

from __future__ import annotations

import subprocess
import sys

import cv2
import pytest

from hardware.preflight import PreflightOptions, run_preflight
from hardware.safety.layer import SafetyLayer
from hardware.tracking.calibration import CameraCalibration
from tests.hardware_cases import real_fake_config

QUICK = PreflightOptions(camera_window_s=0.3, tracker_window_s=0.3)


def wall_clock_config():
    return real_fake_config(virtual=False)


def statuses(report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_a_healthy_fake_arm_passes_and_both_watchdogs_trip():
    report = run_preflight(wall_clock_config(), QUICK)
    assert report.ok, report.render()
    assert statuses(report) == {"config": "warn", "calibration": "skip", "robot": "pass", "controller": "skip", "cameras": "pass", "tracker": "skip", "watchdog": "pass"}
    watchdog = report.get("watchdog").data
    # 150 ms timeout, polled every 5 ms; the fake arm's vendor hold is 200 ms.
    assert 150 <= watchdog["safety_watchdog_trip_ms"] <= 250
    assert 200 <= watchdog["vendor_watchdog_stop_ms"] <= 500
    assert report.get("cameras").data["front"]["fps"] >= 24
    assert "PRE-FLIGHT PASSED" in report.render()


def plant_limits(cfg, hook):
    cfg["hardware"]["safety"]["velocity_limits"] = [3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def plant_missing_calibration(cfg, hook):
    cfg["hardware"]["tracker"].update(kind="aruco", calibration="/nonexistent/bench/front.yaml")


def plant_frozen_camera(cfg, hook):
    hook["camera:wrist"] = lambda camera: camera.freeze()


def plant_unreachable(cfg, hook):
    hook["driver"] = lambda driver: driver.cut_link()


def plant_robot_error(cfg, hook):
    hook["driver"] = lambda driver: driver.inject_reflex("cartesian reflex: collision detected")


def plant_broken_vendor_watchdog(cfg, hook):
    hook["driver"] = lambda driver: driver.break_vendor_watchdog()


PLANTED = [
    (plant_limits, "config", r"velocity_limits\[0\]: 3\.0 rad/s \(above the panda datasheet limit 2\.175"),
    (plant_missing_calibration, "calibration", r"/nonexistent/bench/front\.yaml.*file not found.*calibrate first"),
    (plant_frozen_camera, "cameras", r"wrist: camera wrist \(fake\): frame \d+ repeated 5 times"),
    (plant_unreachable, "robot", r"unreachable.*robot unreachable"),
    (plant_robot_error, "robot", r"robot reports an error: fake: cartesian reflex.*never clears errors"),
    (plant_broken_vendor_watchdog, "watchdog", r"vendor watchdog did not stop the arm: still moving at 0\.0200 rad/s"),
]


@pytest.mark.parametrize("plant,check,message", PLANTED, ids=[p[0].__name__[6:] for p in PLANTED])
def test_each_planted_problem_fails_its_check_naming_it(plant, check, message):
    cfg = wall_clock_config()
    hooks: dict = {}
    plant(cfg, hooks)
    report = run_preflight(cfg, QUICK, hook=lambda what, obj: hooks[what](obj) if what in hooks else None)
    assert not report.ok
    failed = report.get(check)
    assert failed.status == "FAIL", report.render()
    assert __import__("re").search(message, failed.detail), failed.detail
    assert "PRE-FLIGHT FAILED" in report.render()
    # Only that check (and what depends on it) fails; the config failure skips everything after it.
    others = {name: status for name, status in statuses(report).items() if name != check}
    if check == "config":
        assert set(others.values()) == {"skip"}
    elif check == "calibration":
        assert others["config"] == "FAIL"  # the env config names the same file
    elif check == "robot":
        assert others["watchdog"] == "skip" and others["cameras"] == "pass"
    else:
        assert "FAIL" not in others.values(), report.render()


def test_an_unreachable_franka_fails_within_its_connect_timeout():
    pytest.importorskip("franky", reason="franky-control is not installed")
    cfg = real_fake_config("robot@env.hardware.driver=franka_sim", virtual=False)
    cfg["robot"] = "fr3"
    cfg["hardware"]["driver"].update(host="127.0.0.9", connect_timeout_s=1.0)  # nothing listens there
    report = run_preflight(cfg, QUICK)
    robot = report.get("robot")
    assert robot.status == "FAIL" and "unreachable at 127.0.0.9" in robot.detail, robot.detail
    assert report.get("watchdog").status == "skip"


def test_a_safety_watchdog_that_never_runs_fails_the_self_test(monkeypatch):
    monkeypatch.setattr(SafetyLayer, "_watchdog_loop", lambda self: None)  # the thread exits at once
    report = run_preflight(wall_clock_config(), QUICK)
    watchdog = report.get("watchdog")
    assert watchdog.status == "FAIL" and "safety watchdog did not trip" in watchdog.detail, watchdog.detail


# -- the tracker sees its markers --------------------------------------------------------------------------
@pytest.fixture
def marker_scene(tmp_path):
    from tests.test_hardware_env import BASE_FROM_CAMERA, MARKER, SIZE, K, marker_pose, render_markers

    calibration = tmp_path / "bench" / "front.yaml"
    CameraCalibration(SIZE, K, __import__("numpy").zeros(5), BASE_FROM_CAMERA).save(calibration)

    def scene(ids):
        poses = {0: marker_pose([0.45, -0.2, 0.12]), 1: marker_pose([0.5, 0.5, 0.0])}
        image = tmp_path / f"markers_{'_'.join(map(str, ids))}.png"
        cv2.imwrite(str(image), cv2.cvtColor(render_markers({i: poses[i] for i in ids}), cv2.COLOR_RGB2BGR))
        cfg = wall_clock_config()
        cfg["hardware"]["cameras"]["front"].update(replay=str(image), width=SIZE[0], height=SIZE[1])
        cfg["hardware"]["tracker"].update(kind="aruco", camera="front", calibration=str(calibration), marker_size_m=MARKER,
                                          kettle_origin_in_marker=[0, 0, -0.06], sink_centre_in_marker=[0, -0.2, -0.15])
        return cfg

    return scene


def test_the_tracker_check_turns_marker_poses_into_the_shared_reward(marker_scene):
    report = run_preflight(marker_scene([0, 1]), QUICK)
    assert report.ok, report.render()
    tracker = report.get("tracker")
    assert tracker.status == "pass" and tracker.data["kettle_seen"] == tracker.data["frames"] > 0
    assert tracker.data["kettle_pos"] == pytest.approx([0.45, -0.2, 0.06], abs=0.01)
    assert tracker.data["sink_centre"] == pytest.approx([0.5, 0.3, -0.15], abs=0.01)
    assert tracker.data["success"] is False and tracker.data["reward_terms"]["kettle_to_sink"] < -0.3
    assert report.get("calibration").status == "pass"


def test_a_missing_marker_fails_the_tracker_check(marker_scene):
    report = run_preflight(marker_scene([0]), QUICK)
    tracker = report.get("tracker")
    assert tracker.status == "FAIL" and "sink marker 1 in 0/" in tracker.detail, tracker.detail


# -- the command ---------------------------------------------------------------------------------------------
def test_the_preflight_command_exits_nonzero_on_failure():
    base = [sys.executable, "-m", "hardware.preflight", "preflight.camera_window_s=0.3"]
    ok = subprocess.run(base, capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "PRE-FLIGHT PASSED" in ok.stdout and ok.stdout.strip().splitlines()[-1].startswith('{"ok": true')
    bad = subprocess.run([*base, "env.hardware.safety.velocity_fraction=1.5"], capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1
    assert "[FAIL] config" in bad.stdout and "velocity_fraction" in bad.stdout


def test_a_check_that_crashes_fails_by_name_and_the_report_goes_on():
    def explode(what, obj):
        if what == "camera:front":
            raise RuntimeError("capture card on fire")

    report = run_preflight(wall_clock_config(), QUICK, hook=explode)
    cameras = report.get("cameras")
    assert cameras.status == "FAIL" and cameras.detail == "check crashed: RuntimeError: capture card on fire"
    assert report.get("watchdog").status == "pass" and not report.ok


def test_the_preflight_command_refuses_a_wrong_option_at_start_up_naming_it():
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from hardware.preflight.command import run
    from robolearn.config import ConfigError
    from robolearn.paths import CONFIG_DIR

    def config(*overrides):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name="preflight", overrides=list(overrides))

    with pytest.raises(ConfigCompositionException, match="camera_windw_s"):
        config("preflight.camera_windw_s=1")
    with pytest.raises(ConfigError, match="preflight.probe_speed: 0.5"):
        run(config("preflight.probe_speed=0.5"))
    with pytest.raises(ConfigError, match="preflight config: .*camera_windw_s"):
        run(config("+preflight.camera_windw_s=1"))


# -- a UR arm: the UR driver against the simulated controller ------------------------------------------
def ur_preflight(*overrides, plant=None):
    from tests.hardware_cases import real_ur_config

    hook = (lambda what, obj: plant(obj.simulated_controller) if what == "driver" else None) if plant else None
    return run_preflight(real_ur_config(*overrides, virtual=False), QUICK, hook=hook)


def test_a_healthy_ur_passes_the_controller_check_and_its_rtde_watchdog_stops_the_arm():
    report = ur_preflight("env.hardware.driver.payload_kg=1.0")
    assert report.ok, report.render()
    controller = report.get("controller")
    assert controller.status == "pass" and controller.data["model"] == "UR5" and controller.data["payload_kg"] == 1.0
    assert 200 <= report.get("watchdog").data["vendor_watchdog_stop_ms"] <= 500


def _no_payload(c):
    c.payload_kg = 0.0


def _local_control(c):
    c.remote_control = False


def _over_rated(c):
    c.payload_kg = 6.0


UR_PLANTED = [
    (_local_control, "controller", r"not in remote control"),
    (_no_payload, "controller", r"no payload set"),
    (_over_rated, "controller", r"payload 6\.00 kg is over the ur5e's rated 5\.0 kg"),
    (lambda c: c.protective_stop(), "robot", r"ur: controller in protective_stop.*never clears errors"),
    (lambda c: c.power_off(), "robot", r"robot mode POWER_OFF, not RUNNING"),
]


@pytest.mark.parametrize("plant,check,message", UR_PLANTED, ids=["local_control", "no_payload", "over_rated", "protective_stop", "power_off"])
def test_each_planted_ur_controller_problem_fails_naming_it(plant, check, message):
    report = ur_preflight(plant=plant)
    failed = report.get(check)
    assert not report.ok and failed.status == "FAIL", report.render()
    assert __import__("re").search(message, failed.detail), failed.detail
    assert report.get("watchdog").status == "skip"  # nothing moves on a controller that failed its check


def test_a_ur_payload_other_than_the_configured_one_fails():
    report = ur_preflight("env.hardware.driver.payload_kg=1.5")  # the controller reports 1.5 unless planted
    assert report.ok, report.render()
    report = ur_preflight("env.hardware.driver.payload_kg=1.5", plant=lambda c: setattr(c, "payload_kg", 1.0))
    assert "payload set to 1.00 kg, the config expects 1.50 kg" in report.get("controller").detail


class TimedPolicy:
    """A policy whose act() takes `seconds` on a virtual clock."""

    def __init__(self, clock, seconds):
        self.clock, self.seconds = clock, seconds

    def reset(self):
        pass

    def act(self, obs):
        self.clock.advance(self.seconds)
        import numpy as np

        return np.zeros(8, np.float32)


@pytest.mark.parametrize("seconds, status", [(0.02, "pass"), (0.08, "FAIL")])
def test_the_policy_latency_check_measures_a_checkpoints_policy_against_the_period(monkeypatch, seconds, status):
    import functools

    import hardware.preflight.policy_check as policy_check
    from hardware.timing import VirtualClock

    clock = VirtualClock()
    loaded = []
    monkeypatch.setattr(policy_check, "load_checkpoint_policy", lambda env, path, spaces: loaded.append((path, spaces)) or TimedPolicy(clock, seconds))
    monkeypatch.setattr(policy_check, "prepare_for_control", functools.partial(policy_check.prepare_for_control, now=clock.now))
    options = PreflightOptions(camera_window_s=0.3, watchdog_test=False)
    report = run_preflight(real_fake_config(), options, checkpoint="runs/x")
    check = report.get("policy latency")
    assert loaded[0][0] == "runs/x" and "front" in loaded[0][1][0].spaces  # the env's contract: no checkpoint file needed here
    assert check.status == status and check.data["p99_ms"] == pytest.approx(seconds * 1000) and check.data["threads"] == 1
    if status == "FAIL":
        assert "p99 latency 80.0 ms" in check.detail and "above 0.5 of the 100 ms control period" in check.detail and not report.ok
    else:
        assert "p99 20.0 ms of the 100 ms period (limit 50 ms" in check.detail
    # Without a checkpoint there is no such check.
    assert "policy latency" not in statuses(run_preflight(real_fake_config(), options))
