"""Typed schema of the real-robot settings under `env.hardware`.

Validated with `robolearn.config.load_typed`: an unknown key or a badly typed value fails at start-up with a
message naming it. The driver and each camera are one config class per kind, chosen by their `kind` key
(DRIVER_CONFIGS, CAMERA_CONFIGS) and passed whole to the class they configure. Cross-checks
against the env config (cameras, tracker, control mode, limits) run before anything connects or moves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from robolearn.config import ControlMode, EnvConfig, check, load_typed
from robolearn.robots import ROBOTS

T = TypeVar("T")


class DriverKind(str, Enum):
    fake = "fake"
    franka = "franka"
    ur = "ur"


class CameraKind(str, Enum):
    fake = "fake"
    opencv = "opencv"
    realsense = "realsense"


class ClockKind(str, Enum):
    real = "real"  # wall clock: the only choice for a physical arm
    virtual = "virtual"  # time advances only when the loop waits: deterministic, instant dry runs (fake only)


class TrackerKind(str, Enum):
    none = "none"
    aruco = "aruco"


@dataclass
class DriverConfig:
    """What every driver kind shares; one subclass per kind adds its own settings (DRIVER_CONFIGS)."""

    kind: DriverKind = DriverKind.fake
    # Vendor-side watchdog: a command is executed at most this long (Franka motion duration and torque
    # signal timeout, UR RTDE watchdog, the fake's own); with no newer command the arm stops on its own.
    command_hold_s: float = 0.2
    gripper: bool = True
    gripper_speed: float = 0.1  # m/s


@dataclass
class FakeDriverConfig(DriverConfig):
    kind: DriverKind = DriverKind.fake
    initial_q: list[float] | None = None  # rad; default: the robot's home
    latency_s: float = 0.0  # command-to-effect delay
    # Torque-mode dynamics per joint: inertia (kg·m^2) and viscous damping (N·m·s/rad), gravity compensated.
    inertia: list[float] = field(default_factory=lambda: [3.0, 3.0, 2.0, 2.0, 0.5, 0.5, 0.3])
    damping: list[float] = field(default_factory=lambda: [8.0, 8.0, 6.0, 6.0, 2.0, 2.0, 1.0])


@dataclass
class NetworkDriverConfig(DriverConfig):
    """A driver that talks to a controller over the network."""

    host: str = "172.16.0.2"
    connect_timeout_s: float = 3.0  # a second Franka client blocks forever: every connect is time-bound


@dataclass
class FrankaDriverConfig(NetworkDriverConfig):
    kind: DriverKind = DriverKind.franka
    host: str = "172.16.0.2"  # the robot's FCI address
    # Scales franky's velocity/acceleration/jerk limits for every motion (0, 1].
    relative_dynamics_factor: float = 0.15
    # libfranka refuses to run without a realtime kernel unless told to ignore it (franky-sim runs need false).
    require_realtime_kernel: bool = True
    collision_torque_threshold: float = 20.0  # N·m, Franka reflex threshold
    collision_force_threshold: float = 30.0  # N
    gripper_force: float = 20.0  # N, when closing on an object


@dataclass
class URDriverConfig(NetworkDriverConfig):
    kind: DriverKind = DriverKind.ur
    host: str = "192.168.1.10"
    # A Robotiq 2F-85 / 2F-140 through the Robotiq URCap's socket server on the controller (same host).
    gripper: bool = False
    gripper_port: int = 63352
    gripper_max_width: float = 0.085  # m: 2F-85 (0.14 for a 2F-140)
    rtde_frequency: float = 500.0  # Hz
    # speedJ's acceleration (rad/s^2, leading axis). It must let the arm follow the safety layer's
    # rate-limited commands (else the arm lags them and brakes late): None = the robot's largest joint
    # acceleration limit, so the layer alone shapes the motion.
    speedj_acceleration: float | None = None
    stop_deceleration: float = 3.0  # rad/s^2 for speedStop
    # directTorque needs PolyScope >= 5.23 on the controller; off unless the arm is known to support it.
    torque_control: bool = False
    # The oldest PolyScope the driver accepts for torque control: Direct Torque Control V1 came with 5.23
    # (UR's script manual); ur-rtde's newest release notes name 5.26 (the friction-scale arguments its
    # script passes): raise it if your ur-rtde asks for more.
    torque_min_polyscope: str = "5.23"
    # The payload (kg) the controller's installation must report at pre-flight (gripper, fixtures, tool);
    # None: pre-flight checks only that one is set and within the arm's rating.
    payload_kg: float | None = None
    # Dry run: ur_rtde replaced by an in-process simulated controller (hardware/drivers/ur_simulated.py).
    # Never reaches an arm; the only UR setting that may run on a virtual clock.
    simulated: bool = False


DRIVER_CONFIGS: dict[str, type[DriverConfig]] = {
    DriverKind.fake.value: FakeDriverConfig,
    DriverKind.franka.value: FrankaDriverConfig,
    DriverKind.ur.value: URDriverConfig,
}


@dataclass
class CameraDeviceConfig:
    """What every camera kind shares; one subclass per kind adds its own settings (CAMERA_CONFIGS)."""

    kind: CameraKind = CameraKind.fake
    width: int = 640
    height: int = 480
    fps: float = 30.0
    realtime: bool = True  # file sources: pace frames at the file's fps
    # Monitoring: no new frame for `timeout_s` is a camera fault (the arm stops); a latest frame older
    # than `max_age_s` when observed is stale (reported in info); `frozen_after` repeats of one frame
    # number is a frozen stream (fault).
    timeout_s: float = 0.5
    max_age_s: float = 0.1
    frozen_after: int = 5
    reconnect: bool = True


@dataclass
class FakeCameraConfig(CameraDeviceConfig):
    kind: CameraKind = CameraKind.fake
    replay: str = ""  # replay frames from this video file; empty = synthetic frames


@dataclass
class OpenCVCameraConfig(CameraDeviceConfig):
    kind: CameraKind = CameraKind.opencv
    source: str = "0"  # device index, file path or URL
    verify: bool = True  # the applied fps and resolution must match the requested ones


@dataclass
class RealSenseCameraConfig(CameraDeviceConfig):
    kind: CameraKind = CameraKind.realsense
    serial: str = ""  # device serial; empty = the only connected device
    recording: str = ""  # play this recording through the pipeline instead of a live device
    depth: bool = False  # also stream depth aligned to colour


CAMERA_CONFIGS: dict[str, type[CameraDeviceConfig]] = {
    CameraKind.fake.value: FakeCameraConfig,
    CameraKind.opencv.value: OpenCVCameraConfig,
    CameraKind.realsense.value: RealSenseCameraConfig,
}


def load_command_config(schema: type[T], cfg: Any, where: str) -> T:
    """A command's composed config as its typed schema. Converted to plain containers first, so a key
    forced in from the command line (`+key=...`) is refused like any unknown key."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    return load_typed(schema, cfg, where)


