"""Replay: storage (one row per observed step), demo mixing, and the replay service (server, durable store)."""

from robolearn.replay.batch import Batch
from robolearn.replay.mixing import MixedSampler
from robolearn.replay.persistence import ReplayFormatError
from robolearn.replay.storage import ReplayStorage

__all__ = ["Batch", "MixedSampler", "ReplayFormatError", "ReplayStorage"]
