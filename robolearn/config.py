"""Typed schema of the environment config.

Hydra composes YAML from `configs/`; this module checks the composed `env` node against a schema so an
unknown key or a bad value fails at start-up with a message naming it. The same schema is all a remote
learner needs to derive the env spec, without touching the sim or the hardware.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from enum import Enum
from typing import Any, Optional, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robolearn.robots import ROBOTS


class ConfigError(ValueError):
    """A config key or value is invalid; the message names it."""


T = TypeVar("T")


def check(ok: bool, key: str, value: Any, why: str) -> None:
    """The one value check of every schema: raise ConfigError naming the key, the value and the rule."""
    if not ok:
        raise ConfigError(f"invalid value for {key}: {value!r} ({why})")


def load_typed(schema: type[T], node: Any, where: str) -> T:
    """Merge a composed config node (DictConfig, dict or None) into a dataclass schema and build it.

    An unknown key or a badly typed value raises ConfigError naming `where` and the key; the dataclass's
    `__post_init__` checks run while it is built. Runtime classes take the object this returns, never a
    raw DictConfig."""
    if isinstance(node, schema):
        return node
    try:
        if isinstance(node, DictConfig):
            # Plain containers first: a group typed `Any` (env, policy) then stays a plain dict for the one
            # that validates it, extra keys included, instead of becoming a dataclass that hides them.
            node = OmegaConf.to_container(node, resolve=True)
        merged = OmegaConf.merge(OmegaConf.structured(schema), node if node is not None else {})
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{where} config: {exc}") from None
    assert isinstance(obj, schema)
    return obj


def register_schema(name: str, node: type, group: str | None = None) -> None:
    """Register a dataclass in Hydra's ConfigStore as `name` (in `group`): a YAML file names it first in
    its defaults list (`defaults: [<name>, ..., _self_]`) and then holds only what differs from it."""
    ConfigStore.instance().store(name=name, node=node, group=group)


class ControlMode(str, Enum):
    joint_velocity = "joint_velocity"
    joint_torque = "joint_torque"

    def __str__(self) -> str:  # the name in file names and interpolations (`${env.control_mode}`), as in the YAML
        return self.value


@dataclass
class CameraConfig:
    name: str = "front"
    width: int = 84
    height: int = 84
    # Sim only: where the camera is. null keeps the scene's own (sim/kitchen.py, sim/arm.py). `front`'s pose is
    # in the robot base frame, `wrist`'s in the hand (flange) frame. Give `pos` with `look_at` (and `up`), or
    # with `quat` (w x y z of MuJoCo's camera frame: it looks along -z, y up). `fovy`: vertical field of view, deg.
    pos: Optional[list[float]] = None
    look_at: Optional[list[float]] = None
    up: list[float] = field(default_factory=lambda: [0.0, 0.0, 1.0])
    quat: Optional[list[float]] = None
    fovy: Optional[float] = None
    # A file written by `python -m hardware.calibrate` (base_from_camera, intrinsics): pos, quat and fovy are
    # read from it, so the sim trains on the viewpoint the bench has (docs/deploy.md). Overrides the keys above.
    calibration: Optional[str] = None


@dataclass
class RenderConfig:
    # MuJoCo's defaults (4096 shadow map, 4x multisampling) cost ~100x in offscreen frame rate here.
    shadows: bool = False
    multisamples: int = 0
    # Tessellation of spheres, capsules and cylinders; triangle count is the next cost after shadows.
    primitive_slices: int = 12
    skybox_and_haze: bool = False
    # Shadow map size used when shadows are drawn (always with `shadows`, or in a share of episodes by
    # env.randomization.lighting.shadow_probability): MuJoCo's 4096 costs ~40x a frame here, 1024 far less.
    shadow_map_size: int = 1024


def _range(lo: float, hi: float):
    return field(default_factory=lambda: [lo, hi])


def _check_range(key: str, value: list[float], lo: float = -math.inf, hi: float = math.inf) -> None:
    check(len(value) == 2 and lo <= value[0] <= value[1] <= hi, key, value, f"[low, high] within [{lo}, {hi}]")


@dataclass
class MaterialRandomization:
    """Procedural textures and colours on the counter, the sink basin, the floor and walls, and the kettle."""

    enabled: bool = True
    # Which procedural pattern families textures are drawn from: `train`, or `heldout` (families never drawn in
    # training: the transfer benchmark's unseen textures).
    pool: str = "train"
    texture_probability: float = 0.7  # per surface and episode: a texture, else a plain colour
    colour_jitter: float = 0.25  # each surface's base colour shifted per channel by up to this (0-1 scale)
    kettle_colour_jitter: float = 0.15  # the kettle's own, kept smaller: it stays one recognisable object

    def __post_init__(self) -> None:
        check(self.pool in ("train", "heldout"), "env.randomization.materials.pool", self.pool, "train or heldout")
        for key in ("texture_probability", "colour_jitter", "kettle_colour_jitter"):
            check(0 <= getattr(self, key) <= 1, f"env.randomization.materials.{key}", getattr(self, key), "in [0, 1]")


@dataclass
class LightingRandomization:
    enabled: bool = True
    count: list[int] = field(default_factory=lambda: [1, 3])  # lights on per episode, of the scene's three
    intensity: list[float] = _range(0.6, 1.4)  # scale of the lights' brightness
    tint: float = 0.1  # per-channel colour change of each light (white balance)
    direction: float = 0.35  # rad: tilt of each light from its nominal direction
    shadow_probability: float = 0.5  # share of episodes rendered with shadows (shadow map: env.render.shadow_map_size)

    def __post_init__(self) -> None:
        check(len(self.count) == 2 and 1 <= self.count[0] <= self.count[1] <= 3, "env.randomization.lighting.count",
              self.count, "[low, high] within [1, 3]")
        _check_range("env.randomization.lighting.intensity", self.intensity, 0.0)
        check(0 <= self.shadow_probability <= 1, "env.randomization.lighting.shadow_probability", self.shadow_probability, "in [0, 1]")
        check(self.tint >= 0 and self.direction >= 0, "env.randomization.lighting", (self.tint, self.direction), "must be >= 0")


@dataclass
class CameraRandomization:
    """Each camera's pose and field of view around its configured ones (env.cameras)."""

    # Training ranges reach the transfer benchmark's smaller camera row (3 cm / 3 deg) at their edge and leave
    # the larger one (5 cm / 6 deg) and the field of view row (3 deg) outside: those are held out.
    pos: float = 0.03  # m: offset in a random direction, its length uniform in [0, pos]
    angle: float = 0.0524  # rad (3 deg): turn about a random axis, uniform in [0, angle]
    fovy: float = 2.0  # deg: field of view changed by up to this
    exact: bool = False  # offsets of exactly pos / angle / fovy (random direction and sign): the transfer benchmark's rows
    # The cameras moved (null: every one). A wrist camera in a rigid mount, hand-eye calibrated, is off by
    # millimetres while a tripod camera is off by centimetres: move only the front one. The others' draws are still
    # made, so a camera keeps the same move for a seed whichever others are listed.
    only: Optional[list[str]] = None

    def __post_init__(self) -> None:
        check(self.only is None or (isinstance(self.only, (list, tuple)) and all(isinstance(n, str) for n in self.only)),
              "env.randomization.camera.only", self.only, "a list of camera names, or null for every camera")
        for key in ("pos", "angle", "fovy"):
            check(getattr(self, key) >= 0, f"env.randomization.camera.{key}", getattr(self, key), "must be >= 0")
        # The scene's narrowest camera (front) has 50 deg: a larger change could turn a field of view negative.
        check(self.fovy < 45, "env.randomization.camera.fovy", self.fovy, "degrees, below 45")
        check(self.angle <= math.pi, "env.randomization.camera.angle", self.angle, "radians, at most pi")


