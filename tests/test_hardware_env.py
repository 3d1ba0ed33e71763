"""The real-robot env on the fake driver: same contract as the sim, config errors before anything
moves, resets through the safety layer, reward from ArUco markers, and the configs Hydra composes."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

import hardware.env as hardware_env
from hardware.config import TrackerConfig
from hardware.env import RealRobotEnv
from hardware.resets import ResetFailed
from hardware.tracking.aruco import ArucoTracker, quaternion_wxyz
from hardware.tracking.calibration import CameraCalibration
from robolearn.config import ConfigError, load_env_config
from robolearn.envs import make_env
from robolearn.robots import PANDA
from tests.hardware_cases import real_fake_config, real_ur_config

pytestmark = pytest.mark.timeout(120)


def build(cfg) -> RealRobotEnv:
    return RealRobotEnv(cfg)


# -- the contract ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("robot", ["panda", "fr3", "ur5e"])
@pytest.mark.parametrize("mode", ["joint_velocity", "joint_torque"])
def test_spaces_and_action_scaling_equal_the_sims_for_the_same_robot_config(robot, mode):
    from sim import make_kettle_sink_env

    shared = {"robot": robot, "control_mode": mode, "velocity_limit_fraction": 0.3, "cameras": [{"name": "front", "width": 64, "height": 48}, {"name": "wrist", "width": 84, "height": 84}]}
    sim = make_kettle_sink_env(load_env_config(shared))
    # The UR5e through the UR driver (ur_rtde's calls) on the simulated controller; the Franka arms on the fake.
    base = real_ur_config("env.hardware.driver.torque_control=true") if robot == "ur5e" else real_fake_config()
    real = build({**base, **shared})
    try:
        assert real.observation_space == sim.observation_space
        assert real.action_space == sim.action_space
        np.testing.assert_array_equal(real.contract.command_limits, sim.unwrapped.contract.command_limits)
        action = np.linspace(-1, 1, real.action_space.shape[0]).astype(np.float32)
        for a, b in zip(real.contract.scale_action(action), sim.unwrapped.contract.scale_action(action)):
            np.testing.assert_array_equal(a, b)
        obs, _ = real.reset(seed=0)
        assert real.observation_space.contains(obs)
    finally:
        real.close()
        sim.close()


def test_the_factory_is_reached_through_make_env_and_the_yaml():
    env = make_env(real_fake_config())
    try:
        assert isinstance(env, RealRobotEnv) and env.virtual
        env.reset(seed=0)
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert reward == 0.0 and not info["success"] and not info["success_known"] and info["reward_source"] == "none"
        assert set(info["reward_terms"]) >= {"kettle_to_sink", "success_bonus"}
        assert info["safety"]["counters"]["sent"] > 0 and not info["safety"]["estop"]
        assert info["timing"]["period_ms"] == pytest.approx(100.0)
        assert info["cameras"]["front"]["frame_number"] > 0
    finally:
        env.close()


# -- wrong configs fail before anything moves ------------------------------------------------------------
DELETE = object()


def with_hw(*overrides, **settings):
    """The real_fake config (with Hydra overrides) with dotted keys set (or removed with DELETE)."""
    cfg = real_fake_config(*overrides)
    for key, value in settings.items():
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return cfg


@pytest.mark.parametrize(
    "cfg, named",
    [
        (with_hw(**{"hardware.safety.velocity_limits": [3.0, 1, 1, 1, 1, 1, 1]}), r"env.hardware.safety.velocity_limits\[0\].*datasheet"),
        (with_hw(**{"hardware.safety.torque_fraction": 1.5}), "env.hardware.safety.torque_fraction"),
        (with_hw(**{"hardware.cameras.wrist": DELETE}), "env.cameras: 'wrist'.*no device configured"),
        (with_hw(**{"hardware.cameras.front.kind": "kinect"}), "kinect"),
        (with_hw(**{"hardware.tracker.kind": "aruco"}), "env.hardware.tracker.calibration.*needs a camera calibration"),
        (with_hw(**{"hardware.tracker.kind": "aruco", "hardware.tracker.calibration": "/nonexistent.yaml"}), "calibration.*not found"),
        (with_hw(privileged=True), "env.privileged.*tracker"),
        (with_hw("robot@env.hardware.driver=franka", **{"robot": "panda", "hardware.loop.clock": "virtual"}), "loop.clock.*fake"),
        (with_hw("robot@env.hardware.driver=ur"), "env.hardware.driver.kind.*cannot drive robot 'panda'"),
        (with_hw(**{"hardware.driver.command_hold_s": 0.05}), "command_hold_s.*control period"),
        (with_hw(**{"hardware.safety.watchdog_timeout_s": 0.08}), "watchdog_timeout_s.*control period"),
        (with_hw(**{"hardware.resets.home": [0, 0, 0, 0, 0, 0, 0]}), "env.hardware.resets.home"),
        (with_hw(**{"hardware.driver.bogus": 1}), "bogus"),
    ],
    ids=[
        "velocity-above-datasheet", "fraction-above-1", "unknown-camera", "unknown-camera-kind", "tracker-without-calibration",
        "calibration-missing-file", "privileged-without-tracker", "virtual-clock-on-a-real-arm", "driver-robot-mismatch",
        "hold-below-period", "watchdog-below-period", "home-outside-limits", "unknown-key",
    ],
)
def test_wrong_config_fails_naming_the_problem_before_any_driver_exists(cfg, named, monkeypatch):
    def no_driver(*args, **kwargs):
        raise AssertionError("a driver was built for an invalid config")

    monkeypatch.setattr(hardware_env, "make_driver", no_driver)
    with pytest.raises(ConfigError, match=named):
        build(cfg)


# -- reset -------------------------------------------------------------------------------------------------
def test_reset_moves_home_through_the_safety_layer_with_limited_speed():
    start = PANDA.home + np.array([0.4, -0.3, 0.2, 0.3, -0.2, 0.3, -0.5])
    cfg = with_hw(**{"hardware.driver.initial_q": start.tolist(), "hardware.resets.joint_noise_rad": 0.0})
    env = build(cfg)
    speeds = []
    original = env.driver.set_joint_velocity
    env.driver.set_joint_velocity = lambda dq: (speeds.append(np.max(np.abs(dq))), original(dq))[1]
    try:
        obs, info = env.reset(seed=0)
        np.testing.assert_allclose(obs["joint_pos"], PANDA.home, atol=env.hw.resets.tolerance_rad)
        counters = info["safety"]["counters"]
        assert counters["commands"] == counters["sent"] > 10  # every homing command went through the layer
        assert max(speeds) <= env.hw.resets.max_speed + 1e-9
        env.clock.advance(0.05)
        assert env.driver.at_rest  # held at home after the last, slow homing command
    finally:
        env.close()


def test_reset_from_a_tcp_parked_at_a_workspace_face_reaches_home():
    """A pose a random policy reached: TCP on the box's x-min face, joint 1 far from home. The straight
    joint path home first pushes the TCP out; before the reset ramped up and slid along the face, the
    workspace layer scaled every homing command to zero and the reset stalled until its timeout."""
    parked = [-2.1659, -0.6373, 0.3238, -2.0081, 1.1279, 1.3951, 0.8003]
    env = build(with_hw(**{"hardware.driver.initial_q": parked, "hardware.resets.joint_noise_rad": 0.0}))
    try:
        assert env._kin.position(parked)[0] == pytest.approx(env.hw.safety.workspace_min[0], abs=2e-3)
        tcp = []
        original = env.driver.set_joint_velocity
        env.driver.set_joint_velocity = lambda dq: (tcp.append(env._kin.position(env.driver.read_state().q.tolist())), original(dq))[1]
        obs, info = env.reset(seed=0)
        np.testing.assert_allclose(obs["joint_pos"], PANDA.home, atol=env.hw.resets.tolerance_rad)
        lo, hi = np.array(env.hw.safety.workspace_min), np.array(env.hw.safety.workspace_max)
        assert np.all(np.array(tcp) >= lo - 1e-3) and np.all(np.array(tcp) <= hi + 1e-3)  # never left the box
        assert not info["safety"]["estop"]
    finally:
        env.close()


def test_reset_refuses_while_latched_and_reports_a_failed_homing():
    env = build(with_hw(**{"hardware.resets.timeout_s": 0.5, "hardware.resets.joint_noise_rad": 0.0, "hardware.safety.tracking_timeout_s": 5.0}))
    try:
        env.reset(seed=0)
        env.driver.inject_reflex()
        *_, truncated, info = env.step(np.zeros(8, dtype=np.float32))
        assert truncated and info["safety"]["estop"] and "reflex" in info["safety"]["fault"]
        with pytest.raises(hardware_env.EStopLatched, match="recover_robot_errors=True"):
            env.reset()
        env.clear_fault(recover_robot_errors=True)
        env.driver.freeze_joint(3)
        env.driver.move_by_hand(PANDA.home + np.array([0, 0, 0, 0.3, 0, 0, 0]))
        with pytest.raises(ResetFailed, match=r"home not reached within 0.5 s; joint errors \(rad\): \[0.0, 0.0, 0.0, -0.3"):
            env.reset()
        env.clock.advance(0.05)
        assert env.driver.at_rest  # the failed homing left the arm held
    finally:
        env.close()


def test_seeded_resets_start_from_different_poses():
    env = build(with_hw(**{"hardware.resets.joint_noise_rad": 0.05}))
    try:
        a = env.reset(seed=1)[0]["joint_pos"]
        b = env.reset(seed=2)[0]["joint_pos"]
        c = env.reset(seed=1)[0]["joint_pos"]
        assert np.max(np.abs(a - b)) > 0.02
        np.testing.assert_allclose(a, c, atol=2 * env.hw.resets.tolerance_rad)  # close, not identical
    finally:
        env.close()


# -- reward from ArUco markers --------------------------------------------------------------------------
def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera pose in the base frame, OpenCV axes (x right, y down, z forward)."""
    eye = np.asarray(eye, dtype=float)
    z = np.asarray(target, dtype=float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack([x, np.cross(z, x), z])
    pose[:3, 3] = eye
    return pose


SIZE = (640, 480)
K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
BASE_FROM_CAMERA = look_at((1.1, 0.0, 0.8), (0.5, 0.05, 0.0))  # in front of the counter, looking down
MARKER = 0.06


def render_markers(poses: dict[int, np.ndarray], size=SIZE) -> np.ndarray:
    """A grey image with each marker (id -> 4x4 pose in the base frame) drawn where K would see it."""
    w, h = size
    image = np.full((h, w), 200, dtype=np.uint8)
    dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
    camera_from_base = np.linalg.inv(BASE_FROM_CAMERA)
    s = MARKER / 2
    for marker_id, pose in poses.items():
        tile = cv2.aruco.generateImageMarker(dictionary, marker_id, 120)
        tile = cv2.copyMakeBorder(tile, 20, 20, 20, 20, cv2.BORDER_CONSTANT, value=255)  # quiet zone
        corners = np.array([[-s, s, 0, 1], [s, s, 0, 1], [s, -s, 0, 1], [-s, -s, 0, 1]]).T
        cam = (camera_from_base @ pose @ corners)[:3]
        pixels = (K @ cam)[:2] / (K @ cam)[2]
        src = np.float32([[20, 20], [140, 20], [140, 140], [20, 140]])
        warp = cv2.getPerspectiveTransform(src, pixels.T.astype(np.float32))
        mask = cv2.warpPerspective(np.full_like(tile, 255), warp, (w, h)) > 0
        image[mask] = cv2.warpPerspective(tile, warp, (w, h))[mask]
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)


