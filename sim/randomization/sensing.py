"""Sensing randomisation: the latency from an observation to its command, and joint encoder noise.

The latency is drawn once per episode (the env delays commands by it: KettleSinkEnv.step); the noise is
drawn every observation from this part's own stream, so it never shifts another part's draws.
"""

from __future__ import annotations

import numpy as np

from robolearn.config import RandomizationConfig


class SensingRandomizer:
    def __init__(self, cfg: RandomizationConfig):
        self.cfg = cfg
        self.rng: np.random.Generator | None = None
        self.latency_s = 0.0
        self.drawn: dict[str, float] = {}

    def reset(self, rng: np.random.Generator | None) -> None:
        """None: no latency and exact encoders."""
        self.rng = rng
        self.latency_s = 0.0 if rng is None else float(rng.uniform(*self.cfg.latency_ms)) / 1000.0
        self.drawn = {"latency_ms": self.latency_s * 1000.0}

    def latency_steps(self, timestep: float) -> int:
        """The latency in whole physics steps: when, after an observation, its command can start acting."""
        return int(round(self.latency_s / timestep))

    def joints(self, obs: dict[str, np.ndarray]) -> None:
        """Add encoder noise to the observed joints, in place."""
        if self.rng is None:
            return
        # Drawn even at zero std, so one key's noise level never shifts the other's draws.
        for key, std in (("joint_pos", self.cfg.joint_pos_noise), ("joint_vel", self.cfg.joint_vel_noise)):
            obs[key] += (std * self.rng.standard_normal(obs[key].shape)).astype(obs[key].dtype)