def load_by_kind(registry: dict[str, type[T]], node: Any, where: str, default: str) -> T:
    """The config class a node's `kind` names, built from the node (load_typed: unknown keys fail)."""
    kind = node.kind if isinstance(node, tuple(registry.values())) else (node or {}).get("kind", default)
    kind = getattr(kind, "value", kind)
    check(kind in registry, f"{where}.kind", kind, f"one of {sorted(registry)}")
    return load_typed(registry[kind], node, where)


@dataclass
class SafetyConfig:
    # Fractions of the datasheet limits (robolearn.robots). Absolute per-joint lists override them and
    # must not exceed the datasheet.
    velocity_fraction: float = 0.5
    torque_fraction: float = 0.5
    acceleration_fraction: float = 0.25
    jerk_fraction: float = 0.25
    torque_rate_fraction: float = 0.25
    velocity_limits: list[float] | None = None  # rad/s
    torque_limits: list[float] | None = None  # N·m
    # Joint limits: commands toward a limit taper to zero over `taper_zone_rad` before the soft limit
    # (`joint_margin_rad` inside the datasheet limit); being past the soft limit is a breach.
    joint_margin_rad: float = 0.05
    taper_zone_rad: float = 0.3
    # End-effector box in the robot base frame (m): commands are scaled to stay inside; a measured
    # position outside by more than `workspace_breach_m` is a breach.
    workspace_min: list[float] = field(default_factory=lambda: [0.15, -0.6, -0.05])
    workspace_max: list[float] = field(default_factory=lambda: [0.85, 0.6, 0.9])
    workspace_breach_m: float = 0.02
    # No fresh command for this long after the last one, while moving: stop, then latch a fault.
    watchdog_timeout_s: float = 0.18  # + a poll: trips within two control periods of the last command
    watchdog_poll_s: float = 0.005
    max_state_age_s: float = 0.05  # older robot state is a fault
    # Velocity mode: a joint that lags its command by more than the tolerance for this long is a fault.
    tracking_tolerance: float = 0.4  # rad/s
    tracking_timeout_s: float = 0.5
    # Torque mode: each command is limited so that the joint speeds the model predicts at the end of its
    # hold stay within this fraction of the velocity limits (the rest is margin for model error).
    torque_speed_headroom: float = 0.9