@dataclass
class DistractorRandomization:
    count: list[int] = field(default_factory=lambda: [0, 4])  # objects on the counter, out of the kettle's path

    def __post_init__(self) -> None:
        check(len(self.count) == 2 and 0 <= self.count[0] <= self.count[1] <= 6, "env.randomization.distractors.count",
              self.count, "[low, high] within [0, 6]")


@dataclass
class ImageRandomization:
    """Applied to the rendered frames, per camera: what a real sensor and its auto-exposure add."""

    brightness: float = 0.08  # additive, fraction of full scale, per episode
    contrast: float = 0.15  # gain in [1 - contrast, 1 + contrast] around mid-grey, per episode
    noise_std: float = 3.0  # per-pixel Gaussian noise, 0-255 units, every frame
    blur_probability: float = 0.1  # share of episodes a camera is out of focus (Gaussian blur)

    def __post_init__(self) -> None:
        for key in ("brightness", "contrast", "noise_std"):
            check(getattr(self, key) >= 0, f"env.randomization.image.{key}", getattr(self, key), "must be >= 0")
        check(0 <= self.blur_probability <= 1, "env.randomization.image.blur_probability", self.blur_probability, "in [0, 1]")


@dataclass
class DynamicsRandomization:
    """Scales of the nominal model values, drawn per episode."""

    kettle_mass: list[float] = _range(0.6, 1.4)
    kettle_friction: list[float] = _range(0.6, 1.4)
    gripper_friction: list[float] = _range(0.8, 1.2)
    joint_damping: list[float] = _range(0.8, 1.2)
    actuator_gain: list[float] = _range(0.9, 1.1)

    def __post_init__(self) -> None:
        for key in ("kettle_mass", "kettle_friction", "gripper_friction", "joint_damping", "actuator_gain"):
            _check_range(f"env.randomization.dynamics.{key}", getattr(self, key), 0.01)