def marker_pose(xyz, yaw=0.0):
    c, s = np.cos(yaw), np.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    pose[:3, 3] = xyz
    return pose


@pytest.fixture
def calibration_file(tmp_path):
    path = tmp_path / "front.yaml"
    CameraCalibration(SIZE, K, np.zeros(5), BASE_FROM_CAMERA).save(path)
    return path


def test_aruco_tracker_recovers_marker_poses_in_the_base_frame(calibration_file):
    tracker = ArucoTracker(TrackerConfig(kind="aruco", calibration=str(calibration_file), marker_size_m=MARKER), CameraCalibration.load(calibration_file))
    truth = {0: marker_pose([0.45, -0.2, 0.13], yaw=0.4), 1: marker_pose([0.6, 0.3, 0.0])}
    found = tracker.detect(render_markers(truth))
    assert set(found) == {0, 1}
    for marker_id, pose in truth.items():
        np.testing.assert_allclose(found[marker_id][:3, 3], pose[:3, 3], atol=0.01)  # a 35 px marker at 1 m
        np.testing.assert_allclose(found[marker_id][:3, :3], pose[:3, :3], atol=0.05)
    q = quaternion_wxyz(truth[0][:3, :3])
    assert q == pytest.approx([np.cos(0.2), 0, 0, np.sin(0.2)], abs=1e-9)