@dataclass
class TrackerConfig:
    kind: TrackerKind = TrackerKind.none
    camera: str = "front"  # name of the configured camera the markers are seen by
    calibration: str = ""  # YAML with camera_matrix, dist_coeffs, base_from_camera (4x4), image_size
    dictionary: str = "DICT_4X4_50"
    marker_size_m: float = 0.04
    kettle_marker_id: int = 0
    sink_marker_id: int = 1
    # Offsets in the marker frames (m): where the kettle frame origin and the sink basin-floor centre are.
    kettle_origin_in_marker: list[float] = field(default_factory=lambda: [0.0, 0.0, -0.06])
    handle_in_kettle: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.13])
    sink_centre_in_marker: list[float] = field(default_factory=lambda: [0.0, 0.0, -0.15])
    sink_half_size: list[float] = field(default_factory=lambda: [0.15, 0.15])
    sink_depth: float = 0.15
    kettle_radius: float = 0.07
    kettle_bottom_offset: float = 0.06
    max_pose_age_s: float = 0.5  # older marker poses make reward and success unknown


HUMAN_WHEN = ("never", "after_success", "every_episode")


@dataclass
class ResetConfig:
    """Every reset setting (configs/resets/): homing in the env's reset() and the between-episode
    routine of deploy and teleop (hardware/resets.py)."""

    home: list[float] | None = None  # rad; default: the robot's home
    joint_noise_rad: float = 0.0  # seeded uniform noise on the home target, per joint
    tolerance_rad: float = 0.01
    timeout_s: float = 20.0
    gain: float = 2.0  # 1/s: joint-space P gain of the homing motion
    max_speed: float = 0.4  # rad/s
    # Joint configurations (rad) visited, in order, before the env homes: e.g. lift clear of the sink.
    waypoints: list[list[float]] = field(default_factory=list)
    # When to ask a human to reset the scene: never | after_success (the kettle is in the sink) | every_episode.
    human: str = "after_success"
    human_timeout_s: float = 120.0
    # What a prompt that times out does: stop the run (True) or carry on with the scene as it is.
    stop_on_timeout: bool = True

    def __post_init__(self) -> None:
        check(self.human in HUMAN_WHEN, "env.hardware.resets.human", self.human, f"one of {list(HUMAN_WHEN)}")


@dataclass
class LoopConfig:
    clock: ClockKind = ClockKind.real
    spin_s: float = 0.001  # sleep until this long before a deadline, then spin: OS sleep overshoots
    # 0: normal scheduling. 1..98: run the control thread under SCHED_FIFO at this priority (and the
    # safety watchdog thread one above), so other processes cannot delay a deadline; needs root,
    # CAP_SYS_NICE or an rtprio limit. The agent's own work on that thread runs at this priority too.
    realtime_priority: int = 0


