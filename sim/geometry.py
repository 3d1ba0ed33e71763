"""Small geometry helpers for authoring the scene."""

from __future__ import annotations

import numpy as np


def look_at_xyaxes(pos, target, up=(0.0, 0.0, 1.0)) -> list[float]:
    """MuJoCo camera axes (right, up) for a camera at `pos` looking at `target` (cameras look along -z)."""
    forward = np.asarray(target, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    return [float(v) for v in (*right, *np.cross(right, forward))]
