"""`python -m hardware.align_camera`: the sim's camera at a bench's calibrated pose, beside and blended over a
real frame, so the user sees whether the sim now looks from where the real camera does.

    python -m hardware.align_camera calibration=calibration/bench_1/front.yaml image=shots/front.png
    python -m hardware.align_camera calibration=calibration/bench_1/front.yaml camera@device=realsense device.serial=123456789012

Writes <out_dir>/side_by_side.png (real | sim), <out_dir>/blend.png and <out_dir>/overrides.txt (the Hydra
overrides and a configs/env YAML snippet that put the sim camera there without the file), and prints them.
The sim is built through its factory named in the env config (robolearn.envs.make_env): hardware never
imports sim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import MISSING, DictConfig, OmegaConf

from hardware.cameras import CameraError, make_camera
from hardware.config import CAMERA_CONFIGS, load_by_kind, load_command_config
from hardware.timing import MonotonicClock
from robolearn.camera_calibration import SimCamera, learning_crop, read_calibration, sim_camera
from robolearn.config import ConfigError, check, load_env_config, register_schema
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR
from robolearn.process import exits

RESOLUTIONS = ("frame", "learning")


@dataclass
class AlignCameraConfig:
    env: Any = None  # the sim env whose camera is rendered (env=kettle_sink): its other keys are kept
    camera_name: str = "front"  # a camera under env.cameras
    calibration: str = MISSING  # a file `python -m hardware.calibrate` wrote
    image: str = ""  # a real frame (png/jpg); empty: one frame from `device`
    device: Any = None  # a camera config (configs/camera: camera@device=realsense device.serial=...)
    resolution: str = "frame"  # frame: compare at the real frame's size | learning: at the env camera's (84x84)
    alpha: float = 0.5  # the sim's share of the blend
    out_dir: str = "outputs/align_camera"

    def __post_init__(self) -> None:
        check(self.resolution in RESOLUTIONS, "resolution", self.resolution, f"one of {list(RESOLUTIONS)}")
        check(0.0 <= self.alpha <= 1.0, "alpha", self.alpha, "in [0, 1]")


register_schema("align_camera_schema", AlignCameraConfig)


def read_frame(cfg: AlignCameraConfig) -> np.ndarray:
    """The real frame, RGB: from the image file, else one from the configured camera device."""
    import cv2

    if cfg.image:
        bgr = cv2.imread(cfg.image) if Path(cfg.image).is_file() else None
        if bgr is None:
            raise ConfigError(f"invalid value for image: {cfg.image!r} (not a readable image file)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if not cfg.device:
        raise ConfigError("invalid value for image: '' (give image=<png> or a camera: camera@device=realsense|opencv|fake)")
    device = load_by_kind(CAMERA_CONFIGS, cfg.device, "device", "fake")
    camera = make_camera(cfg.camera_name, device, MonotonicClock())
    camera.start()
    try:
        return camera.wait_first_frame(max(2.0, device.timeout_s)).image.copy()
    finally:
        camera.stop()


def sim_env_config(env: Any, camera_name: str, calibration: str, width: int, height: int) -> tuple[dict, int]:
    """The env config that renders only `camera_name`, at width x height, placed by the calibration file, on the
    nominal scene; and the camera's index in the user's env.cameras (for the overrides)."""
    node = OmegaConf.to_container(env, resolve=True) if isinstance(env, DictConfig) else dict(env or {})
    names = [c.name for c in load_env_config(node).cameras]
    if camera_name not in names:
        raise ConfigError(f"invalid value for camera_name: {camera_name!r} (env.cameras has {names})")
    index = names.index(camera_name)
    cam = dict(node.get("cameras", [{}] * len(names))[index] or {})
    cam.update(name=camera_name, width=width, height=height, calibration=calibration)
    node["cameras"] = [cam]
    node["randomization"] = {**(node.get("randomization") or {}), "enabled": False}
    return node, index


def render_sim(env_node: dict, camera_name: str) -> np.ndarray:
    env = make_env(env_node)
    try:
        obs, _ = env.reset(seed=0)
        return np.asarray(obs[camera_name])
    finally:
        env.close()


def compose_images(real: np.ndarray, sim: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(real | sim side by side, the sim blended over the real frame)."""
    blend = np.clip(alpha * sim.astype(np.float32) + (1.0 - alpha) * real.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    return np.concatenate([real, sim], axis=1), blend


def yaml_snippet(camera: SimCamera, name: str) -> str:
    """A configs/env entry for the camera (the list replaces env.cameras: keep the other cameras in it)."""
    entry = {"name": name, "pos": [round(float(v), 6) for v in camera.pos], "quat": [round(float(v), 6) for v in camera.quat],
             "fovy": round(camera.fovy, 4)}
    return OmegaConf.to_yaml(OmegaConf.create({"cameras": [entry]}))


def run(cfg: AlignCameraConfig | DictConfig, say=print) -> dict:
    import cv2

    cfg = load_command_config(AlignCameraConfig, cfg, "align_camera")
    calibration = read_calibration(cfg.calibration, key="calibration")
    real = read_frame(cfg)
    h, w = real.shape[:2]
    cw, ch = calibration.image_size
    if abs(w / h - cw / ch) > 0.01:
        raise ConfigError(f"invalid value for calibration: {cfg.calibration!r} (made at {cw}x{ch}, the frame is {w}x{h}: another aspect ratio)")
    env_cfg = load_env_config(OmegaConf.to_container(cfg.env, resolve=True) if isinstance(cfg.env, DictConfig) else (cfg.env or {}))
    if cfg.resolution == "learning":
        learning = next((c for c in env_cfg.cameras if c.name == cfg.camera_name), None)
        if learning is not None:
            w, h = learning.width, learning.height
            # As the real env makes its observations: the centred crop to the learning aspect, then the resize.
            x0, y0, crop_w, crop_h = learning_crop(real.shape[1], real.shape[0], w, h)
            real = cv2.resize(real[y0 : y0 + crop_h, x0 : x0 + crop_w], (w, h), interpolation=cv2.INTER_AREA)
    node, index = sim_env_config(cfg.env, cfg.camera_name, cfg.calibration, w, h)
    sim = render_sim(node, cfg.camera_name)
    # The overrides are for training: the field of view of the learning image (the env camera's own size).
    learning_size = next(((c.width, c.height) for c in env_cfg.cameras if c.name == cfg.camera_name), (w, h))
    camera = sim_camera(calibration, *learning_size)
    side_by_side, blend = compose_images(real, sim, cfg.alpha)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out / "side_by_side.png"), cv2.cvtColor(side_by_side, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out / "blend.png"), cv2.cvtColor(blend, cv2.COLOR_RGB2BGR))
    overrides = camera.overrides(index)
    snippet = yaml_snippet(camera, cfg.camera_name)
    (out / "overrides.txt").write_text(" ".join(overrides) + "\n\n# or in configs/env/<yours>.yaml (the list replaces env.cameras):\n" + snippet)
    for line in camera.mismatch:
        say(f"the sim cannot match: {line}")
    return {
        "camera": cfg.camera_name,
        "index": index,  # in env.cameras
        "size": [w, h],
        "pos": np.round(camera.pos, 5).tolist(),
        "quat": np.round(camera.quat, 6).tolist(),
        "fovy": round(camera.fovy, 4),
        "mismatch": camera.mismatch,
        "overrides": overrides,
        "files": [str(out / "side_by_side.png"), str(out / "blend.png"), str(out / "overrides.txt")],
    }


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="align_camera")
@exits.reported("align_camera", known=(CameraError,))
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    print(f"wrote {', '.join(result['files'])}")
    print("train on this viewpoint with: " + " ".join(result["overrides"]) + f"  (or env.cameras.{result['index']}.calibration={cfg.calibration})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