@pytest.mark.parametrize("in_sink", [False, True])
def test_reward_and_success_come_from_the_tracked_kettle(tmp_path, calibration_file, in_sink):
    sink_marker = marker_pose([0.5, 0.5, 0.0])  # on the counter top beside the basin (centre y 0.3)
    # Kettle marker on the kettle's lid, 0.12 m above its base; in the basin the base is at -0.15.
    kettle_marker = marker_pose([0.5, 0.3, -0.15 + 0.12]) if in_sink else marker_pose([0.45, -0.2, 0.12])
    image_path = tmp_path / "markers.png"
    cv2.imwrite(str(image_path), cv2.cvtColor(render_markers({0: kettle_marker, 1: sink_marker}), cv2.COLOR_RGB2BGR))
    cfg = real_fake_config()
    cfg["privileged"] = True
    cfg["hardware"]["cameras"]["front"].update(replay=str(image_path), width=SIZE[0], height=SIZE[1])
    cfg["hardware"]["tracker"].update(
        kind="aruco", camera="front", calibration=str(calibration_file), marker_size_m=MARKER,
        kettle_origin_in_marker=[0, 0, -0.06], sink_centre_in_marker=[0, -0.2, -0.15],
    )
    env = build(cfg)
    try:
        obs, info = env.reset(seed=0)
        assert info["success_known"] and info["reward_source"] == "aruco"
        obs, reward, terminated, _truncated, info = env.step(np.zeros(8, dtype=np.float32))
        assert info["success_known"] and info["privileged_valid"]
        kettle_pos = obs["privileged"][:3]
        expected = kettle_marker[:3, 3] + [0, 0, -0.06]
        np.testing.assert_allclose(kettle_pos, expected, atol=0.01)
        np.testing.assert_allclose(obs["privileged"][10:13], [0.5, 0.3, -0.15], atol=0.01)
        assert info["success"] is in_sink and terminated is in_sink
        distance = np.linalg.norm(expected - np.array([0.5, 0.3, -0.15 + 0.06]))
        assert info["reward_terms"]["kettle_to_sink"] == pytest.approx(-distance, abs=0.01)
        assert reward == pytest.approx(sum(info["reward_terms"].values()))
    finally:
        env.close()


