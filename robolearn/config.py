"""Typed schema of the environment config.

Hydra composes YAML from `configs/`; this module checks the composed `env` node against a schema so an
unknown key or a bad value fails at start-up with a message naming it. The same schema is all a remote
learner needs to derive the env spec, without touching the sim or the hardware.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class RenderConfig:
    # MuJoCo's defaults (4096 shadow map, 4x multisampling) cost ~100x in offscreen frame rate here.
    shadows: bool = False
    multisamples: int = 0
    # Tessellation of spheres, capsules and cylinders; triangle count is the next cost after shadows.
    primitive_slices: int = 12
    skybox_and_haze: bool = False


@dataclass
class RandomizationConfig:
    kettle_x_range: list[float] = field(default_factory=lambda: [-0.05, 0.05])  # m around nominal
    kettle_y_range: list[float] = field(default_factory=lambda: [-0.08, 0.08])
    kettle_yaw_range: list[float] = field(default_factory=lambda: [-0.5, 0.5])  # rad
    colours: bool = True
    lighting: bool = True
    camera_pos_jitter: float = 0.01  # m
    camera_angle_jitter: float = 0.02  # rad


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
    episode_seconds: float = 20.0
    terminate_on_success: bool = True
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
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
        names = [c.name for c in self.cameras]
        _check(len(set(names)) == len(names), "env.cameras", names, "camera names must be unique")
        for cam in self.cameras:
            _check(cam.width > 0 and cam.height > 0, f"env.cameras.{cam.name}", cam, "size must be positive")
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
        raise ConfigError(f"env config: {exc}") from None
    # to_object rebuilds the dataclasses, which runs __post_init__ validation.
    assert isinstance(cfg, EnvConfig)
    return cfg


# The env group files of the kettle sim and of the real robot start from the schema (configs/env/kettle_sink.yaml,
# real_fake.yaml), so they hold only what differs and a misspelt key fails as Hydra composes them.
register_schema("env_schema", EnvConfig, group="env")
