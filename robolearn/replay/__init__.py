"""Replay storage (one row per observed step) and demo mixing."""

from robolearn.replay.mixing import MixedSampler
from robolearn.replay.storage import Batch, ReplayFormatError, ReplayStorage

__all__ = ["Batch", "MixedSampler", "ReplayFormatError", "ReplayStorage"]
