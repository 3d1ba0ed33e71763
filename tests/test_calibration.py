"""Calibration: intrinsics from ChArUco views, extrinsics from a ChArUco board or an ArUco marker at a
known pose, saved per setup and loaded by the tracker. Views are rendered with a known camera, so the
recovered numbers are checked against the truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hardware.config import TrackerConfig
from hardware.tracking.aruco import ArucoTracker
from hardware.tracking.calibration import (
    CalibrationError,
    CalibrationTarget,
    CameraCalibration,
    calibrate_intrinsics,
    calibration_path,
    extrinsics_from_target,
    intrinsics_from_device,
    pose_from_xyz_rpy,
)
from robolearn.config import ConfigError

SIZE = (640, 480)
K = np.array([[610.0, 0, 322.0], [0, 605.0, 236.0], [0, 0, 1]])
BOARD = CalibrationTarget(kind="charuco", squares_x=5, squares_y=7, square_m=0.04, marker_m=0.03)
PPM = 2000  # board image pixels per metre


def render_target(target: CalibrationTarget, camera_from_target: np.ndarray, K=K, size=SIZE) -> np.ndarray:
    """An RGB view of the target at `camera_from_target` through the pinhole K (no distortion)."""
    w, h = size
    if target.kind == "charuco":
        art = target.board().generateImage((target.squares_x * int(target.square_m * PPM), target.squares_y * int(target.square_m * PPM)), marginSize=0, borderBits=1)
        # board image pixel (u, v) is the target point ((u + 0.5) / PPM, (v + 0.5) / PPM, 0)
        S = np.array([[1 / PPM, 0, 0.5 / PPM], [0, 1 / PPM, 0.5 / PPM], [0, 0, 1]])
    else:
        side = 200
        tile = cv2.aruco.generateImageMarker(target.dictionary_object(), target.marker_id, side)
        art = cv2.copyMakeBorder(tile, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=255)
        m = target.marker_m / side  # metres per tile pixel; marker centre at tile pixel (140, 140)
        S = np.array([[m, 0, -140 * m], [0, -m, 140 * m], [0, 0, 1]])  # marker y points up in the image
    H = K @ np.column_stack([camera_from_target[:3, 0], camera_from_target[:3, 1], camera_from_target[:3, 3]]) @ S
    view = cv2.warpPerspective(art, H, (w, h), flags=cv2.INTER_LINEAR, borderValue=180)
    mask = cv2.warpPerspective(np.full_like(art, 255), H, (w, h)) > 0
    image = np.full((h, w), 180, dtype=np.uint8)
    image[mask] = view[mask]
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)


def views(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        pose = pose_from_xyz_rpy([rng.uniform(-0.12, -0.04), rng.uniform(-0.16, -0.08), rng.uniform(0.45, 0.6)],
                                 [rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35), rng.uniform(-0.3, 0.3)])
        out.append(render_target(BOARD, pose))
    return out


def test_charuco_intrinsics_recover_the_camera_matrix():
    size, K_found, dist, rms = calibrate_intrinsics(views(12), BOARD)
    assert size == SIZE and rms < 1.0
    np.testing.assert_allclose(K_found[[0, 1], [0, 1]], K[[0, 1], [0, 1]], rtol=0.02)
    np.testing.assert_allclose(K_found[:2, 2], K[:2, 2], atol=6.0)
    # Distortion is fitted too (truth: none): points across the covered field project within 2 px (0.3% of the width).
    grid = np.array([[x, y, 0.5] for x in np.linspace(-0.1, 0.12, 5) for y in np.linspace(-0.12, 0.1, 5)])
    found, _ = cv2.projectPoints(grid, np.zeros(3), np.zeros(3), K_found, dist)
    truth, _ = cv2.projectPoints(grid, np.zeros(3), np.zeros(3), K, np.zeros(5))
    assert np.max(np.linalg.norm(found - truth, axis=-1)) < 2.0


def test_too_few_board_views_fail_naming_the_count():
    blank = [np.full((480, 640, 3), 180, dtype=np.uint8)] * 6
    with pytest.raises(CalibrationError, match=r"found in 2 of 8 images; need at least 5"):
        calibrate_intrinsics(views(2) + blank, BOARD)


@pytest.mark.parametrize("kind", ["charuco", "aruco"])
def test_extrinsics_from_a_target_at_a_known_base_pose(kind, tmp_path):
    target = BOARD if kind == "charuco" else CalibrationTarget(kind="aruco", marker_m=0.1, marker_id=3)
    base_from_camera = pose_from_xyz_rpy([1.1, 0.05, 0.75], [-2.3, 0.0, 1.6])  # in front, looking down at the counter
    # Flat on the counter, printed side up: a ChArUco board's z axis points into the board (OpenCV's
    # convention), an ArUco marker's out of it.
    base_from_target = pose_from_xyz_rpy([0.45, 0.0, 0.0], [np.pi if kind == "charuco" else 0.0, 0, 0.2])
    camera_from_target = np.linalg.inv(base_from_camera) @ base_from_target
    assert camera_from_target[2, 3] > 0.3  # in front of the camera
    image = render_target(target, camera_from_target)
    found, summary = extrinsics_from_target([image, image], target, base_from_target, K, np.zeros(5))
    assert summary["views"] == 2 and summary["worst_rms_px"] < 1.0
    np.testing.assert_allclose(found[:3, 3], base_from_camera[:3, 3], atol=0.02)
    np.testing.assert_allclose(found[:3, :3], base_from_camera[:3, :3], atol=0.03)
    # Saved per setup, the tracker loads it and sees a marker where it is.
    path = calibration_path(tmp_path, "bench_1", "front")
    CameraCalibration(SIZE, K, np.zeros(5), found).save(path)
    assert path == tmp_path / "bench_1" / "front.yaml"
    tracker = ArucoTracker(TrackerConfig(kind="aruco", calibration=str(path), marker_size_m=0.1, kettle_marker_id=3), CameraCalibration.load(path))
    marker = CalibrationTarget(kind="aruco", marker_m=0.1, marker_id=3)
    kettle_in_base = pose_from_xyz_rpy([0.5, -0.1, 0.1], [0, 0, 0.5])
    poses = tracker.detect(render_target(marker, np.linalg.inv(base_from_camera) @ kettle_in_base))
    np.testing.assert_allclose(poses[3][:3, 3], kettle_in_base[:3, 3], atol=0.03)


def test_target_not_in_view_and_bad_targets_are_named():
    blank = np.full((480, 640, 3), 180, dtype=np.uint8)
    with pytest.raises(CalibrationError, match="found in 0 of 1 images"):
        extrinsics_from_target([blank], BOARD, np.eye(4), K, np.zeros(5))
    with pytest.raises(ConfigError, match="calibrate.target.marker_m"):
        CalibrationTarget(kind="charuco", square_m=0.04, marker_m=0.05)
    with pytest.raises(ConfigError, match="calibrate.target.dictionary"):
        CalibrationTarget(dictionary="DICT_NOPE")
    with pytest.raises(ConfigError, match="calibrate.setup"):
        calibration_path("calibration", "../etc", "front")


def test_realsense_intrinsics_become_a_camera_matrix():
    size, K_dev, dist = intrinsics_from_device({"width": 640, "height": 480, "fx": 615.2, "fy": 614.8, "ppx": 321.5, "ppy": 238.9,
                                                "model": "distortion.inverse_brown_conrady", "coeffs": [0, 0, 0, 0, 0]})
    assert size == (640, 480) and K_dev[0, 0] == 615.2 and K_dev[1, 2] == 238.9 and not dist.any()
    with pytest.raises(CalibrationError, match="not OpenCV's"):
        intrinsics_from_device({"width": 640, "height": 480, "fx": 1, "fy": 1, "ppx": 1, "ppy": 1, "model": "distortion.ftheta", "coeffs": [0.1, 0, 0, 0, 0]})


def test_the_calibrate_command_writes_a_setup_file_from_image_folders(tmp_path):
    from hydra import compose, initialize_config_dir

    from hardware.calibrate import run
    from robolearn.paths import CONFIG_DIR

    board_views, static = tmp_path / "views", tmp_path / "static"
    board_views.mkdir()
    static.mkdir()
    for i, image in enumerate(views(12)):
        cv2.imwrite(str(board_views / f"{i:02d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    base_from_camera = pose_from_xyz_rpy([1.1, 0.05, 0.75], [-2.3, 0.0, 1.6])
    base_from_board = pose_from_xyz_rpy([0.45, 0.0, 0.0], [np.pi, 0, 0.2])
    cv2.imwrite(str(static / "0.png"), cv2.cvtColor(render_target(BOARD, np.linalg.inv(base_from_camera) @ base_from_board), cv2.COLOR_RGB2BGR))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="calibrate", overrides=[
            "setup=bench_1", f"calibration_dir={tmp_path / 'calibration'}", f"images={board_views}", f"extrinsics_images={static}",
            "target_pose.xyz=[0.45,0.0,0.0]", f"target_pose.rpy=[{np.pi},0.0,0.2]"])
    result = run(cfg, say=lambda m: None)
    saved = CameraCalibration.load(tmp_path / "calibration" / "bench_1" / "front.yaml")
    assert result["intrinsics"]["views"] == 12 and result["extrinsics"]["views"] == 1
    assert saved.image_size == SIZE
    np.testing.assert_allclose(saved.camera_matrix[0, 0], K[0, 0], rtol=0.02)
    np.testing.assert_allclose(saved.base_from_camera[:3, 3], base_from_camera[:3, 3], atol=0.03)


def test_the_calibrate_command_takes_the_camera_name_from_the_command_line():
    from hydra import compose, initialize_config_dir

    from robolearn.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="calibrate", overrides=["setup=bench_1", "camera_name=wrist"])  # `camera=` is the kinds group
    assert cfg.camera_name == "wrist" and "wrist" in cfg.env.hardware.cameras


def test_the_calibrate_command_refuses_a_wrong_key_or_value_at_start_up_naming_it(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from hardware.calibrate import run
    from robolearn.paths import CONFIG_DIR

    def config(*overrides):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name="calibrate", overrides=["setup=bench", f"calibration_dir={tmp_path}", *overrides])

    with pytest.raises(ConfigCompositionException, match="intrinsic"):
        config("intrinsic=device")
    for override, named in [("intrinsics=guess", "intrinsics: 'guess'"), ("target_pose.xyz=[0.1,0.2]", "target_pose.xyz"),
                            ("views=0", "views"), ("camera_name=side", "camera_name: 'side'")]:
        with pytest.raises(ConfigError, match=named):
            run(config(override))
    assert not any(tmp_path.iterdir())  # nothing was written
