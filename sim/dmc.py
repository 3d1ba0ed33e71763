"""dm_control suite tasks from pixels behind the robolearn env contract.

So anyone can check the learner against published DrQ / DrQ-v2 results (cartpole swingup, walker walk,
...): observations are `{"pixels": uint8 HxWx3}` (plus `"state"` when asked), actions are a `Box(-1, 1)`
scaled to the task's action bounds, rewards are summed over `action_repeat` physics-control steps, and
the suite's time limit is a truncation, never a termination.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robolearn.config import ConfigError
from robolearn.spec import InvalidActionError


@dataclass
class DMCConfig:
    factory: str = "sim.make_dmc_env"
    domain: str = "cartpole"
    task: str = "swingup"
    image_size: int = 84
    camera_id: int = 0  # DrQ-v2 uses camera 2 for quadruped, 0 elsewhere
    action_repeat: int = 2
    state: bool = False  # also expose the flattened proprioceptive state as "state"


def load_dmc_config(node: Any = None, **overrides: Any) -> DMCConfig:
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DMCConfig), node or {}, overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"env config: {exc}") from None
    if cfg.action_repeat < 1 or cfg.image_size < 16:
        raise ConfigError(f"env config: action_repeat must be >= 1 and image_size >= 16, got {cfg.action_repeat}, {cfg.image_size}")
    return cfg


class DMCPixelsEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, cfg: DMCConfig, render_mode: str | None = None):
        from dm_control import suite

        if (cfg.domain, cfg.task) not in suite.ALL_TASKS:
            raise ConfigError(f"env: dm_control suite has no task {cfg.domain}/{cfg.task}")
        self.cfg, self.render_mode = cfg, render_mode
        self._suite = suite
        self._env = suite.load(cfg.domain, cfg.task, task_kwargs={"random": 0})
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        items = {"pixels": spaces.Box(0, 255, (cfg.image_size, cfg.image_size, 3), np.uint8)}
        if cfg.state:
            dim = sum(int(np.prod(v.shape)) for v in self._env.observation_spec().values())
            items["state"] = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.observation_space = spaces.Dict(items)
        self.action_space = spaces.Box(-1.0, 1.0, spec.shape, np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:  # the suite seeds a task at construction: rebuild it for a new seed
            self._env = self._suite.load(self.cfg.domain, self.cfg.task, task_kwargs={"random": seed})
        time_step = self._env.reset()
        return self._observation(time_step), {"success": False, "reward_terms": {"task": 0.0}}

    def step(self, action):
        arr = np.asarray(action, dtype=np.float64)
        if arr.shape != self.action_space.shape or not np.all(np.isfinite(arr)):
            raise InvalidActionError(f"action must be finite with shape {self.action_space.shape}, got {arr.shape}: {arr}")
        scaled = self._low + (np.clip(arr, -1, 1) + 1) * 0.5 * (self._high - self._low)
        reward = 0.0
        for _ in range(self.cfg.action_repeat):
            time_step = self._env.step(scaled)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        truncated = bool(time_step.last())  # suite episodes end on a time limit only
        return self._observation(time_step), float(reward), False, truncated, {"success": False, "reward_terms": {"task": float(reward)}}

    def render(self):
        if self.render_mode == "rgb_array":
            return self._env.physics.render(240, 320, camera_id=self.cfg.camera_id)
        return None

    def _observation(self, time_step) -> dict[str, np.ndarray]:
        size = self.cfg.image_size
        obs = {"pixels": self._env.physics.render(size, size, camera_id=self.cfg.camera_id)}
        if self.cfg.state:
            obs["state"] = np.concatenate([np.asarray(v, np.float32).ravel() for v in time_step.observation.values()])
        return obs


def make_dmc_env(cfg=None, render_mode: str | None = None, **overrides) -> DMCPixelsEnv:
    return DMCPixelsEnv(load_dmc_config(cfg, **overrides), render_mode=render_mode)
