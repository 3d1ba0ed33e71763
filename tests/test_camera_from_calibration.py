"""The sim's cameras from a bench's calibration file (robolearn.camera_calibration, sim.scene.place_cameras):
a view rendered in the sim from a known pose goes through `python -m hardware.calibrate`'s path, and the
file it writes puts the sim camera back at that pose."""

from __future__ import annotations

import logging
import math
import re

import sim  # noqa: F401, I001  (first: triton's LLVM before Mesa's, see robolearn/process/llvm_order.py)
import cv2
import mujoco
import numpy as np
import pytest
from dm_control import mjcf

from hardware.tracking.calibration import CalibrationTarget, CameraCalibration, pose_from_xyz_rpy
from robolearn.camera_calibration import (
    CalibrationFile,
    load_sim_camera,
    quat_from_matrix,
    read_calibration,
    sim_camera,
    write_calibration,
)
from robolearn.config import ConfigError, load_env_config
from sim.scene import build_mjcf

W, H = 640, 480  # the rendered "real" frames: enough pixels for the board's corners
BOARD = CalibrationTarget(kind="charuco", squares_x=5, squares_y=7, square_m=0.06, marker_m=0.045)
BOARD_SIZE = (BOARD.squares_x * BOARD.square_m, BOARD.squares_y * BOARD.square_m)
# The board stands on the counter facing the `front` camera: x (its columns) along the base's +y, z (into the
# board) away from the camera. Given as `python -m hardware.calibrate`'s target_pose (origin at the first
# square's outer corner).
BOARD_RPY = [-2.3, 0.0, math.pi / 2]
BOARD_CENTRE = np.array([0.75, 0.04, 0.32])
_R = pose_from_xyz_rpy([0, 0, 0], BOARD_RPY)[:3, :3]
BOARD_XYZ = (BOARD_CENTRE - _R @ [BOARD_SIZE[0] / 2, BOARD_SIZE[1] / 2, 0.0]).tolist()
FLIP_YZ = np.diag([1.0, -1.0, -1.0])  # OpenCV camera / board axes <-> MuJoCo camera / plane axes


def angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(Ra.T @ Rb) - 1.0) / 2.0, -1.0, 1.0)))


def compiled(env_cfg, board: bool = False) -> mujoco.MjModel:
    root = build_mjcf(env_cfg)
    if board:
        # The board image as a texture on a plane: the texture's top-left is the plane's (-x, +y) corner and its
        # rows run along -y, so the plane's axes are the board's with y and z flipped.
        art = BOARD.board().generateImage((500, 700), marginSize=0, borderBits=1)
        root.asset.add("texture", name="calib_board", type="2d", file=mjcf.Asset(cv2.imencode(".png", art)[1].tobytes(), ".png"))
        root.asset.add("material", name="calib_board", texture="calib_board")
        root.worldbody.add("geom", name="calib_board", type="plane", size=[BOARD_SIZE[0] / 2, BOARD_SIZE[1] / 2, 0.01],
                           pos=BOARD_CENTRE.tolist(), quat=quat_from_matrix(_R @ FLIP_YZ).tolist(), material="calib_board",
                           contype=0, conaffinity=0)
    return mujoco.MjModel.from_xml_string(root.to_xml_string(), root.get_assets())


def camera_pose(model: mujoco.MjModel, name: str = "front") -> tuple[np.ndarray, float]:
    """(base_from_camera in OpenCV axes, fovy) of a compiled camera (the robot base is the world origin)."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
    T = np.eye(4)
    T[:3, :3] = data.cam_xmat[cid].reshape(3, 3) @ FLIP_YZ
    T[:3, 3] = data.cam_xpos[cid]
    return T, float(model.cam_fovy[cid])


def render(model: mujoco.MjModel, name: str = "front", size=(W, H)) -> np.ndarray:
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, size[1], size[0])
    try:
        renderer.update_scene(data, camera=name)
        return renderer.render().copy()
    finally:
        renderer.close()


def pinhole(fovy_deg: float, size=(W, H)) -> np.ndarray:
    """The camera matrix of MuJoCo's camera: square pixels, principal point at the image centre."""
    f = size[1] / 2.0 / math.tan(math.radians(fovy_deg) / 2.0)
    return np.array([[f, 0.0, (size[0] - 1) / 2.0], [0.0, f, (size[1] - 1) / 2.0], [0.0, 0.0, 1.0]])