def test_tracker_config_errors_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_size: [320, 240]\ncamera_matrix: [[1, 0], [0, 1]]\n")
    with pytest.raises(ConfigError, match="missing 'dist_coeffs'"):
        CameraCalibration.load(bad)
    good = tmp_path / "good.yaml"
    CameraCalibration(SIZE, K, np.zeros(5), BASE_FROM_CAMERA).save(good)
    with pytest.raises(ConfigError, match="tracker.dictionary: 'DICT_NOPE'"):
        ArucoTracker(TrackerConfig(kind="aruco", calibration=str(good), dictionary="DICT_NOPE"), CameraCalibration.load(good))


# -- Hydra ---------------------------------------------------------------------------------------------------
def test_config_groups_swap_driver_camera_and_safety():
    cfg = real_fake_config("robot@env.hardware.driver=franka_sim", "camera@env.hardware.cameras.front=realsense", "safety@env.hardware.safety=conservative", virtual=False)
    hw = cfg["hardware"]
    assert hw["driver"]["kind"] == "franka" and hw["driver"]["host"] == "127.0.0.5"
    assert hw["driver"]["require_realtime_kernel"] is False
    assert hw["cameras"]["front"]["kind"] == "realsense" and hw["cameras"]["wrist"]["kind"] == "fake"
    assert hw["safety"]["velocity_fraction"] == 0.2
    from hardware.config import load_hardware_config

    assert load_hardware_config(load_env_config(cfg)).driver.relative_dynamics_factor == 0.15


