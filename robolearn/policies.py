"""The policy interface used by evaluation, actors and deploy, and the simplest policies."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Policy(Protocol):
    def reset(self) -> None:
        """Called at the start of every episode."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Normalised action in the env's action space."""


class RandomPolicy:
    """Uniform random actions; seeded so evaluation runs repeat."""

    def __init__(self, env: gym.Env, seed: int = 0):
        self.space = env.action_space
        self.space.seed(seed)

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.space.sample()


class ZeroPolicy:
    """Holds still: zero joint command, gripper open."""

    def __init__(self, env: gym.Env):
        self.action = np.zeros(env.action_space.shape, dtype=np.float32)
        self.action[-1] = -1.0

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.action.copy()
