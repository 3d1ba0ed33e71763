"""The environment contract: observation and action spaces, action scaling, action validation.

`EnvSpec.from_config` needs only the config, so a learner on another machine can build its networks
without connecting to a robot. The sim and the real-robot env both build their spaces from it and scale
actions through it, so a policy trained in sim emits the same numbers to the real arm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from robolearn.config import ControlMode, EnvConfig, load_env_config
from robolearn.robots import RobotDescription, get_robot

PRIVILEGED_LAYOUT = (("kettle_pos", 3), ("kettle_quat", 4), ("handle_pos", 3), ("sink_pos", 3))
PRIVILEGED_DIM = sum(n for _, n in PRIVILEGED_LAYOUT)


class InvalidActionError(ValueError):
    """An action that is non-finite or wrongly shaped. Nothing was sent to the arm or the physics."""


@dataclass(frozen=True)
class EnvSpec:
    robot: RobotDescription
    control_mode: ControlMode
    control_hz: float
    cameras: tuple[tuple[str, int, int], ...]  # (name, height, width)
    privileged: bool
    command_limits: np.ndarray  # per joint: rad/s or N·m that an action of 1.0 means

    @classmethod
    def from_config(cls, cfg: EnvConfig | dict | None = None) -> EnvSpec:
        cfg = load_env_config(cfg)
        robot = get_robot(cfg.robot)
        if cfg.control_mode is ControlMode.joint_velocity:
            limits = robot.dq_max * cfg.velocity_limit_fraction
        else:
            limits = robot.tau_max * cfg.torque_limit_fraction
        limits = np.array(limits, dtype=np.float64)
        limits.setflags(write=False)
        return cls(
            robot=robot,
            control_mode=cfg.control_mode,
            control_hz=cfg.control_hz,
            cameras=tuple((c.name, c.height, c.width) for c in cfg.cameras),
            privileged=cfg.privileged,
            command_limits=limits,
        )

    @property
    def n_joints(self) -> int:
        return self.robot.n_joints

    @property
    def action_dim(self) -> int:
        return self.n_joints + 1  # joints + gripper

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.cameras)

    @property
    def command_unit(self) -> str:
        return "rad/s" if self.control_mode is ControlMode.joint_velocity else "N·m"

    def observation_space(self) -> spaces.Dict:
        items: dict[str, spaces.Space] = {}
        for name, h, w in self.cameras:
            items[name] = spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8)
        n = self.n_joints
        items["joint_pos"] = spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)
        items["joint_vel"] = spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)
        # Finger opening, both fingers together, in metres.
        items["gripper"] = spaces.Box(0.0, self.robot.gripper_max_width, shape=(1,), dtype=np.float32)
        if self.privileged:
            items["privileged"] = spaces.Box(-np.inf, np.inf, shape=(PRIVILEGED_DIM,), dtype=np.float32)
        return spaces.Dict(items)

    def action_space(self) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, shape=(self.action_dim,), dtype=np.float32)

    def check_action(self, action) -> np.ndarray:
        """Return the action as float64 clipped to [-1, 1], or raise InvalidActionError."""
        try:
            arr = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidActionError(f"action is not numeric: {exc}") from None
        if arr.shape != (self.action_dim,):
            raise InvalidActionError(
                f"action has shape {arr.shape}, expected ({self.action_dim},): "
                f"{self.n_joints} joint commands + 1 gripper command"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InvalidActionError(f"action has non-finite entries at indices {np.flatnonzero(bad).tolist()}")
        return np.clip(arr, -1.0, 1.0)

    def scale_action(self, action) -> tuple[np.ndarray, float]:
        """Normalised action -> (joint commands in rad/s or N·m, gripper command in [-1 open, +1 closed])."""
        arr = self.check_action(action)
        return arr[: self.n_joints] * self.command_limits, float(arr[-1])

    def normalise_command(self, joint_command: np.ndarray, gripper: float) -> np.ndarray:
        """Inverse of scale_action (clipped): how teleop and experts express commands as actions."""
        out = np.empty(self.action_dim, dtype=np.float32)
        out[: self.n_joints] = np.clip(np.asarray(joint_command) / self.command_limits, -1, 1)
        out[-1] = np.clip(gripper, -1, 1)
        return out


def space_signature(observation_space: spaces.Dict) -> dict[str, list]:
    """Observation keys, shapes and dtypes as plain data."""
    return {k: [list(s.shape), str(s.dtype)] for k, s in observation_space.spaces.items()}


def spec_signature(observation_space: spaces.Dict, action_shape: tuple[int, ...], action_dtype: str | None = None) -> dict:
    """The observation/action spec as plain data: what replay files, replay stores, peers at hello and
    checkpoints record, so data made for another spec is refused with both specs named. Checkpoints also
    record the action dtype (`action_dtype`); replay data stores actions as float32 whatever the space says."""
    action = list(action_shape) if action_dtype is None else [list(action_shape), action_dtype]
    return {"obs": space_signature(observation_space), "action": action}


def is_image_space(space: spaces.Space) -> bool:
    """The one rule for camera frames: (H, W, C) uint8. They are stored as uint8, stacked, augmented and
    optionally compressed on the wire; every other observation is a float vector."""
    return len(space.shape or ()) == 3 and space.dtype == np.uint8


def image_keys_of(observation_space: spaces.Dict) -> list[str]:
    return [k for k, s in observation_space.spaces.items() if is_image_space(s)]


def split_privileged(vector: np.ndarray) -> dict[str, np.ndarray]:
    out, i = {}, 0
    for name, n in PRIVILEGED_LAYOUT:
        out[name] = np.asarray(vector[i : i + n])
        i += n
    return out


# -- file names by content --------------------------------------------------------------------------------
# Demo and encoder files are cached on disk and reused by name, so their names say what they hold: the
# robot, the control mode and the cameras readably, then a short hash of everything the file is bound to.
# A config that changes any of it names another file (made when missing); a file under the old names is
# never picked up. Bump a version when what the files hold changes without the spec changing.
DEMO_FILE_VERSION = 4  # v2: the front camera framed on the work area; v3: names by content; v4: and by the scene
ENCODER_FILE_VERSION = 2  # v2: named by the scene it was trained on too
ENCODER_INPUT_KEYS = ("joint_pos", "gripper")  # proprioception the pretrained encoder reads beside the cameras


def _short_hash(data) -> str:
    import hashlib
    import json

    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _cameras_part(spec: EnvSpec) -> str:
    if not spec.cameras:
        return "state"
    return "-".join(f"{n}{h}" if h == w else f"{n}{h}x{w}" for n, h, w in spec.cameras)


def demo_tag(env_cfg) -> str:
    """What a demo file of this env holds, for its name: `<robot>_<control mode>_<cameras>[_privileged]_<hash>`.
    The hash covers the observation/action spec (keys, shapes, dtypes), the robot, the control mode and rate
    and the action scaling: demos for any other env get another name."""
    spec = EnvSpec.from_config(env_cfg)
    signature = spec_signature(spec.observation_space(), spec.action_space().shape)
    bound = {"v": DEMO_FILE_VERSION, "spec": signature, "robot": spec.robot.name, "control_mode": str(spec.control_mode),
             "control_hz": spec.control_hz, "limits": [round(float(x), 6) for x in spec.command_limits]}
    bound["scene"] = scene_record(env_cfg)
    from robolearn.config import load_env_config

    reward = load_env_config(env_cfg).reward
    if reward.uses_classifier:  # their rewards are the classifier's (named only then: the other names stay as they were)
        bound["reward"] = {"source": reward.source, "classifier": str(reward.classifier)}
        if reward.estimate_window != 1:
            bound["reward"]["estimate_window"] = reward.estimate_window
    privileged = "_privileged" if spec.privileged else ""
    return f"{spec.robot.name}_{spec.control_mode}_{_cameras_part(spec)}{privileged}_{_short_hash(bound)}"


# What changes the dynamics but not the frames: an encoder (it reads frames) is not made again for these.
DYNAMICS_ONLY_KEYS = ("dynamics", "latency_ms", "joint_pos_noise", "joint_vel_noise")


def scene_record(env_cfg, frames_only: bool = False) -> dict:
    """What decides the frames (and, unless `frames_only`, the dynamics) a cached file was made under: the
    randomisation, the cameras' poses (a bench's calibration file named, not its contents) and the rendering.
    Demos and encoders made under other ones get other names, so a run never silently reuses a file made for
    another viewpoint or randomisation."""
    import dataclasses

    from robolearn.checkpoint import json_plain
    from robolearn.config import load_env_config

    cfg = load_env_config(env_cfg)
    randomization = dataclasses.asdict(cfg.randomization)
    if randomization["camera"]["only"] is None:  # every camera moved, as before the key: the cached files keep their names
        del randomization["camera"]["only"]
    if frames_only:
        randomization = {k: v for k, v in randomization.items() if k not in DYNAMICS_ONLY_KEYS}
    return json_plain({"randomization": randomization, "cameras": [dataclasses.asdict(c) for c in cfg.cameras],
                       "render": dataclasses.asdict(cfg.render), "room_walls": cfg.room_walls})


def encoder_inputs(env_cfg) -> dict:
    """What a pretrained encoder of this env reads: each camera and proprioception key with its shape."""
    space = EnvSpec.from_config(env_cfg).observation_space()
    keys = [*image_keys_of(space), *ENCODER_INPUT_KEYS]
    return {k: list(space[k].shape) for k in keys}


def encoder_tag(env_cfg) -> str:
    """What a pretrained encoder of this env is made for, for its name: `<robot>_<cameras>_<hash>`. The hash
    covers the robot and the encoder's inputs (cameras and their sizes, joints); not the privileged state (the
    pretraining target, always on in sim) nor the control mode, so the main job and the no-tracker recipe
    share one encoder."""
    spec = EnvSpec.from_config(env_cfg)
    bound = {"v": ENCODER_FILE_VERSION, "robot": spec.robot.name, "inputs": encoder_inputs(env_cfg), "scene": scene_record(env_cfg, frames_only=True)}
    return f"{spec.robot.name}_{_cameras_part(spec)}_{_short_hash(bound)}"
