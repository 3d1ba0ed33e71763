"""The kettle-to-sink gymnasium env on MuJoCo.

Per-substep work stays inside MuJoCo (actuators, native gravity compensation, `mj_step` with `nstep`):
Python runs once per control step, which is what keeps pixel rollouts fast on a CPU.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from robolearn.config import ControlMode, EnvConfig
from robolearn.spec import EnvSpec
from robolearn.task import TaskState, compute_reward
from sim import kettle as kettle_entity
from sim.arm import FINGER_TRAVEL
from sim.kitchen import COUNTER_X, COUNTER_Y, KETTLE_NOMINAL_XY, SINK
from sim.randomization import SceneRandomizer
from sim.rendering import make_renderer, upload_textures
from sim.scene import compile_scene

VIDEO_SIZE = (480, 640)
KETTLE_START_Z = kettle_entity.HALF_HEIGHT + 0.001  # resting on the counter
# Higher than this above its start the kettle was picked up (an evaluation's failure modes: info["outcome"]).
LIFTED_M = 0.03
OUTCOMES = ("success", "fell", "lifted", "not_lifted")


class KettleSinkEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, cfg: EnvConfig, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.cfg = cfg
        self.contract = EnvSpec.from_config(cfg)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": cfg.control_hz}
        self.scene = compile_scene(cfg)
        self.model = self.scene.model
        self.data = mujoco.MjData(self.model)
        self.observation_space = self.contract.observation_space()
        self.action_space = self.contract.action_space()
        self._randomizer = SceneRandomizer(self.scene, cfg.randomization)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._video_renderer: mujoco.Renderer | None = None
        self._texture_versions: dict[int, int] = {}  # id(renderer) -> the randomiser's textures_version it holds
        self._steps = 0
        self._gripper_target = FINGER_TRAVEL
        self._kettle_lifted = False  # this episode, for info["outcome"]
        # Latency: the command acting now, and those chosen but not yet acting (oldest first).
        self._acting = self._rest_command()
        self._pending: deque[tuple[np.ndarray, float]] = deque()

    # -- gymnasium API -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        s, m, d = self.scene, self.model, self.data
        mujoco.mj_resetData(m, d)
        self._randomizer.reset(self.np_random)
        d.qpos[s.arm_qpos] = s.robot.home
        d.qpos[s.finger_qpos] = FINGER_TRAVEL
        # Until the first command takes effect (after the latency), the arm holds still with the gripper open.
        self._acting = self._rest_command()
        self._pending.clear()
        d.ctrl[:] = 0.0
        self._apply(self._acting)
        x, y, yaw = self._kettle_start()
        d.qpos[s.kettle_qpos : s.kettle_qpos + 3] = [x, y, KETTLE_START_Z]
        d.qpos[s.kettle_qpos + 3 : s.kettle_qpos + 7] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        mujoco.mj_forward(m, d)
        self._steps = 0
        self._kettle_lifted = False
        obs = self._observation()
        _, terms, success = self._reward()
        return obs, self._info(terms, success, fell=False)

    def _kettle_start(self) -> tuple[float, float, float]:
        r, rng = self.cfg.randomization, self._randomizer.kettle_rng
        if not r.enabled:
            return KETTLE_NOMINAL_XY[0], KETTLE_NOMINAL_XY[1], 0.0
        (x0, x1), (y0, y1), (yaw0, yaw1) = r.kettle_x_range, r.kettle_y_range, r.kettle_yaw_range
        if not r.kettle_start_edge:
            x, y, yaw = rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(yaw0, yaw1)
        else:
            # A point on the start area's boundary, uniform along its perimeter, turned to one end of the yaw range.
            w, h = x1 - x0, y1 - y0
            t = rng.uniform(0.0, 2 * (w + h))
            if t < w:
                x, y = x0 + t, y0
            elif t < w + h:
                x, y = x1, y0 + (t - w)
            elif t < 2 * w + h:
                x, y = x1 - (t - w - h), y1
            else:
                x, y = x0, y1 - (t - 2 * w - h)
            yaw = yaw0 if rng.uniform() < 0.5 else yaw1
        return KETTLE_NOMINAL_XY[0] + x, KETTLE_NOMINAL_XY[1] + y, yaw

    def step(self, action):
        # Raises InvalidActionError before anything touches the physics.
        joint_command, gripper = self.contract.scale_action(action)
        self._pending.append((joint_command, FINGER_TRAVEL * (1.0 - gripper) / 2.0))
        self._advance_physics()
        self._steps += 1
        obs = self._observation()
        fell = self._kettle_fell()
        self._kettle_lifted |= bool(self.data.qpos[self.scene.kettle_qpos + 2] > KETTLE_START_Z + LIFTED_M)
        reward, terms, success = self._reward(fell)
        terminated = fell or (success and self.cfg.terminate_on_success)
        truncated = not terminated and self._steps >= self.cfg.max_episode_steps
        return obs, reward, terminated, truncated, self._info(terms, success, fell)

    def _advance_physics(self) -> None:
        """One control period. With a latency of L physics steps, the command chosen k periods ago (k = L // n,
        n substeps a period) takes over L % n steps into this period; until then the previous one keeps acting."""
        n = self.cfg.substeps
        periods, offset = divmod(self._randomizer.sensing.latency_steps(self.model.opt.timestep), n)
        if len(self._pending) <= periods:  # the first commands of an episode are still on their way
            mujoco.mj_step(self.model, self.data, nstep=n)
            return
        if offset:
            mujoco.mj_step(self.model, self.data, nstep=offset)
        self._acting = self._pending.popleft()
        self._apply(self._acting)
        mujoco.mj_step(self.model, self.data, nstep=n - offset)

    def success_after_stop(self, seconds: float) -> bool:
        """The simulator's success once the arm stops where it is (joints held still, the gripper as last
        commanded) and the kettle has had up to `seconds` to come to rest: how a person judges an episode that
        something other than the simulator ended (an arm's success classifier). Physics only, nothing rendered;
        call it after the episode's last step (it moves the simulation on)."""
        if self._reward(self._kettle_fell())[2]:
            return True
        self._pending.clear()
        self._apply((np.zeros(self.contract.n_joints), self._gripper_target))
        for _ in range(max(1, round(seconds * self.cfg.control_hz))):
            mujoco.mj_step(self.model, self.data, nstep=self.cfg.substeps)
            if self._reward(self._kettle_fell())[2]:
                return True
        return False

    def _rest_command(self) -> tuple[np.ndarray, float]:
        """Zero joint velocity (or torque) and the gripper open."""
        return np.zeros(self.contract.n_joints), FINGER_TRAVEL

    def _apply(self, command: tuple[np.ndarray, float]) -> None:
        s, d = self.scene, self.data
        d.ctrl[s.arm_actuators], self._gripper_target = command
        d.ctrl[s.gripper_actuator] = self._gripper_target

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._video_renderer is None:
            self._video_renderer = self._new_renderer(*VIDEO_SIZE)
        self._refresh_textures(self._video_renderer)
        self._video_renderer.update_scene(self.data, camera=self.scene.camera_ids.get("front", 0))
        self._video_renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.cfg.render.shadows or self._randomizer.shadows
        return self._video_renderer.render()

    def redraw_look(self, rng: np.random.Generator) -> None:
        """Draw a new visual randomisation (not the physics'), seen from the next observation on; a no-op
        with env.randomization.enabled=false."""
        self._randomizer.redraw_look(rng)

    def randomization(self) -> dict:
        """What this episode drew (seed, shadows, dynamics scales, latency, ...), for logs and tests."""
        return dict(self._randomizer.episode)

    def close(self):
        for renderer in [*self._renderers.values(), self._video_renderer]:
            if renderer is not None:
                renderer.close()
        self._renderers.clear()
        self._texture_versions.clear()
        self._video_renderer = None

    # -- state ---------------------------------------------------------------------------------------
    def privileged_state(self) -> np.ndarray:
        """Kettle position and quaternion, handle position, sink position (the contract's layout)."""
        s, d = self.scene, self.data
        return np.concatenate(
            [
                d.qpos[s.kettle_qpos : s.kettle_qpos + 7],
                d.site_xpos[s.handle_site],
                d.site_xpos[s.sink_site],
            ]
        ).astype(np.float32)

    def tcp_position(self) -> np.ndarray:
        return self.data.site_xpos[self.scene.tcp_site].copy()

    def _observation(self) -> dict[str, np.ndarray]:
        s, d = self.scene, self.data
        obs: dict[str, np.ndarray] = {}
        for name, h, w in self.contract.cameras:
            renderer = self._renderers.get((h, w))
            if renderer is None:
                renderer = self._renderers[(h, w)] = self._new_renderer(h, w)
            self._refresh_textures(renderer)
            renderer.update_scene(d, camera=s.camera_ids[name])
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.cfg.render.shadows or self._randomizer.shadows
            obs[name] = self._randomizer.image(name, renderer.render())
        obs["joint_pos"] = d.qpos[s.arm_qpos].astype(np.float32)
        obs["joint_vel"] = d.qvel[s.arm_dof].astype(np.float32)
        self._randomizer.sensing.joints(obs)
        width = float(np.clip(d.qpos[s.finger_qpos].sum(), 0.0, 2 * FINGER_TRAVEL))
        obs["gripper"] = np.array([width], dtype=np.float32)
        if self.contract.privileged:
            obs["privileged"] = self.privileged_state()
        return obs

    def _new_renderer(self, height: int, width: int) -> mujoco.Renderer:
        renderer = make_renderer(self.model, height, width, self.cfg.render)
        self._texture_versions[id(renderer)] = self._randomizer.visual.textures_version  # uploaded as it was made
        return renderer

    def _refresh_textures(self, renderer: mujoco.Renderer) -> None:
        """Re-upload textures to a renderer made before this episode's materials were drawn."""
        version = self._randomizer.visual.textures_version
        if self._texture_versions[id(renderer)] != version:
            upload_textures(renderer, self.model)
            self._texture_versions[id(renderer)] = version

    def _task_state(self) -> TaskState:
        s, d = self.scene, self.data
        return TaskState(
            kettle_pos=d.qpos[s.kettle_qpos : s.kettle_qpos + 3].copy(),
            kettle_lin_vel=d.qvel[s.kettle_dof : s.kettle_dof + 3].copy(),
            handle_pos=d.site_xpos[s.handle_site].copy(),
            tcp_pos=d.site_xpos[s.tcp_site].copy(),
        )

    def _reward(self, kettle_fell: bool = False):
        return compute_reward(self._task_state(), SINK, kettle_entity.GEOMETRY, self.cfg.task, kettle_fell)

    def _kettle_fell(self) -> bool:
        x, y, z = self.data.qpos[self.scene.kettle_qpos : self.scene.kettle_qpos + 3]
        off_counter = not (COUNTER_X[0] <= x <= COUNTER_X[1] and COUNTER_Y[0] <= y <= COUNTER_Y[1])
        return bool(off_counter or z < -SINK.depth - 0.1)

    def outcome(self, success: bool, fell: bool | None = None) -> str:
        """One of OUTCOMES: placed (success), off the counter (fell), picked up but not placed (lifted), never
        picked up (not_lifted). `fell` None: as the kettle is now."""
        fell = self._kettle_fell() if fell is None else fell
        return "success" if success else "fell" if fell else "lifted" if self._kettle_lifted else "not_lifted"

    def _info(self, terms: dict[str, float], success: bool, fell: bool) -> dict[str, Any]:
        s, d = self.scene, self.data
        return {
            "success": success,
            "kettle_fell": fell,
            # How the episode stands; its last step's says how it ended (an evaluation's failure modes).
            "outcome": self.outcome(success, fell),
            "reward_terms": terms,
            "tcp_pos": self.tcp_position(),
            # The scene in the base frame, for the live view (robolearn/display.py); the policy never reads info.
            "kettle_pos": d.qpos[s.kettle_qpos : s.kettle_qpos + 3].copy(),
            "handle_pos": d.site_xpos[s.handle_site].copy(),
            "sink_pos": d.site_xpos[s.sink_site].copy(),
            "control_mode": self.contract.control_mode.value,
        }


__all__ = ["KettleSinkEnv", "ControlMode"]