@dataclass
class HardwareConfig:
    # One config class per kind, chosen by the node's `kind` (DRIVER_CONFIGS, CAMERA_CONFIGS): typed Any
    # here, built by load_hardware_config.
    driver: Any = field(default_factory=lambda: {"kind": DriverKind.fake.value})
    cameras: dict[str, Any] = field(default_factory=dict)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    resets: ResetConfig = field(default_factory=ResetConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)


# Which robot descriptions each driver can drive (fake drives any).
DRIVER_ROBOTS = {DriverKind.franka: ("panda", "fr3"), DriverKind.ur: ("ur3e", "ur5e", "ur10e", "ur16e")}


def load_hardware_config(env_cfg: EnvConfig) -> HardwareConfig:
    """Validate `env.hardware` against the schema and against the rest of the env config."""
    hw = load_typed(HardwareConfig, env_cfg.hardware, "env.hardware")
    hw.driver = load_by_kind(DRIVER_CONFIGS, hw.driver, "env.hardware.driver", DriverKind.fake.value)
    hw.cameras = {name: load_by_kind(CAMERA_CONFIGS, node, f"env.hardware.cameras.{name}", CameraKind.fake.value) for name, node in hw.cameras.items()}
    _check_driver(hw.driver, hw.safety, env_cfg)
    _check_cameras(hw.cameras, env_cfg)
    _check_safety(hw.safety, env_cfg)
    _check_tracker(hw.tracker, hw.cameras, env_cfg)
    _check_resets(hw.resets)
    if hw.loop.clock is ClockKind.virtual:
        simulated = isinstance(hw.driver, URDriverConfig) and hw.driver.simulated
        kinds = {"fake" if simulated else hw.driver.kind.value} | {c.kind.value for c in hw.cameras.values()}
        check(kinds == {"fake"}, "env.hardware.loop.clock", "virtual", "only the fake driver, the simulated UR controller and fake cameras run on virtual time")
    check(0 <= hw.loop.spin_s < 0.02, "env.hardware.loop.spin_s", hw.loop.spin_s, "must be in [0, 0.02) s")
    check(0 <= hw.loop.realtime_priority <= 98, "env.hardware.loop.realtime_priority", hw.loop.realtime_priority, "must be 0 (off) or a SCHED_FIFO priority 1..98")
    if hw.loop.clock is ClockKind.virtual:
        check(hw.loop.realtime_priority == 0, "env.hardware.loop.realtime_priority", hw.loop.realtime_priority, "has no meaning on a virtual clock")
    return hw


