"""Seeded randomisation of the kettle-to-sink scene, for policies that survive the move to a real bench.

Each concern is a part with its own module; `SceneRandomizer` draws one seed per reset from the env's
generator and gives every part a stream of its own, derived from that seed and the part's name. Switching a
part off (or changing its ranges) therefore leaves every other part's draws unchanged, and a seeded reset
repeats exactly. Every key and range: robolearn.config.RandomizationConfig and docs/sim.md.

    kettle pose     where the kettle is put down (the env applies it)
    visual          materials and textures, lighting and shadows, camera pose and field of view, distractors
    image           brightness, contrast, noise and blur of the rendered frames
    dynamics        kettle mass and friction, gripper friction, joint damping, actuator gain
    sensing         the observation-to-action latency and the joint encoders' noise
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from robolearn.config import RandomizationConfig
from sim.randomization.dynamics import DynamicsRandomizer
from sim.randomization.image import ImageRandomizer
from sim.randomization.sensing import SensingRandomizer
from sim.randomization.visual import VisualRandomizer
from sim.scene import Scene


def part_stream(seed: int, name: str) -> np.random.Generator:
    """The generator of one part for one episode: independent of every other part's."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


class SceneRandomizer:
    """The parts, reset together at every env reset; the env asks them for per-step effects."""

    def __init__(self, scene: Scene, cfg: RandomizationConfig):
        self.scene, self.cfg = scene, cfg
        self.visual = VisualRandomizer(scene, cfg)
        self.image = ImageRandomizer(cfg.image, [name for name in scene.camera_ids])
        self.dynamics = DynamicsRandomizer(scene, cfg.dynamics)
        self.sensing = SensingRandomizer(cfg)
        self.kettle_rng = np.random.default_rng(0)
        self.episode: dict[str, Any] = {}

    def reset(self, rng: np.random.Generator) -> None:
        """Draw this episode's scene; `rng` is the env's own generator (one draw from it per reset)."""
        seed = int(rng.integers(2**63))
        on = self.cfg.enabled
        self.kettle_rng = part_stream(seed, "kettle_pose")
        self.visual.apply(part_stream(seed, "visual") if on else None)
        self.image.reset(part_stream(seed, "image") if on else None)
        self.dynamics.apply(part_stream(seed, "dynamics") if on else None)
        self.sensing.reset(part_stream(seed, "sensing") if on else None)
        self.episode = {"seed": seed, **self.visual.drawn, **self.dynamics.drawn, **self.sensing.drawn}

    def redraw_look(self, rng: np.random.Generator) -> None:
        """A new look for the frames from now on (materials, lights, cameras, distractors, image effects); the
        kettle's start, the dynamics and the sensing stay this episode's, so the physics is untouched (the
        distractors are visual only). Pretraining uses it to see many more scenes than it runs episodes."""
        if not self.cfg.enabled:
            return
        seed = int(rng.integers(2**63))
        self.visual.apply(part_stream(seed, "visual"))
        self.image.reset(part_stream(seed, "image"))
        self.episode.update(look_seed=seed, **self.visual.drawn)

    @property
    def shadows(self) -> bool:
        """Whether this episode's frames are rendered with shadows."""
        return self.visual.shadows