def test_eval_runs_the_real_fake_env_from_the_command_line():
    cmd = [sys.executable, "-m", "robolearn.eval", "env=real_fake", "policy=random", "episodes=2", "progress=false",
           "env.episode_seconds=0.5", "env.hardware.loop.clock=virtual"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "success" in (result.stdout + result.stderr)


def test_realtime_priority_raises_the_loop_and_watchdog_threads_and_is_undone_on_close():
    import os

    cfg = real_fake_config(virtual=False)
    cfg["hardware"]["loop"]["realtime_priority"] = 5
    try:
        env = build(cfg)
    except ConfigError as exc:  # a machine without the permission: the error names the key
        assert "env.hardware.loop.realtime_priority" in str(exc) and "not permitted" in str(exc)
        return
    try:
        assert os.sched_getscheduler(0) == os.SCHED_FIFO and os.sched_getparam(0).sched_priority == 5
        watchdog = env.safety._thread
        assert os.sched_getparam(watchdog.native_id).sched_priority == 6  # preempts the loop
        camera = env.cameras["front"]._thread
        assert os.sched_getscheduler(camera.native_id) == os.SCHED_OTHER  # capture stays normal
    finally:
        env.close()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


# The hardware groups list their keys so Hydra overrides them by name; these must not drift from the schema.
YAML_DIFFERS_FROM_SCHEMA = {"camera/fake.yaml": {"width", "height"}, "resets/default.yaml": {"joint_noise_rad"}}


@pytest.mark.parametrize("path", ["robot/fake.yaml", "robot/franka.yaml", "robot/ur.yaml", "camera/fake.yaml", "camera/opencv.yaml",
                                  "camera/realsense.yaml", "safety/default.yaml", "resets/default.yaml"])
def test_group_yamls_restate_exactly_the_schema_defaults(path):
    from dataclasses import asdict

    from omegaconf import OmegaConf

    from hardware.config import CAMERA_CONFIGS, DRIVER_CONFIGS, ResetConfig, SafetyConfig, load_by_kind
    from robolearn.config import load_typed
    from tests.hardware_cases import CONFIGS

    node = OmegaConf.to_container(OmegaConf.load(CONFIGS / path))
    group = path.split("/")[0]
    if group in ("robot", "camera"):
        registry = DRIVER_CONFIGS if group == "robot" else CAMERA_CONFIGS
        typed = load_by_kind(registry, node, path, node["kind"])
    else:
        typed = load_typed(SafetyConfig if group == "safety" else ResetConfig, node, path)
    defaults = asdict(type(typed)())
    assert set(node) == set(defaults), "every schema key is listed, and no other"
    differs = {k for k in node if asdict(typed)[k] != defaults[k]}
    assert differs == YAML_DIFFERS_FROM_SCHEMA.get(path, set())


def test_a_driver_or_camera_kind_is_one_config_class_each_and_an_unknown_key_names_the_kind():
    from hardware.config import FrankaDriverConfig, RealSenseCameraConfig

    from hardware.config import load_hardware_config

    env = load_env_config(real_fake_config("robot@env.hardware.driver=franka", "camera@env.hardware.cameras.front=realsense", virtual=False))
    hw = load_hardware_config(env)
    assert isinstance(hw.driver, FrankaDriverConfig) and isinstance(hw.cameras["front"], RealSenseCameraConfig)
    with pytest.raises(ConfigError, match="env.hardware.driver.*initial_q.*FrankaDriverConfig"):
        load_hardware_config(load_env_config(with_hw("robot@env.hardware.driver=franka", **{"hardware.driver.initial_q": [0.0] * 7})))
    with pytest.raises(ConfigError, match="env.hardware.cameras.front.*source.*FakeCameraConfig"):
        load_hardware_config(load_env_config(with_hw(**{"hardware.cameras.front.source": "0"})))