def offset_front_config(shift_m: float = 0.04, turn_deg: float = 3.0) -> tuple[dict, np.ndarray]:
    """An env config whose `front` camera is moved `shift_m` and turned `turn_deg` from the default, and the
    resulting base_from_camera."""
    default, _ = camera_pose(compiled(load_env_config({})))
    direction = np.array([0.5, -0.7, 0.5]) / np.linalg.norm([0.5, -0.7, 0.5])
    axis = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
    turn = cv2.Rodrigues(axis * math.radians(turn_deg))[0]
    R_mujoco = default[:3, :3] @ FLIP_YZ @ turn
    pos = default[:3, 3] + shift_m * direction
    cam = {"name": "front", "width": W, "height": H, "pos": pos.tolist(), "quat": quat_from_matrix(R_mujoco).tolist()}
    return {"cameras": [cam]}, default


@pytest.fixture(scope="module")
def offset_view():
    """(image, true base_from_camera, fovy) of the board seen by `front` moved 4 cm and turned 3 degrees."""
    env, default = offset_front_config()
    model = compiled(load_env_config(env), board=True)
    truth, fovy = camera_pose(model)
    assert np.linalg.norm(truth[:3, 3] - default[:3, 3]) == pytest.approx(0.04, abs=1e-6)
    assert angle_deg(truth[:3, :3], default[:3, :3]) == pytest.approx(3.0, abs=1e-3)
    return render(model), truth, fovy


