"""Procedural textures for the material randomisation: small RGB images made in numpy, one family per pattern.

Families are split into a `train` pool and a `heldout` pool that training never draws (the transfer benchmark's
unseen textures). Each family maps a generator, a size and two colours (0-1 RGB) to a uint8 HxWx3 image.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

Texture = Callable[[np.random.Generator, int, np.ndarray, np.ndarray], np.ndarray]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    v = np.arange(size, dtype=np.float32) / size
    return np.meshgrid(v, v, indexing="xy")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upscaled smoothly (cheap, and tiles well enough)."""
    coarse = rng.random((cells, cells), dtype=np.float32)
    return np.clip(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _mix(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Blend two colours by the weight map t (0 -> a, 1 -> b) into uint8 RGB."""
    rgb = a[None, None, :] * (1.0 - t[..., None]) + b[None, None, :] * t[..., None]
    return (np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


# -- train pool ---------------------------------------------------------------------------------------
def checker(rng, size, a, b):
    cells = int(rng.integers(2, 9))
    x, y = _grid(size)
    return _mix(((np.floor(x * cells) + np.floor(y * cells)) % 2).astype(np.float32), a, b)


def stripes(rng, size, a, b):
    angle, period, duty = rng.uniform(0, np.pi), rng.uniform(0.08, 0.35), rng.uniform(0.3, 0.7)
    x, y = _grid(size)
    phase = (x * np.cos(angle) + y * np.sin(angle)) / period
    return _mix((phase % 1.0 < duty).astype(np.float32), a, b)


def granite(rng, size, a, b):
    speckle = rng.random((size, size), dtype=np.float32)
    t = 0.5 * _smooth_noise(rng, size, int(rng.integers(4, 12))) + 0.5 * (speckle > rng.uniform(0.6, 0.9))
    return _mix(t, a, b)


def wood(rng, size, a, b):
    """Growth rings: bands along one axis, warped by smooth noise."""
    rings, warp = rng.uniform(4, 12), rng.uniform(0.5, 2.0)
    x, y = _grid(size)
    along = x if rng.random() < 0.5 else y
    t = 0.5 + 0.5 * np.sin(2 * np.pi * rings * along + warp * 2 * np.pi * _smooth_noise(rng, size, 4))
    return _mix(t**2, a, b)


def tiles(rng, size, a, b):
    """Square tiles of slightly varied colour, separated by grout lines of the second colour."""
    cells, grout = int(rng.integers(2, 7)), rng.uniform(0.04, 0.12)
    x, y = _grid(size)
    fx, fy = (x * cells) % 1.0, (y * cells) % 1.0
    line = (np.minimum(fx, 1 - fx) < grout / 2) | (np.minimum(fy, 1 - fy) < grout / 2)
    shade = rng.uniform(0.0, 0.25, size=(cells, cells)).astype(np.float32)
    t = shade[np.floor(y * cells).astype(int), np.floor(x * cells).astype(int)]
    return _mix(np.where(line, 1.0, t).astype(np.float32), a, b)


# -- heldout pool (never drawn in training) --------------------------------------------------------------
def gradient(rng, size, a, b):
    angle = rng.uniform(0, 2 * np.pi)
    x, y = _grid(size)
    t = x * np.cos(angle) + y * np.sin(angle)
    return _mix(((t - t.min()) / (np.ptp(t) + 1e-6)).astype(np.float32), a, b)


def dots(rng, size, a, b):
    cells, radius = int(rng.integers(3, 8)), rng.uniform(0.15, 0.4)
    x, y = _grid(size)
    fx, fy = (x * cells) % 1.0 - 0.5, (y * cells) % 1.0 - 0.5
    return _mix((np.hypot(fx, fy) < radius).astype(np.float32), a, b)


def marble(rng, size, a, b):
    """Thin veins: |sin| of a turbulent phase, sharpened."""
    x, y = _grid(size)
    turbulence = _smooth_noise(rng, size, 3) + 0.5 * _smooth_noise(rng, size, 7)
    t = np.abs(np.sin(2 * np.pi * (rng.uniform(1, 3) * (x + y) + rng.uniform(1.5, 3.0) * turbulence)))
    return _mix(1.0 - t ** rng.uniform(0.15, 0.35), a, b)


POOLS: dict[str, dict[str, Texture]] = {
    "train": {"checker": checker, "stripes": stripes, "granite": granite, "wood": wood, "tiles": tiles},
    "heldout": {"gradient": gradient, "dots": dots, "marble": marble},
}