def _check_driver(d: DriverConfig, safety: SafetyConfig, env_cfg: EnvConfig) -> None:
    period = 1.0 / env_cfg.control_hz
    supported = DRIVER_ROBOTS.get(d.kind)
    if supported is not None:
        check(env_cfg.robot in supported, "env.hardware.driver.kind", d.kind.value, f"cannot drive robot {env_cfg.robot!r}; it drives {list(supported)}")
    # Commands arrive once per control period; the vendor must hold each one at least that long.
    check(
        d.command_hold_s > period,
        "env.hardware.driver.command_hold_s",
        d.command_hold_s,
        f"must exceed the control period {period:.3f} s or the arm stops between commands",
    )
    check(d.gripper_speed > 0, "env.hardware.driver.gripper_speed", d.gripper_speed, "must be positive")
    if isinstance(d, NetworkDriverConfig):
        check(d.connect_timeout_s > 0, "env.hardware.driver.connect_timeout_s", d.connect_timeout_s, "must be positive")
    if isinstance(d, FrankaDriverConfig):
        check(0 < d.relative_dynamics_factor <= 1, "env.hardware.driver.relative_dynamics_factor", d.relative_dynamics_factor, "must be in (0, 1]")
    if isinstance(d, URDriverConfig):
        check(d.rtde_frequency > 0, "env.hardware.driver.rtde_frequency", d.rtde_frequency, "must be positive")
        if d.speedj_acceleration is not None:
            layer = max(safety.acceleration_fraction * ROBOTS[env_cfg.robot].ddq_max)
            check(
                d.speedj_acceleration >= layer,
                "env.hardware.driver.speedj_acceleration",
                d.speedj_acceleration,
                f"must be >= the safety layer's largest joint acceleration limit ({layer:.2f} rad/s^2): a slower speedJ lags the commands and the layer's braking comes late",
            )
        if d.payload_kg is not None:
            rated = ROBOTS[env_cfg.robot].payload_max
            check(0 <= d.payload_kg <= rated, "env.hardware.driver.payload_kg", d.payload_kg, f"must be in [0, {rated}] kg (the {env_cfg.robot}'s rated payload)")
        check(not (d.gripper and d.simulated), "env.hardware.driver.gripper", d.gripper, "the simulated UR controller has no gripper; set it to false")
        check(re.fullmatch(r"\d+\.\d+(\.\d+)?", d.torque_min_polyscope) is not None, "env.hardware.driver.torque_min_polyscope", d.torque_min_polyscope, "must be a version like 5.23")
        check(0 < d.gripper_port < 65536, "env.hardware.driver.gripper_port", d.gripper_port, "must be a TCP port")
        check(d.gripper_max_width > 0, "env.hardware.driver.gripper_max_width", d.gripper_max_width, "must be positive")
        if env_cfg.control_mode is ControlMode.joint_torque:
            check(d.torque_control, "env.hardware.driver.torque_control", False, "joint_torque control on a UR needs directTorque (PolyScope >= 5.23); enable it explicitly")
    if isinstance(d, FakeDriverConfig):
        check(d.latency_s >= 0, "env.hardware.driver.latency_s", d.latency_s, "must be >= 0")
        check(all(x > 0 for x in d.inertia), "env.hardware.driver.inertia", d.inertia, "must be positive")
        check(all(x > 0 for x in d.damping), "env.hardware.driver.damping", d.damping, "must be positive")


def _check_cameras(cams: dict[str, CameraDeviceConfig], env_cfg: EnvConfig) -> None:
    for cam in env_cfg.cameras:
        check(cam.name in cams, "env.cameras", cam.name, f"no device configured for it under env.hardware.cameras (configured: {sorted(cams)})")
    for name, c in cams.items():
        key = f"env.hardware.cameras.{name}"
        check(c.width > 0 and c.height > 0, f"{key}.width/height", (c.width, c.height), "must be positive")
        check(c.fps > 0, f"{key}.fps", c.fps, "must be positive")
        check(c.timeout_s > 0, f"{key}.timeout_s", c.timeout_s, "must be positive")
        check(c.max_age_s > 0, f"{key}.max_age_s", c.max_age_s, "must be positive")
        check(c.frozen_after >= 2, f"{key}.frozen_after", c.frozen_after, "must be >= 2")
        if isinstance(c, FakeCameraConfig) and c.replay:
            check(Path(c.replay).is_file(), f"{key}.replay", c.replay, "file not found")
        if isinstance(c, RealSenseCameraConfig) and c.recording:
            check(Path(c.recording).is_file(), f"{key}.recording", c.recording, "file not found")