@dataclass
class RandomizationConfig:
    """Every part is drawn from its own seeded stream at reset (sim/randomization), so switching one off
    leaves the others' draws unchanged. docs/sim.md shows each key's range and the images it makes."""

    enabled: bool = True  # false: the nominal scene, everything below ignored
    # Where a person puts the kettle down by hand, around the nominal spot.
    kettle_x_range: list[float] = _range(-0.10, 0.10)  # m
    kettle_y_range: list[float] = _range(-0.10, 0.10)
    kettle_yaw_range: list[float] = _range(-1.0, 1.0)  # rad
    # Put the kettle on the edge of that area instead (a point on its boundary, yaw at an end of its range):
    # the transfer benchmark's held-out start.
    kettle_start_edge: bool = False
    materials: MaterialRandomization = field(default_factory=MaterialRandomization)
    lighting: LightingRandomization = field(default_factory=LightingRandomization)
    camera: CameraRandomization = field(default_factory=CameraRandomization)
    distractors: DistractorRandomization = field(default_factory=DistractorRandomization)
    image: ImageRandomization = field(default_factory=ImageRandomization)
    dynamics: DynamicsRandomization = field(default_factory=DynamicsRandomization)
    # Time from the observation to the command taking effect, drawn per episode (ms): real cameras and drivers
    # add 30-100 ms. Up to this long the previous command still acts.
    latency_ms: list[float] = _range(0.0, 100.0)
    # Joint encoder noise (std) on the observed joint_pos (rad) and joint_vel (rad/s), every step.
    joint_pos_noise: float = 0.002
    joint_vel_noise: float = 0.02

    def __post_init__(self) -> None:
        _check_range("env.randomization.kettle_x_range", self.kettle_x_range)
        _check_range("env.randomization.kettle_y_range", self.kettle_y_range)
        _check_range("env.randomization.kettle_yaw_range", self.kettle_yaw_range, -math.pi, math.pi)
        _check_range("env.randomization.latency_ms", self.latency_ms, 0.0, 1000.0)
        check(self.joint_pos_noise >= 0 and self.joint_vel_noise >= 0, "env.randomization.joint_*_noise",
              (self.joint_pos_noise, self.joint_vel_noise), "must be >= 0")


