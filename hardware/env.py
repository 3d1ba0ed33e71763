"""The real-robot env: the sim's contract on a physical arm (or on the fake driver and fake cameras).

Same spaces and action normalisation as the sim for the same config (both come from `EnvSpec`). Each
step: the action is checked and scaled (a bad action raises before anything is sent), sent through the
safety layer, then the loop waits for the next absolute deadline and assembles the observation from the
latest camera frames and robot state, with their ages checked. Reset moves home through the safety
layer (hardware.resets.Homing). Reward and success come from `robolearn.task`, fed by the tracker; without one, reward is 0 and
success is reported as unknown (`info["success_known"] = False`).

A latched safety fault truncates the episode; `reset()` then refuses until `clear_fault()` succeeds.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec as GymEnvSpec
from omegaconf import OmegaConf

from hardware.cameras import Camera, CameraError, make_camera
from hardware.config import ClockKind, HardwareConfig, load_hardware_config
from hardware.drivers import DriverError, RobotDriver, make_driver
from hardware.resets import Homing, home_pose
from hardware.safety.kinematics import TcpKinematics
from hardware.safety.layer import ResetRefused, SafetyLayer
from hardware.safety.limits import SafetyLimits
from hardware.timing import Clock, DeadlineLoop, MonotonicClock, VirtualClock, set_realtime_priority
from hardware.tracking import make_tracker
from robolearn.camera_calibration import learning_crop
from robolearn.config import ConfigError, ControlMode, EnvConfig, load_env_config
from robolearn.spec import PRIVILEGED_DIM, EnvSpec
from robolearn.task import KettleGeometry, SinkGeometry, TaskState, compute_reward


class EStopLatched(RuntimeError):
    """The safety layer's e-stop is latched; the message says why and how to clear it."""


class RealRobotEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, cfg: EnvConfig | dict | None, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        # Everything that can be wrong in the config fails here, before anything connects or moves.
        self.cfg = cfg = load_env_config(cfg)
        self.hw: HardwareConfig = load_hardware_config(cfg)
        self.contract = EnvSpec.from_config(cfg)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": cfg.control_hz}
        # A physical arm cannot be put back exactly, so seeded resets are close, not identical. The
        # spec's kwargs rebuild this env (gymnasium's checker and wrappers use them).
        self.spec = GymEnvSpec(
            "robolearn/RealRobot-v0",
            entry_point="hardware:make_real_robot_env",
            nondeterministic=True,
            kwargs={"cfg": OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)},
        )
        robot = self.robot = self.contract.robot
        self.observation_space = self.contract.observation_space()
        self.action_space = self.contract.action_space()
        self._mode = "velocity" if cfg.control_mode is ControlMode.joint_velocity else "torque"
        self._kin = TcpKinematics(robot)
        limits = SafetyLimits.from_config(self.hw.safety, robot, command_hold_s=self.hw.driver.command_hold_s, control_hz=cfg.control_hz)
        self.home = home_pose(self.hw.resets, robot, limits)
        self.tracker = make_tracker(self.hw.tracker)
        self.virtual = self.hw.loop.clock is ClockKind.virtual
        self.clock: Clock = VirtualClock() if self.virtual else MonotonicClock(self.hw.loop.spin_s)
        self.loop = DeadlineLoop(self.clock, 1.0 / cfg.control_hz)
        self.driver: RobotDriver = make_driver(self.hw.driver, robot, self.clock, soft_limits=(limits.soft_q_min, limits.soft_q_max))
        self.cameras: dict[str, Camera] = {}
        self.safety: SafetyLayer | None = None
        self._steps = 0
        self._last_state = None
        self._last_images: dict[str, np.ndarray] = {}
        self._episode_misses = 0
        self._tcp = np.zeros(3)
        self._returned_at = 0.0
        self._realtime_thread: int | None = None  # native id of the thread raised to SCHED_FIFO
        # Reward term names as the shared task code reports them (unknown reward: all zero).
        z = np.zeros(3)
        dummy = TaskState(kettle_pos=z, kettle_lin_vel=z, handle_pos=z, tcp_pos=z)
        self._term_names = tuple(compute_reward(dummy, SinkGeometry(z, (0.1, 0.1), 0.1), KettleGeometry(0.1, 0.1), cfg.task)[1])
        try:
            self._connect(limits)
        except BaseException:
            self.close()
            raise

    # -- set-up ------------------------------------------------------------------------------------
    def _connect(self, limits: SafetyLimits) -> None:
        self.driver.connect()
        priority = self.hw.loop.realtime_priority
        try:
            self.safety = SafetyLayer(
                self.driver,
                limits.tightened(self.driver.reported_limits),
                self.clock,
                watchdog_thread=not self.virtual,
                realtime_priority=priority + 1 if priority else 0,  # the watchdog preempts the loop
            )
        except PermissionError as exc:
            raise ConfigError(f"invalid value for env.hardware.loop.realtime_priority: {priority} (not permitted here: {exc}; run as root or grant CAP_SYS_NICE / an rtprio limit)") from None
        self.homing = Homing(self.hw.resets, self.robot, self.safety, self.loop, virtual=self.virtual)
        names = [name for name, _, _ in self.contract.cameras]
        if self.tracker is not None and self.tracker.camera not in names:
            names.append(self.tracker.camera)
        for name in names:
            self.cameras[name] = make_camera(name, self.hw.cameras[name], self.clock, on_fault=self._on_camera_fault, threaded=not self.virtual, scene=self._scene)
        for camera in self.cameras.values():
            camera.start()
        for camera in self.cameras.values():
            camera.wait_first_frame(max(2.0, camera.cfg.timeout_s))
        if priority:
            # After the capture threads exist: they keep normal scheduling (threads inherit the policy).
            try:
                set_realtime_priority(priority)
            except PermissionError as exc:
                raise ConfigError(f"invalid value for env.hardware.loop.realtime_priority: {priority} (not permitted here: {exc})") from None
            self._realtime_thread = threading.get_native_id()

    def _scene(self):
        """What fake cameras draw: the arm's TCP and gripper opening, from the driver."""
        try:
            state = self.driver.read_state()
        except DriverError:
            return None
        return self._kin.position(state.q.tolist()), state.gripper_width

    def _on_camera_fault(self, name: str, kind: str, message: str) -> None:
        # Called from the capture thread: a blind policy must not keep moving the arm.
        safety = self.safety
        if safety is not None:
            safety.trigger_fault("camera", message, still_active=self.cameras[name].unhealthy_reason, cause=f"camera:{name}")

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._require_clear()
        noise = self.hw.resets.joint_noise_rad
        target = self.home + (self.np_random.uniform(-noise, noise, size=self.home.shape) if noise > 0 else 0.0)
        self.safety.drain_events()
        self.homing.move_to(target)
        if self.tracker is not None:
            self.tracker.reset()
        self._steps = 0
        self._episode_misses = 0
        self.loop.restart()
        obs, obs_info = self._observe()
        _, terms, success, known = self._score()
        info = self._info(terms, success, known, obs_info, tick=None)
        self._returned_at = self.clock.now()
        return obs, info

    def step(self, action):
        # Raises InvalidActionError before anything is sent.
        joint_command, gripper = self.contract.scale_action(action)
        agent_s = self.clock.now() - self._returned_at  # the agent's time since the last step returned
        safety = self.safety
        if self.virtual:
            safety.poll()
        sent = safety.command(self._mode, joint_command) and safety.command_gripper(gripper)
        executed = self._executed_action(sent)
        tick = self.loop.wait()
        if tick.missed:
            self._episode_misses += 1
        if self.virtual:
            safety.poll()
        obs, obs_info = self._observe()
        self._steps += 1
        reward, terms, success, known = self._score()
        terminated = bool(known and success and self.cfg.terminate_on_success)
        truncated = bool(not terminated and (self._steps >= self.cfg.max_episode_steps or safety.latched))
        if terminated or truncated:
            safety.hold()  # between episodes the arm rests and the watchdog is disarmed
        # Otherwise the command stands until the next step's: the watchdog counts from it, so the agent's
        # time counts against watchdog_timeout_s (two control periods by default).
        info = self._info(terms, success, known, obs_info, tick, agent_s)
        info["executed_action"] = executed
        self._returned_at = self.clock.now()
        return obs, float(reward), terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array" or not self.cameras:
            return None
        try:
            return next(iter(self.cameras.values())).read_latest().image
        except CameraError:
            return None

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        if self._realtime_thread is not None:
            set_realtime_priority(0, self._realtime_thread)  # the caller's thread goes back to normal
            self._realtime_thread = None
        if self.safety is not None:
            try:
                self.safety.hold()
            finally:
                self.safety.close()
        for camera in self.cameras.values():
            camera.stop()
        self.cameras = {}
        try:
            self.driver.close()
        except DriverError:
            pass

    # -- faults ------------------------------------------------------------------------------------
    def clear_fault(self, *, recover_robot_errors: bool = False, reconnect: bool = False) -> None:
        """Explicitly clear a latched e-stop once its cause is gone (ResetRefused otherwise).

        recover_robot_errors: also clear the robot's own error (after a reflex) - look at the arm first.
        reconnect: reconnect a lost robot connection first.
        """
        # Cameras first: the layer is cleared last, and only if nothing is still wrong (a camera that cannot
        # be cleared keeps the arm latched, whatever else was fixed).
        problems = []
        for camera in self.cameras.values():
            try:
                camera.clear_fault()
            except CameraError as exc:
                problems.append(str(exc))
        if problems:
            raise ResetRefused("; ".join(problems))
        self.safety.reset(recover_robot_errors=recover_robot_errors, reconnect=reconnect)

    @property
    def latched(self) -> bool:
        return self.safety.latched

    def _require_clear(self) -> None:
        fault = self.safety.fault
        if fault is not None:
            raise EStopLatched(
                f"safety e-stop latched by {fault.layer}: {fault.message}. Deploy, teleop and eval end their run here "
                "and none of them clears it: look at the arm, remove the cause (a robot-side stop is released at the arm, "
                "on its pendant or Desk), then run the command again (a new run starts unlatched; deploy runs pre-flight "
                "first). From your own script: env.clear_fault() (recover_robot_errors=True after a robot reflex, reconnect=True after "
                "a lost connection)."
            )

    def move_joints(self, target) -> None:
        """Scripted motion to a joint configuration (rad) through the safety layer, then hold. The
        building block of scripted resets (hardware.resets); raises ResetFailed if it does not arrive."""
        self._require_clear()
        target = np.asarray(target, dtype=np.float64)
        if target.shape != self.home.shape or not np.all(np.isfinite(target)):
            raise ValueError(f"move_joints: target must be {self.home.shape[0]} finite joint angles, got {target.tolist()}")
        self.homing.move_to(target)

    # -- internals ---------------------------------------------------------------------------------
    def _executed_action(self, sent: bool) -> np.ndarray:
        """What the arm was told to do this step, after the safety layer, in the policy's action space
        (normalised like the action). A refused command (latched) means the arm is stopping: zeros."""
        safety = self.safety
        last = safety.last_command if sent else None
        joints = np.asarray(last[1]) if last is not None else np.zeros(self.robot.n_joints)
        gripper = safety.last_gripper
        return self.contract.normalise_command(joints, -1.0 if gripper is None else gripper)

    def _observe(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        state = self.safety.read_state()
        now = self.clock.now()
        state_valid = state is not None
        if state is None:
            state = self._last_state  # the arm is stopped and latched; report the last known state
        else:
            self._last_state = state
        obs: dict[str, np.ndarray] = {}
        cameras: dict[str, Any] = {}
        for name, h, w in self.contract.cameras:
            obs[name], cameras[name] = self._image(name, h, w, now)
        if self.tracker is not None:
            try:
                self.tracker.update(self.cameras[self.tracker.camera].read_latest())
            except CameraError:
                pass
        n = self.robot.n_joints
        if state is None:
            q, dq, width = self.home, np.zeros(n), 0.0
        else:
            q, dq, width = state.q, state.dq, state.gripper_width
        obs["joint_pos"] = np.asarray(q, dtype=np.float32)
        obs["joint_vel"] = np.asarray(dq, dtype=np.float32)
        obs["gripper"] = np.array([min(max(width, 0.0), self.robot.gripper_max_width)], dtype=np.float32)
        privileged_valid = None
        if self.contract.privileged:
            vector = self.tracker.privileged(now)
            privileged_valid = vector is not None
            obs["privileged"] = vector if vector is not None else np.zeros(PRIVILEGED_DIM, dtype=np.float32)
        self._tcp = np.asarray(self._kin.position(np.asarray(q).tolist()))
        info = {
            "state_valid": state_valid,
            "state_age_ms": None if not state_valid else round((now - state.host_time) * 1000.0, 3),
            "cameras": cameras,
        }
        if privileged_valid is not None:
            info["privileged_valid"] = privileged_valid
        return obs, info

    def _image(self, name: str, h: int, w: int, now: float) -> tuple[np.ndarray, dict[str, Any]]:
        camera = self.cameras[name]
        try:
            frame = camera.read_latest()
        except CameraError as exc:
            image = self._last_images.get(name, np.zeros((h, w, 3), dtype=np.uint8))
            return image, {"valid": False, "error": str(exc)}
        image = frame.image
        if image.shape[:2] != (h, w):
            # Centre crop to the learning aspect, then resize: square pixels, as the sim camera has
            # (robolearn.camera_calibration.learning_crop; the calibration's camera matrix follows the same crop).
            x0, y0, crop_w, crop_h = learning_crop(image.shape[1], image.shape[0], w, h)
            image = cv2.resize(image[y0 : y0 + crop_h, x0 : x0 + crop_w], (w, h), interpolation=cv2.INTER_AREA)
        else:
            image = image.copy()  # the camera keeps its frame; every observation owns its arrays
        self._last_images[name] = image
        health = camera.health()
        events = camera.drain_events()
        return image, {
            "valid": health.fault is None,
            "frame_number": frame.frame_number,
            "age_ms": round((now - frame.host_time) * 1000.0, 3),
            "stale": camera.is_stale(frame, now),
            "dropped_total": health.dropped,
            "events": [e.message for e in events],
            "fault": health.fault,
        }

    def _score(self) -> tuple[float, dict[str, float], bool, bool]:
        """(reward, terms, success, known)."""
        if self.tracker is not None:
            tracked = self.tracker.task_state(self.clock.now(), self._tcp)
            if tracked is not None:
                state, sink = tracked
                reward, terms, success = compute_reward(state, sink, self.tracker.kettle, self.cfg.task)
                return float(reward), terms, bool(success), True
        return 0.0, dict.fromkeys(self._term_names, 0.0), False, False

    def _info(self, terms, success, known, obs_info, tick, agent_s: float = 0.0) -> dict[str, Any]:
        safety = self.safety
        fault = safety.fault
        info = {
            "success": bool(success),
            "success_known": bool(known),  # False: no fresh tracker poses, reward is 0 and success unknown
            "reward_source": self.tracker.name if self.tracker is not None else "none",
            "reward_terms": terms,
            "tcp_pos": self._tcp.copy(),
            "control_mode": self.contract.control_mode.value,
            "safety": {
                "estop": fault is not None,
                "fault": None if fault is None else f"{fault.layer}: {fault.message}",
                "events": [e.as_dict() for e in safety.drain_events()],
                "counters": dict(safety.counters),
            },
            **obs_info,
        }
        if tick is not None:
            info["timing"] = {
                "deadline_missed": tick.missed,
                "lateness_ms": round(tick.lateness * 1000.0, 3),
                "period_ms": round(tick.period * 1000.0, 3),
                "deadline_misses": self._episode_misses,
                "agent_ms": round(agent_s * 1000.0, 3),  # between the last step's return and this call
            }
        return info


def make_real_robot_env(cfg=None, render_mode: str | None = None, **overrides) -> RealRobotEnv:
    """Factory named by `env.factory` in the configs (see configs/env/real_fake.yaml)."""
    return RealRobotEnv(load_env_config(cfg, **overrides), render_mode=render_mode)