def _check_safety(s: SafetyConfig, env_cfg: EnvConfig) -> None:
    period = 1.0 / env_cfg.control_hz
    for name in ("velocity_fraction", "torque_fraction", "acceleration_fraction", "jerk_fraction", "torque_rate_fraction"):
        value = getattr(s, name)
        check(0 < value <= 1, f"env.hardware.safety.{name}", value, "must be in (0, 1] of the datasheet limit")
    check(s.joint_margin_rad >= 0, "env.hardware.safety.joint_margin_rad", s.joint_margin_rad, "must be >= 0")
    check(s.taper_zone_rad > 0, "env.hardware.safety.taper_zone_rad", s.taper_zone_rad, "must be positive")
    check(len(s.workspace_min) == 3 and len(s.workspace_max) == 3, "env.hardware.safety.workspace_min/max", (s.workspace_min, s.workspace_max), "need 3 values each (x, y, z)")
    check(all(lo < hi for lo, hi in zip(s.workspace_min, s.workspace_max)), "env.hardware.safety.workspace_min", s.workspace_min, "must be below workspace_max on every axis")
    check(s.workspace_breach_m >= 0, "env.hardware.safety.workspace_breach_m", s.workspace_breach_m, "must be >= 0")
    # The watchdog must not fire between two on-time commands.
    check(
        period < s.watchdog_timeout_s and s.watchdog_timeout_s + s.watchdog_poll_s <= 2 * period + 1e-9,
        "env.hardware.safety.watchdog_timeout_s",
        s.watchdog_timeout_s,
        f"must exceed the control period {period:.3f} s, and with a poll ({s.watchdog_poll_s} s) stay within two periods ({2 * period:.3f} s)",
    )
    check(0 < s.watchdog_poll_s < s.watchdog_timeout_s, "env.hardware.safety.watchdog_poll_s", s.watchdog_poll_s, "must be positive and below watchdog_timeout_s")
    check(s.max_state_age_s > 0, "env.hardware.safety.max_state_age_s", s.max_state_age_s, "must be positive")
    check(s.tracking_tolerance > 0, "env.hardware.safety.tracking_tolerance", s.tracking_tolerance, "must be positive")
    check(s.tracking_timeout_s > 0, "env.hardware.safety.tracking_timeout_s", s.tracking_timeout_s, "must be positive")
    check(0 < s.torque_speed_headroom <= 1, "env.hardware.safety.torque_speed_headroom", s.torque_speed_headroom, "must be in (0, 1] of the velocity limits")


def _check_tracker(t: TrackerConfig, cams: dict[str, CameraDeviceConfig], env_cfg: EnvConfig) -> None:
    if t.kind is TrackerKind.none:
        check(not env_cfg.privileged, "env.privileged", True, "the real env has privileged state only with a tracker (env.hardware.tracker.kind: aruco)")
        return
    check(t.camera in cams, "env.hardware.tracker.camera", t.camera, f"not a configured camera (configured: {sorted(cams)})")
    check(bool(t.calibration), "env.hardware.tracker.calibration", t.calibration, "a tracker needs a camera calibration file")
    check(Path(t.calibration).is_file(), "env.hardware.tracker.calibration", t.calibration, "file not found")
    check(t.marker_size_m > 0, "env.hardware.tracker.marker_size_m", t.marker_size_m, "must be positive")
    check(t.kettle_marker_id != t.sink_marker_id, "env.hardware.tracker.sink_marker_id", t.sink_marker_id, "must differ from kettle_marker_id")
    for name in ("kettle_origin_in_marker", "handle_in_kettle", "sink_centre_in_marker"):
        check(len(getattr(t, name)) == 3, f"env.hardware.tracker.{name}", getattr(t, name), "needs 3 values")
    check(len(t.sink_half_size) == 2, "env.hardware.tracker.sink_half_size", t.sink_half_size, "needs 2 values")
    check(t.max_pose_age_s > 0, "env.hardware.tracker.max_pose_age_s", t.max_pose_age_s, "must be positive")


def _check_resets(r: ResetConfig) -> None:
    key = "env.hardware.resets"
    check(r.joint_noise_rad >= 0, f"{key}.joint_noise_rad", r.joint_noise_rad, "must be >= 0")
    check(r.tolerance_rad > 0, f"{key}.tolerance_rad", r.tolerance_rad, "must be positive")
    check(r.timeout_s > 0, f"{key}.timeout_s", r.timeout_s, "must be positive")
    check(r.gain > 0, f"{key}.gain", r.gain, "must be positive")
    check(r.max_speed > 0, f"{key}.max_speed", r.max_speed, "must be positive")
    check(r.human_timeout_s > 0, f"{key}.human_timeout_s", r.human_timeout_s, "must be positive")
