"""Sensing randomisation: the latency from an observation to its command, and joint encoder noise (to be built)."""

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
        self.rng = rng
        self.latency_s = 0.0
        self.drawn = {"latency_ms": 0.0}

    def joints(self, obs: dict[str, np.ndarray]) -> None:
        """Add encoder noise to the observed joints, in place."""
