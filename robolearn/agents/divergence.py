"""A run stops, keeping its last good checkpoint, when an update's loss or metric is no longer finite."""

from __future__ import annotations

import math
from pathlib import Path


class TrainingDiverged(RuntimeError):
    """A loss or metric became non-finite; training stops and the last good checkpoint is kept."""


def check_finite(metrics: dict[str, float], at: str, checkpoint: Path) -> None:
    """Raise TrainingDiverged naming where (`at`), the metric and the checkpoint that is kept."""
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"{at}: {name} = {value}; stopped without saving, the last good checkpoint is {checkpoint}")
