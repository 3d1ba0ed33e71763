"""Dynamics randomisation: kettle mass and friction, gripper friction, joint damping, actuator gain (to be built)."""

from __future__ import annotations

import numpy as np

from robolearn.config import DynamicsRandomization
from sim.scene import Scene


class DynamicsRandomizer:
    def __init__(self, scene: Scene, cfg: DynamicsRandomization):
        self.scene, self.cfg = scene, cfg
        self.drawn: dict[str, float] = {}

    def apply(self, rng: np.random.Generator | None) -> None:
        """None: the nominal model values."""
        self.drawn = {}
