"""The policy interface used by evaluation, actors and deploy, and the simplest policies."""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

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


class SeedActions:
    """Uniform random actions from `rng` while `random()` is true (seed steps, an actor without weights yet),
    else `policy`'s. The policy acts on every step either way, so its frame stack stays current."""

    def __init__(self, policy: Policy, rng: np.random.Generator, random: Callable[[], bool]):
        self.policy, self.rng, self.random = policy, rng, random

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        policy_action = self.policy.act(obs)
        if self.random():
            return self.rng.uniform(-1, 1, policy_action.shape).astype(np.float32)
        return policy_action