@pytest.mark.parametrize("source", ["images", "fake_camera"])
def test_a_view_from_a_known_offset_pose_is_recovered_by_the_calibration_path(source, offset_view, tmp_path):
    from hydra import compose, initialize_config_dir

    from hardware.calibrate import run
    from robolearn.paths import CONFIG_DIR

    image, truth, fovy = offset_view
    # Intrinsics from the sim camera's field of view (the bench would calibrate them from board views).
    intrinsics = tmp_path / "intrinsics.yaml"
    CameraCalibration((W, H), pinhole(fovy), np.zeros(5), np.eye(4)).save(intrinsics)
    overrides = ["setup=sim_bench", f"calibration_dir={tmp_path / 'calibration'}", "intrinsics=file", f"intrinsics_file={intrinsics}",
                 "target.square_m=0.06", "target.marker_m=0.045", f"target_pose.xyz=[{','.join(map(str, BOARD_XYZ))}]",
                 f"target_pose.rpy=[{','.join(map(str, BOARD_RPY))}]"]
    if source == "images":
        (tmp_path / "static").mkdir()
        cv2.imwrite(str(tmp_path / "static" / "0.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        overrides.append(f"extrinsics_images={tmp_path / 'static'}")
    else:  # the real env's fake camera replaying the render (lossless), captured live as on a bench
        video = tmp_path / "front.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 30, (W, H))
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        writer.release()
        overrides += [f"env.hardware.cameras.front.replay={video}", f"env.hardware.cameras.front.width={W}",
                      f"env.hardware.cameras.front.height={H}", "extrinsics_views=2"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="calibrate", overrides=overrides)
    result = run(cfg, say=lambda m: None)
    found = read_calibration(result["file"], key="calibration")
    assert np.linalg.norm(found.base_from_camera[:3, 3] - truth[:3, 3]) < 0.01
    assert angle_deg(found.base_from_camera[:3, :3], truth[:3, :3]) < 1.0

    # Read back into the sim, the file puts `front` where it was, with its field of view.
    back = compiled(load_env_config({"cameras": [{"name": "front", "width": W, "height": H, "calibration": result["file"]}]}))
    placed, placed_fovy = camera_pose(back)
    assert np.linalg.norm(placed[:3, 3] - truth[:3, 3]) < 0.01
    assert angle_deg(placed[:3, :3], truth[:3, :3]) < 1.0
    np.testing.assert_allclose(placed, found.base_from_camera, atol=1e-6)  # the file's pose exactly, no convention slip
    assert placed_fovy == pytest.approx(fovy, abs=1e-6)


def test_the_reader_and_hardwares_writer_agree_on_the_file(tmp_path):
    K = np.array([[612.0, 0, 318.5], [0, 611.0, 241.0], [0, 0, 1]])
    T = pose_from_xyz_rpy([1.1, 0.05, 0.75], [-2.3, 0.0, 1.6])
    CameraCalibration((640, 480), K, np.array([0.1, -0.2, 0.0, 0.0, 0.05]), T).save(tmp_path / "hw.yaml")
    read = read_calibration(tmp_path / "hw.yaml", key="k")
    assert read.image_size == (640, 480)
    np.testing.assert_array_equal(read.camera_matrix, K)
    np.testing.assert_array_equal(read.base_from_camera, T)
    np.testing.assert_array_equal(read.dist_coeffs, [0.1, -0.2, 0.0, 0.0, 0.05])
    half = K * [[0.5], [0.5], [1.0]]
    write_calibration(tmp_path / "core.yaml", CalibrationFile((320, 240), half, np.zeros(4), np.eye(4)))
    loaded = CameraCalibration.load(tmp_path / "core.yaml")
    assert loaded.image_size == (320, 240) and loaded.dist_coeffs.shape == (4,)
    np.testing.assert_array_equal(loaded.camera_matrix, half)
    np.testing.assert_array_equal(loaded.for_image(160, 120), K * [[0.25], [0.25], [1.0]])


def test_opencv_axes_become_mujocos_and_the_field_of_view_is_the_learning_images():
    # A camera 1 m in front of the base at 0.5 m height, looking back along -x, level: OpenCV's x (right) is
    # the base's +y, its y (down) the base's -z.
    T = np.eye(4)
    T[:3, :3] = np.column_stack([[0, 1, 0], [0, 0, -1], [-1, 0, 0]])
    T[:3, 3] = [1.0, 0.0, 0.5]
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    cam = sim_camera(CalibrationFile((640, 480), K, np.zeros(5), T), 640, 480)
    R = np.zeros((3, 3))
    mujoco.mju_quat2Mat(R.ravel(), cam.quat)
    np.testing.assert_allclose(R[:, 2], [1, 0, 0], atol=1e-12)  # MuJoCo looks along -z: -z is the view direction -x
    np.testing.assert_allclose(R[:, 1], [0, 0, 1], atol=1e-12)  # y up
    np.testing.assert_allclose(cam.pos, [1.0, 0.0, 0.5])
    assert cam.fovy == pytest.approx(math.degrees(2 * math.atan(240 / 500)))
    assert cam.mismatch == []
    # The learning image is the frame's centred square resized (hardware/env.py): the vertical field of view
    # stays and the pixels stay square, as the sim's are.
    small = sim_camera(CalibrationFile((640, 480), K, np.zeros(5), T), 84, 84)
    assert small.fovy == pytest.approx(cam.fovy)
    assert small.mismatch == []
    assert small.overrides(0)[0] == "env.cameras.0.pos=[1,0,0.5]"


def test_what_the_sim_cannot_reproduce_is_warned_in_one_line(tmp_path, caplog):
    K = np.array([[500.0, 0, 360.0], [0, 500.0, 239.5], [0, 0, 1]])  # principal point 40 px right of centre
    path = tmp_path / "front.yaml"
    write_calibration(path, CalibrationFile((640, 480), K, np.array([0.0, 0.0, 0.0, 0.0, 0.0]), np.eye(4)))
    with caplog.at_level(logging.WARNING):
        load_sim_camera(path, 640, 480, key="env.cameras.front.calibration")
    (record,) = caplog.records
    assert "\n" not in record.getMessage() and "principal point off-centre by (+40.5, +0.0) px" in record.getMessage()
    caplog.clear()
    write_calibration(path, CalibrationFile((640, 480), K, np.array([-0.3, 0.1, 0.0, 0.0, 0.0]), np.eye(4)))
    with caplog.at_level(logging.WARNING):
        camera = load_sim_camera(path, 640, 480, key="env.cameras.front.calibration")
    assert any("lens distortion" in m for m in camera.mismatch) and len(caplog.records) == 1
    caplog.clear()
    K[0, 2] = 319.5
    write_calibration(path, CalibrationFile((640, 480), K, np.zeros(5), np.eye(4)))
    with caplog.at_level(logging.WARNING):
        load_sim_camera(path, 640, 480, key="env.cameras.front.calibration")
    assert not caplog.records


def test_place_cameras_takes_pose_and_field_of_view_from_the_calibration(tmp_path):
    T = pose_from_xyz_rpy([1.0, -0.2, 0.6], [-2.2, 0.05, 1.5])
    K = np.array([[420.0, 0, 319.5], [0, 420.0, 239.5], [0, 0, 1]])
    path = tmp_path / "front.yaml"
    CameraCalibration((640, 480), K, np.zeros(5), T).save(path)
    # The file wins over the pose keys it replaces.
    env = load_env_config({"cameras": [{"name": "front", "pos": [0.1, 0.1, 0.1], "look_at": [0, 0, 0], "fovy": 30.0, "calibration": str(path)}]})
    placed, fovy = camera_pose(compiled(env))
    np.testing.assert_allclose(placed, T, atol=1e-6)
    assert fovy == pytest.approx(math.degrees(2 * math.atan(240 / 420)))


@pytest.mark.parametrize("content, named", [
    (None, "file not found"),
    ("image_size: [640, 480]\ncamera_matrix: [[500, 0, 320], [0, 500, 240], [0, 0, 1]]\ndist_coeffs: [0, 0, 0, 0, 0]\n", "missing 'base_from_camera'"),
    ("image_size: [640, 480]\ncamera_matrix: [[500, 0, 320], [0, 500, 240], [0, 0, 1]]\ndist_coeffs: []\nbase_from_camera: [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]\n",
     "base_from_camera must be a 4x4 rigid transform"),
    ("[1, 2", "not readable YAML"),
])
def test_a_bad_or_missing_file_is_a_config_error_naming_the_key(content, named, tmp_path):
    path = tmp_path / "front.yaml"
    if content is not None:
        path.write_text(content)
    env = load_env_config({"cameras": [{"name": "front", "calibration": str(path)}]})
    with pytest.raises(ConfigError, match=rf"env\.cameras\.front\.calibration: '{path}' \({named}"):
        build_mjcf(env)


def test_a_wrist_camera_calibration_names_what_is_missing(tmp_path):
    path = tmp_path / "wrist.yaml"
    CameraCalibration((640, 480), np.array([[500.0, 0, 319.5], [0, 500, 239.5], [0, 0, 1]]), np.zeros(5), np.eye(4)).save(path)
    env = load_env_config({"cameras": [{"name": "wrist", "calibration": str(path)}]})
    with pytest.raises(ConfigError, match=r"env\.cameras\.wrist\.calibration.*hand_from_camera"):
        build_mjcf(env)


# -- the overlay command -----------------------------------------------------------------------------------


def align_config(*overrides):
    from hydra import compose, initialize_config_dir

    import hardware.align_camera  # noqa: F401  (registers the schema)
    from robolearn.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="align_camera", overrides=list(overrides))


def env_frame(env: dict) -> np.ndarray:
    from robolearn.envs import make_env

    sim_env = make_env({**env, "randomization": {"enabled": False}})
    try:
        return sim_env.reset(seed=0)[0]["front"]
    finally:
        sim_env.close()


def test_the_overlay_renders_the_sim_camera_at_the_calibrated_pose_and_writes_the_overrides(tmp_path):
    from hardware.align_camera import run

    # The "real" frame: the nominal scene seen from the offset pose. Its calibration: that pose, the sim's pinhole.
    env, _ = offset_front_config()
    real = env_frame(env)
    truth, fovy = camera_pose(compiled(load_env_config(env)))
    cv2.imwrite(str(tmp_path / "real.png"), cv2.cvtColor(real, cv2.COLOR_RGB2BGR))
    CameraCalibration((W, H), pinhole(fovy), np.zeros(5), truth).save(tmp_path / "front.yaml")
    # The scene the "real" frame was rendered in (the schema's: with the room), as a user training for transfer has.
    result = run(align_config("env=kettle_sink_transfer", f"calibration={tmp_path / 'front.yaml'}", f"image={tmp_path / 'real.png'}",
                              f"out_dir={tmp_path / 'out'}"), say=lambda m: None)

    side_by_side = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "side_by_side.png")), cv2.COLOR_BGR2RGB)
    blend = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "blend.png")), cv2.COLOR_BGR2RGB)
    assert side_by_side.shape == (H, 2 * W, 3) and blend.shape == (H, W, 3) and result["size"] == [W, H]
    np.testing.assert_array_equal(side_by_side[:, :W], real)
    aligned = np.abs(side_by_side[:, W:].astype(int) - real).mean()
    default_view = env_frame({"cameras": [{"name": "front", "width": W, "height": H}]})
    misaligned = np.abs(default_view.astype(int) - real).mean()
    assert aligned < 0.5 and misaligned > 5 * max(aligned, 1.0)
    np.testing.assert_allclose(blend, (real.astype(float) + side_by_side[:, W:]) / 2, atol=1.0)

    # The printed overrides put the default config's camera there without the file (at the learning image's size).
    assert (tmp_path / "out" / "overrides.txt").read_text().startswith(" ".join(result["overrides"]))
    placed, placed_fovy = camera_pose(compiled(load_env_config(align_config("calibration=x", *result["overrides"]).env)))
    np.testing.assert_allclose(placed, truth, atol=2e-5)
    assert placed_fovy == pytest.approx(fovy, abs=1e-3)


