"""Replay: storage (one row per observed step), batches, the flat-array codec, demo mixing, replay files, the
server's durable store and recordings. No sockets: the replay server and its wire are robolearn.transport."""

from robolearn.replay.batch import Batch
from robolearn.replay.mixing import MixedSampler
from robolearn.replay.persistence import ReplayFormatError
from robolearn.replay.storage import ReplayStorage

__all__ = ["Batch", "MixedSampler", "ReplayFormatError", "ReplayStorage"]