# Where the reward and success come from (robolearn/reward_source.py).
REWARD_SOURCES = ("env", "classifier", "both")


@dataclass
class RewardSourceConfig:
    source: str = "env"  # env | classifier | both
    classifier: Optional[str] = None  # the classifier file (python -m robolearn.success_classifier); it names its encoder
    # the limits its held-out error rates are checked against when it is loaded
    max_false_positive: float = 0.01
    max_false_negative: float = 0.05
    # from the kettle's frame origin down to its base (the sim kettle's): the shaping's target above the basin floor
    kettle_bottom_offset: float = 0.06
    # In sim, where the classifier ends an episode: the simulator judges success once the arm has stopped there
    # and the kettle has had up to this long to come to rest (physics only), as a person looks at the sink after an
    # arm's episode; 0: at the step the classifier fired (a kettle still settling then counts as a failure).
    judge_settle_s: float = 1.0
    # `classifier`'s shaping reads the encoder's kettle and handle estimates: each the median of the last this
    # many frames' (1: this frame's alone). The estimate's large errors are single frames that jump.
    estimate_window: int = 1

    def __post_init__(self) -> None:
        check(self.judge_settle_s >= 0, "env.reward.judge_settle_s", self.judge_settle_s, "seconds, >= 0")
        check(self.estimate_window >= 1, "env.reward.estimate_window", self.estimate_window, "frames, >= 1")
        check(self.source in REWARD_SOURCES, "env.reward.source", self.source, f"one of {REWARD_SOURCES}")
        check(self.source == "env" or bool(self.classifier), "env.reward.classifier", self.classifier,
              f"env.reward.source={self.source} needs a classifier file (python -m robolearn.success_classifier)")

    @property
    def uses_classifier(self) -> bool:
        return self.source != "env"


@dataclass
class TaskConfig:
    reach_weight: float = 0.5
    success_bonus: float = 10.0
    max_settle_speed: float = 0.05  # m/s: the kettle "rests" below this speed
    fall_penalty: float = 100.0  # charged once when the kettle leaves the counter (the episode ends)