@pytest.mark.parametrize("changes, named", [
    ({"calibration": "nowhere.yaml"}, "calibration: 'nowhere.yaml' (file not found)"),
    ({"image": "nowhere.png"}, "image: 'nowhere.png' (not a readable image file)"),
    ({"image": ""}, "give image=<png> or a camera"),
    ({"camera_name": "side"}, "camera_name: 'side'"),
    ({"resolution": "huge"}, "resolution: 'huge'"),
    ({"image": "tall.png"}, "made at 640x480, the frame is 480x640: another aspect ratio"),
])
def test_the_overlay_refuses_bad_input_naming_it(changes, named, tmp_path, monkeypatch):
    from hardware.align_camera import run

    monkeypatch.chdir(tmp_path)
    CameraCalibration((W, H), pinhole(50.0), np.zeros(5), np.eye(4)).save("front.yaml")
    cv2.imwrite("real.png", np.zeros((H, W, 3), np.uint8))
    cv2.imwrite("tall.png", np.zeros((W, H, 3), np.uint8))
    keys = {"calibration": "front.yaml", "image": "real.png", "out_dir": "out", **changes}
    with pytest.raises(ConfigError, match=re.escape(named)):
        run(align_config(*[f"{k}={v}" for k, v in keys.items()]), say=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_a_4_by_3_frame_is_cropped_to_the_learning_aspect_and_its_camera_matrix_follows():
    import cv2

    from robolearn.camera_calibration import learning_crop, scaled_camera_matrix

    assert learning_crop(640, 480, 84, 84) == (80, 0, 480, 480)
    assert learning_crop(480, 640, 84, 84) == (0, 80, 480, 480)
    assert learning_crop(640, 480, 64, 48) == (0, 0, 640, 480)
    K = np.array([[600.0, 0, 330.0], [0, 600.0, 235.0], [0, 0, 1]])
    K84 = scaled_camera_matrix(K, (640, 480), 84, 84)
    assert K84[0, 0] == pytest.approx(K84[1, 1])  # square pixels, as the sim's
    # A bright dot where a 3-D point projects in the full frame lands, after the real env's crop and resize,
    # where the scaled matrix projects it.
    point = np.array([0.05, -0.03, 0.6])
    u, v, _ = K @ point / point[2]
    frame = np.zeros((480, 640, 3), np.uint8)
    cv2.circle(frame, (round(u), round(v)), 12, (255, 255, 255), -1)
    x0, y0, cw, ch = learning_crop(640, 480, 84, 84)
    small = cv2.resize(frame[y0 : y0 + ch, x0 : x0 + cw], (84, 84), interpolation=cv2.INTER_AREA).astype(float)[..., 0]
    rows, cols = np.indices(small.shape)
    centroid = np.array([(small * cols).sum(), (small * rows).sum()]) / small.sum()
    expected = (K84 @ point / point[2])[:2]
    assert np.abs(centroid - expected).max() < 0.6
