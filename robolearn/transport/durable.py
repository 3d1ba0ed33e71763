"""The replay server's data: replay storage plus its write-ahead log, and per-actor sequence numbers.

Kept apart from the sockets so that recovery can be run (and checked) without serving: constructing a
DurableReplay replays the log into fresh storage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gymnasium import spaces

from robolearn.replay import ReplayStorage
from robolearn.transport.chunks import apply_chunk, check_continuity
from robolearn.transport.protocol import KIND_START, decode
from robolearn.transport.recordlog import RecordLog

log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    capacity: int = 200_000
    fsync: bool = False  # True: survive power loss too (an fsync per chunk); kill -9 is survived either way
    segment_mb: float | None = None  # None: a sixteenth of the replay capacity's bytes, 1 to 256 MB
    demo_capacity: int = 100_000
    demo_ratio: float = 0.5  # share of each batch drawn from demos, when there are any
    sampler_threads: int = 2  # threads gathering batches beside ingestion (0: in the server's loop)
    seed: int = 0



class DurableReplay:
    def __init__(self, directory: str | Path, observation_space: spaces.Dict, action_shape: tuple[int, ...],
                 cfg: ServerConfig | None = None, demos: ReplayStorage | None = None):
        self.cfg = cfg = cfg or ServerConfig()
        self.dir = Path(directory)
        self.storage = ReplayStorage(observation_space, action_shape, cfg.capacity)
        self.demos = demos or ReplayStorage(observation_space, action_shape, cfg.demo_capacity)
        self.streams: dict[str, int] = {}  # actor name -> replay stream
        self.next_seq: dict[str, int] = {}  # actor name -> next chunk sequence number expected
        self._segment_transitions: dict[int, int] = {}
        self.log = RecordLog(self.dir / "wal", segment_bytes=segment_bytes(cfg, observation_space), fsync=cfg.fsync)
        self.demo_log = RecordLog(self.dir / "demo_wal", fsync=cfg.fsync)
        self.recover()

    def accept(self, name: str, seq: int, demo: bool, arrays: dict[str, np.ndarray], frames) -> int:
        """Log, then store, the checked chunk `seq` of actor `name` (the next one expected); returns transitions added."""
        store = self.demos if demo else self.storage
        stream = self._stream(name, demo)
        check_continuity(arrays, store.has_open_episode(stream))
        segment = (self.demo_log if demo else self.log).append(frames)  # as received: images stay compressed if sent so
        added = apply_chunk(store, arrays, stream)
        self.next_seq[name] = seq + 1
        if not demo:
            self._segment_transitions[segment] = self._segment_transitions.get(segment, 0) + added
            self._trim_log()
        return added

    def _trim_log(self) -> None:
        """Drop the oldest log segment once the newer ones alone hold a full replay capacity."""
        segments = sorted(self._segment_transitions)
        while len(segments) > 1 and sum(self._segment_transitions[s] for s in segments[1:]) >= self.cfg.capacity:
            oldest = segments.pop(0)
            self.log.remove(oldest)
            del self._segment_transitions[oldest]

    # -- recovery ------------------------------------------------------------------------------------
    def recover(self) -> None:
        started, records = time.perf_counter(), 0
        for store, wal in ((self.demos, self.demo_log), (self.storage, self.log)):
            for segment, frames in wal.replay():
                msg = decode(frames)
                stream = self._stream(msg.header["name"], demo=store is self.demos)
                arrays = msg.arrays
                if not store.has_open_episode(stream):
                    arrays = _from_first_start(arrays)  # the episode's start lies in a deleted segment
                    if arrays is None:
                        continue
                added = apply_chunk(store, arrays, stream)
                if store is self.storage:
                    self._segment_transitions[segment] = self._segment_transitions.get(segment, 0) + added
                self.next_seq[msg.header["name"]] = max(self.next_seq.get(msg.header["name"], 0), int(msg.header["seq"]) + 1)
                records += 1
        if records:
            log.info("recovered %d chunks from %s in %.1f s: %d transitions, %d demo transitions, %d actors",
                     records, self.dir, time.perf_counter() - started, self.storage.num_transitions(),
                     self.demos.num_transitions(), len(self.next_seq))

    def _stream(self, name: str, demo: bool) -> int:
        key = ("demo:" if demo else "") + name
        if key not in self.streams:
            self.streams[key] = len(self.streams)
        return self.streams[key]

    def close(self) -> None:
        self.log.close()
        self.demo_log.close()


def segment_bytes(cfg: ServerConfig, observation_space: spaces.Dict) -> int:
    """Log segment size: small enough that retired segments are recycled well before the log holds a
    capacity twice over, large enough that rolling over is rare."""
    if cfg.segment_mb is not None:
        return int(cfg.segment_mb * (1 << 20))
    obs_bytes = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in observation_space.spaces.values())
    return int(np.clip(cfg.capacity * obs_bytes / 16, 1 << 20, 256 << 20))


def _from_first_start(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    starts = np.flatnonzero(arrays["kind"] == KIND_START)
    if len(starts) == 0:
        return None
    return {name: a[starts[0]:] for name, a in arrays.items()}