@dataclass
class EnvConfig:
    # Dotted path of the factory that builds the env from this config (sim or hardware).
    factory: str = "sim.make_kettle_sink_env"
    robot: str = "panda"
    control_mode: ControlMode = ControlMode.joint_velocity
    control_hz: float = 10.0
    physics_hz: float = 500.0
    # Commands are normalised to [-1, 1] and scaled by these fractions of the datasheet limits.
    velocity_limit_fraction: float = 0.5
    torque_limit_fraction: float = 0.5
    gravity_compensation: bool = True
    cameras: list[CameraConfig] = field(
        default_factory=lambda: [CameraConfig("front"), CameraConfig("wrist")]
    )
    privileged: bool = False
    # The sim room's back and side walls (visual only; textured by env.randomization.materials). false: the
    # scene before issue 27, which a checkpoint of that time is evaluated on (robolearn/config_migration.py).
    room_walls: bool = True
    episode_seconds: float = 20.0
    terminate_on_success: bool = True
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    reward: RewardSourceConfig = field(default_factory=RewardSourceConfig)
    # Real-robot settings (driver, cameras, safety, tracker), validated by hardware.config when the
    # hardware env is built; the sim and the spec ignore it.
    hardware: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        self.control_mode = ControlMode(self.control_mode)
        _check(self.robot in ROBOTS, "env.robot", self.robot, f"known robots: {sorted(ROBOTS)}")
        _check(self.control_hz > 0, "env.control_hz", self.control_hz, "must be positive")
        ratio = self.physics_hz / self.control_hz
        _check(
            self.physics_hz >= 500 and abs(ratio - round(ratio)) < 1e-9,
            "env.physics_hz",
            self.physics_hz,
            "must be >= 500 and an integer multiple of control_hz",
        )
        for name in ("velocity_limit_fraction", "torque_limit_fraction"):
            value = getattr(self, name)
            _check(0 < value <= 1, f"env.{name}", value, "must be in (0, 1]")
        _check(self.episode_seconds > 0, "env.episode_seconds", self.episode_seconds, "must be positive")
        _check(not (self.reward.uses_classifier and self.terminate_on_success), "env.terminate_on_success", self.terminate_on_success,
               f"env.reward.source={self.reward.source} ends episodes by the classifier's success: set env.terminate_on_success=false")
        names = [c.name for c in self.cameras]
        _check(len(set(names)) == len(names), "env.cameras", names, "camera names must be unique")
        for cam in self.cameras:
            _check(cam.width > 0 and cam.height > 0, f"env.cameras.{cam.name}", cam, "size must be positive")
            for key, n in (("pos", 3), ("look_at", 3), ("up", 3), ("quat", 4)):
                value = getattr(cam, key)
                _check(value is None or len(value) == n, f"env.cameras.{cam.name}.{key}", value, f"needs {n} values")
            _check(cam.quat is None or cam.look_at is None, f"env.cameras.{cam.name}", cam.look_at, "give look_at or quat, not both")
            _check(cam.pos is not None or (cam.look_at is None and cam.quat is None), f"env.cameras.{cam.name}.pos", cam.pos,
                   "look_at and quat need pos")
            if cam.quat is not None:
                _check(math.hypot(*cam.quat) > 1e-6, f"env.cameras.{cam.name}.quat", cam.quat, "must not be zero")
            if cam.look_at is not None and cam.pos is not None:
                view = [t - p for t, p in zip(cam.look_at, cam.pos)]
                norm = math.hypot(*view)
                _check(norm > 1e-6, f"env.cameras.{cam.name}.look_at", cam.look_at, "must differ from pos")
                # |view x up| / (|view| |up|): sin of the angle between them; 0 leaves the camera's roll undefined.
                up = cam.up
                cross = [view[1] * up[2] - view[2] * up[1], view[2] * up[0] - view[0] * up[2], view[0] * up[1] - view[1] * up[0]]
                _check(math.hypot(*up) > 1e-6 and math.hypot(*cross) > 1e-6 * norm * math.hypot(*up), f"env.cameras.{cam.name}.up",
                       cam.up, "must not be zero or parallel to the viewing direction")
            if cam.fovy is not None:
                _check(cam.fovy - self.randomization.camera.fovy > 1.0, "env.randomization.camera.fovy", self.randomization.camera.fovy,
                       f"must leave camera {cam.name}'s field of view ({cam.fovy} deg) above 1 deg")
            _check(cam.fovy is None or 0 < cam.fovy < 180, f"env.cameras.{cam.name}.fovy", cam.fovy, "degrees in (0, 180)")
        _check(self.render.multisamples >= 0, "env.render.multisamples", self.render.multisamples, "must be >= 0")
        _check(self.render.primitive_slices >= 3, "env.render.primitive_slices", self.render.primitive_slices, "must be >= 3")

    @property
    def substeps(self) -> int:
        return round(self.physics_hz / self.control_hz)

    @property
    def max_episode_steps(self) -> int:
        return round(self.episode_seconds * self.control_hz)


_check = check


def load_env_config(node: DictConfig | dict | EnvConfig | None = None, **overrides: Any) -> EnvConfig:
    """Validate a composed `env` config node (or a plain dict) against the schema."""
    if isinstance(node, EnvConfig) and not overrides:
        return node
    try:
        merged = OmegaConf.merge(OmegaConf.structured(EnvConfig), node or {}, overrides)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        where = f" (env.{exc.full_key})" if getattr(exc, "full_key", None) else ""  # which key, not only why
        raise ConfigError(f"env config{where}: {exc}") from None
    # to_object rebuilds the dataclasses, which runs __post_init__ validation.
    assert isinstance(cfg, EnvConfig)
    return cfg


# The env group files of the kettle sim and of the real robot start from the schema (configs/env/kettle_sink.yaml,
# real_fake.yaml), so they hold only what differs and a misspelt key fails as Hydra composes them.
register_schema("env_schema", EnvConfig, group="env")
