"""The replay server's data: replay storage kept in files mapped into memory, so the storage is its own
durable copy; and per-actor sequence numbers.

Every array of the online store and of the demo store is a `.npy` file (`<dir>/store/`, `<dir>/demo_store/`)
mapped shared: writing a chunk into the storage writes the OS page cache of those files, which a kill -9 of
the server does not lose. An accepted chunk costs one copy (into the mapping) where a write-ahead log in front
of in-memory storage cost two (measured on this VM, per 0.7 MB chunk: ~70 us into a mapping, ~150-400 us to
append to the log on top of the copy into memory). A restart reopens the files instead of replaying a log.

Crash consistency, in `<dir>/state`:
- before a chunk is stored, an `intent` record says which store it goes to and how far its rows will reach;
- after it is stored and before it is acknowledged, the stores' counters, each stream's latest row and each
  actor's next expected sequence number are written to one of two alternating checksummed slots.
On open, the newest intact slot is resumed and whatever a write begun after it may have touched is undone
(ReplayStorage.resume): the unacknowledged chunk is gone (its actor resends it), every acknowledged transition
is kept except the oldest rows of a full buffer, which that write was evicting (its resend evicts them again).

Kept apart from the sockets so that recovery can be run (and checked) without serving.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import struct
import zlib
from pathlib import Path

import msgpack
import numpy as np
from gymnasium import spaces

from robolearn.replay.config import ServerConfig
from robolearn.replay.persistence import ReplayFormatError
from robolearn.replay.storage import ReplayStorage, row_bytes
from robolearn.spec import spec_signature

log = logging.getLogger(__name__)
LAYOUT_VERSION = 1
STORES = ("online", "demo")


class MappedArrays:
    """The arrays of one store as `.npy` files mapped shared; an allocator for ReplayStorage.

    `layout.json` (spec and capacity) is written once every array exists and is filled: a directory without
    it is created afresh; one written for another spec or capacity is refused with the reason."""

    def __init__(self, directory: Path, spec: dict, capacity: int, fsync: bool):
        self.dir, self.fsync = directory, fsync
        self.layout = {"version": LAYOUT_VERSION, "capacity": capacity, "spec": spec}
        layout_path = directory / "layout.json"
        self.fresh = not layout_path.exists()
        if not self.fresh:
            found = json.loads(layout_path.read_text())
            if found != self.layout:
                differs = [k for k in self.layout if found.get(k) != self.layout[k]]
                raise ReplayFormatError(
                    f"replay store {directory} was created with {({k: found.get(k) for k in differs})}, this server has "
                    f"{({k: self.layout[k] for k in differs})}: use another run directory, or the settings it was made with")
        directory.mkdir(parents=True, exist_ok=True)
        self.capacity = capacity
        self.arrays: list[np.memmap] = []
        self.paths: list[Path] = []
        self.reserved = 0  # rows [0, reserved) of every array have their disk blocks
        self._sparse = False  # the file system cannot reserve ahead

    def __call__(self, name: str, shape: tuple, dtype: np.dtype, fill: int) -> np.ndarray:
        path = self.dir / (name.replace("/", "_") + ".npy")
        if self.fresh:
            array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)  # sparse: reserve() allocates
            if fill:
                array.fill(fill)
        else:
            array = np.lib.format.open_memmap(path, mode="r+")
            if array.shape != tuple(shape) or array.dtype != dtype:
                raise ReplayFormatError(f"replay store file {path} holds {array.dtype} {array.shape}, expected {dtype} {tuple(shape)}")
        self.arrays.append(array)
        self.paths.append(path)
        return array.view(np.ndarray)  # a plain array over the mapping: the storage's indexing skips memmap's subclass hooks

    def created(self) -> None:
        """Every array exists and is filled: from now on the directory is reopened, never recreated."""
        if self.fresh:
            self.flush()
            tmp = self.dir / "layout.json.tmp"
            tmp.write_text(json.dumps(self.layout))
            os.replace(tmp, self.dir / "layout.json")

    def flush(self) -> None:
        for array in self.arrays:
            array.flush()  # msync: the dirty pages of the mapping reach the disk


    def reserve(self, rows: int) -> None:
        """Allocate the disk blocks of rows [0, rows) of every array before they are written: a write into a
        mapped page the disk has no room for kills the process (SIGBUS) instead of raising, so a full disk
        must show here, as StoreFull, before anything of the chunk is written. Blocks are reserved ahead of
        what is stored (DurableReplay: 1/16 of the capacity at a time), not for the whole capacity at start."""
        rows = min(rows, self.capacity)
        if rows <= self.reserved or self._sparse:
            return
        for array, path in zip(self.arrays, self.paths):
            stride = array.strides[0]
            with open(path, "r+b") as f:
                try:
                    os.posix_fallocate(f.fileno(), array.offset + self.reserved * stride, (rows - self.reserved) * stride)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        need = (rows - self.reserved) * sum(a.strides[0] for a in self.arrays)
                        raise StoreFull(f"the disk holding {self.dir} is full: rows {self.reserved}-{rows} of the replay store "
                                        f"({need / 1e6:.0f} MB) cannot be reserved; what is stored is kept. Free some space, "
                                        "or lower server.capacity") from None
                    log.warning("%s: the file system cannot reserve space ahead (%s); the store stays sparse, and a disk that "
                                "fills up later stops the server", path, exc)
                    self._sparse = True
                    return
        self.reserved = rows


class StoreFull(RuntimeError):
    """No disk for the rows a chunk would write: the chunk is refused, nothing of it written."""


def reserve_step(capacity: int) -> int:
    """Rows reserved ahead of what a store holds: disk in proportion to what is stored, a few reservations a run."""
    return min(capacity, max(256, -(-capacity // 16)))


def store_bytes(observation_space: spaces.Dict, action_shape: tuple[int, ...], capacity: int) -> int:
    """Disk the store's files take (their headers aside): capacity x one row."""
    return capacity * row_bytes(observation_space, action_shape)


MAX_INT = 2**64 - 1  # the largest integer msgpack writes (9 bytes): what a counter may grow to


def state_bound(names: list[str]) -> int:
    """Bytes of the packed replay state (DurableReplay._state) at its largest for these actor names: every
    counter and row at its largest, each name with a demo stream too, every stream in both stores' cursors."""
    streams = {key: MAX_INT for name in names for key in (name, "demo:" + name)}
    cursor = [[MAX_INT, MAX_INT]] * len(streams)
    store = {"total": MAX_INT, "transitions_added": MAX_INT, "episodes_added": MAX_INT, "cursor": cursor}
    return len(msgpack.packb({"stores": {which: store for which in STORES}, "streams": streams,
                              "next_seq": dict.fromkeys(names, MAX_INT)}))


def slot_bytes_for(max_names: int, max_name_bytes: int) -> int:
    """A state slot that holds the state of `max_names` names of `max_name_bytes` each, whatever they are."""
    width = max(max_name_bytes, len(str(max_names)))  # distinct names of (at least) the largest size
    return StateFile.SLOT_HEAD.size + state_bound([f"{i:0{width}d}" for i in range(max_names)]) + 4096


class StateFile:
    """`intent` record at offset 0, the slot size at 64, then two alternating slots of msgpack state, each
    checksummed. The slot size is chosen when the file is created (from the server's name limits, so the
    state can never outgrow it) and read back on every open; files written before it was recorded have 1 MB slots."""

    _INTENT = struct.Struct("<QBI")  # rows reach (exclusive), store index, crc
    _LAYOUT = struct.Struct("<4sQI")  # magic, slot bytes, crc
    _LAYOUT_AT = 64
    _MAGIC = b"RLS1"
    SLOT_HEAD = struct.Struct("<QII")  # commit number, length, crc
    LEGACY_SLOT_BYTES = 1 << 20
    _SLOTS_AT = 4096

    def __init__(self, path: Path, fsync: bool, slot_bytes: int = LEGACY_SLOT_BYTES):
        self.path, self.fsync = path, fsync
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:  # one server per directory: two writing the same store would corrupt it (released when the process dies)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise RuntimeError(f"another replay server is using {path.parent}: stop it, or give this one another run_dir") from None
        self.number, self.state, self.intent = 0, None, None
        self.slot_bytes = self._layout(slot_bytes)
        data = os.pread(self._fd, self._SLOTS_AT + 2 * self.slot_bytes, 0)
        for slot in range(2):
            at = self._SLOTS_AT + slot * self.slot_bytes
            if len(data) < at + self.SLOT_HEAD.size:
                continue
            number, length, crc = self.SLOT_HEAD.unpack_from(data, at)
            payload = data[at + self.SLOT_HEAD.size: at + self.SLOT_HEAD.size + length]
            if number > self.number and len(payload) == length and zlib.crc32(payload, number & 0xFFFFFFFF) == crc:
                self.number, self.state = number, msgpack.unpackb(payload, strict_map_key=False)
        if len(data) >= self._INTENT.size:
            reach, store, crc = self._INTENT.unpack_from(data, 0)
            if zlib.crc32(data[:self._INTENT.size - 4]) == crc and store < len(STORES):
                self.intent = (STORES[store], reach)
            # A damaged intent was being written when the server died: no row of that chunk had been written yet.

    def _layout(self, slot_bytes: int) -> int:
        """The slot size: recorded in the file, or (a new file) `slot_bytes`, recorded now with the file's
        blocks reserved, so that a commit never meets a full disk."""
        if os.fstat(self._fd).st_size == 0:
            head = struct.pack("<4sQ", self._MAGIC, slot_bytes)
            os.pwrite(self._fd, head + struct.pack("<I", zlib.crc32(head)), self._LAYOUT_AT)
            try:
                os.posix_fallocate(self._fd, 0, self._SLOTS_AT + 2 * slot_bytes)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
            os.fsync(self._fd)
            return slot_bytes
        magic, recorded, crc = self._LAYOUT.unpack(os.pread(self._fd, self._LAYOUT.size, self._LAYOUT_AT).ljust(self._LAYOUT.size, b"\0"))
        if magic == self._MAGIC and zlib.crc32(struct.pack("<4sQ", magic, recorded)) == crc:
            return recorded
        return self.LEGACY_SLOT_BYTES

    def fits(self, size: int) -> bool:
        return size <= self.slot_bytes - self.SLOT_HEAD.size

    def write_intent(self, store: str, reach: int) -> None:
        head = struct.pack("<QB", reach, STORES.index(store))
        os.pwrite(self._fd, head + struct.pack("<I", zlib.crc32(head)), 0)
        if self.fsync:
            os.fsync(self._fd)

    def commit(self, state: dict) -> None:
        payload = msgpack.packb(state)
        if not self.fits(len(payload)):
            raise RuntimeError(f"replay state of {len(payload)} bytes does not fit its {self.slot_bytes}-byte slot in {self.path}")
        number = self.number + 1
        head = self.SLOT_HEAD.pack(number, len(payload), zlib.crc32(payload, number & 0xFFFFFFFF))
        os.pwrite(self._fd, head + payload, self._SLOTS_AT + (number % 2) * self.slot_bytes)
        self.number = number
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class DurableReplay:
    def __init__(self, directory: str | Path, observation_space: spaces.Dict, action_shape: tuple[int, ...],
                 cfg: ServerConfig | None = None, demos: ReplayStorage | None = None):
        self.cfg = cfg = cfg or ServerConfig()
        self.dir = Path(directory)
        if (self.dir / "wal").is_dir() and not (self.dir / "store").is_dir():
            raise ReplayFormatError(f"{self.dir} holds a write-ahead log of an earlier robolearn (wal/): this version keeps its "
                                    "replay in store/; start the server with another run directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        slot = slot_bytes_for(cfg.max_actor_names, cfg.max_name_bytes)
        self.state_file = StateFile(self.dir / "state", cfg.fsync, slot)  # first: it holds the directory's lock
        try:
            self._open(observation_space, action_shape, demos)
        except BaseException:
            self.state_file.close()
            raise

    def _open(self, observation_space: spaces.Dict, action_shape: tuple[int, ...], demos: ReplayStorage | None) -> None:
        cfg = self.cfg
        spec = spec_signature(observation_space, action_shape)
        _check_room(self.dir, {"store": store_bytes(observation_space, action_shape, reserve_step(cfg.capacity)),
                               "demo_store": store_bytes(observation_space, action_shape, reserve_step(cfg.demo_capacity))},
                    {"store": store_bytes(observation_space, action_shape, cfg.capacity),
                     "demo_store": store_bytes(observation_space, action_shape, cfg.demo_capacity)})
        self.files = {"online": MappedArrays(self.dir / "store", spec, cfg.capacity, cfg.fsync),
                      "demo": MappedArrays(self.dir / "demo_store", spec, cfg.demo_capacity, cfg.fsync)}
        self.storage = ReplayStorage(observation_space, action_shape, cfg.capacity, allocate=self.files["online"])
        self.demos = ReplayStorage(observation_space, action_shape, cfg.demo_capacity, allocate=self.files["demo"])
        self.stores = {"online": self.storage, "demo": self.demos}
        self.streams: dict[str, int] = {}  # actor name (demo streams: "demo:" + name) -> replay stream
        self.next_seq: dict[str, int] = {}  # actor name -> next chunk sequence number expected
        self._resume()
        for which, files in self.files.items():
            files.reserve(self.stores[which].total + reserve_step(files.capacity))
            files.created()
        if demos is not None:
            self._take_demos(demos)
        self._committed = self._state()  # what a restart would find now (undo goes back to it)

    def episode_open(self, name: str, demo: bool) -> bool:
        """Whether actor `name`'s stream has an episode under way (a chunk may then begin with a transition)."""
        key = ("demo:" if demo else "") + name
        which = "demo" if demo else "online"
        return key in self.streams and self.stores[which].has_open_episode(self.streams[key])

    def accept(self, name: str, seq: int, demo: bool, arrays: dict[str, np.ndarray]) -> int:
        """Store chunk `seq` of actor `name` (the next one expected) durably; returns transitions added. The chunk
        was validated by the server on arrival (robolearn.transport.chunks: its spec and its continuity with
        `episode_open`) and is not checked again.

        If its state cannot be made durable, the chunk is undone in memory as a restart would undo it, and
        the error raised: `next_seq` never runs ahead of the state on disk, so no welcome or acknowledgement
        covers a chunk that a restart would not have."""
        which = "demo" if demo else "online"
        store = self.stores[which]
        reach = store.total + len(arrays["kind"])
        self.files[which].reserve(reach + reserve_step(store.capacity))  # StoreFull here: nothing of the chunk written
        self.state_file.write_intent(which, reach)
        try:
            added = store.extend_records(self._stream(name, demo), arrays, checked=True)
            self.next_seq[name] = seq + 1
            if self.cfg.fsync:
                self.files[which].flush()
            state = self._state()
            self.state_file.commit(state)
        except BaseException:
            self._undo(which, reach)
            raise
        self._committed = state
        return added

    def _undo(self, which: str, reach: int) -> None:
        """Back to the last committed state in memory (what a restart would find), undoing a chunk whose
        state was not committed."""
        state = self._committed
        self.streams, self.next_seq = dict(state["streams"]), dict(state["next_seq"])
        self.stores[which].resume(state["stores"][which], reach)

    def has_room_for(self, name: str) -> bool:
        """Whether the state can take one more actor name, at its largest, in its slot (always, when the
        slot was sized for this server's limits; a state file made under smaller limits may not)."""
        return self.state_file.fits(state_bound([*self.next_seq, name]))

    def _state(self) -> dict:
        return {"stores": {which: store.state() for which, store in self.stores.items()},
                "streams": dict(self.streams), "next_seq": dict(self.next_seq)}

    def _resume(self) -> None:
        state = self.state_file.state
        if state is None:
            return
        self.streams, self.next_seq = dict(state["streams"]), dict(state["next_seq"])
        for which, store in self.stores.items():
            saved = state["stores"][which]
            if self.files[which].fresh:
                if saved["total"]:
                    log.warning("%s store: its files were missing (%s) though the state says %d rows were stored: it starts empty",
                                which, self.files[which].dir, saved["total"])
                continue
            reach = self.state_file.intent[1] if self.state_file.intent and self.state_file.intent[0] == which else 0
            dropped = store.resume(saved, max(reach, saved["total"]))
            if dropped:
                log.warning("%s store: dropped the %d oldest rows, which a chunk being stored when the server stopped was "
                            "overwriting (its actor resends it)", which, dropped)
        log.info("recovered the replay in %s: %d transitions, %d demo transitions, %d actors", self.dir,
                 self.storage.num_transitions(), self.demos.num_transitions(), len(self.next_seq))

    def _take_demos(self, demos: ReplayStorage) -> None:
        if self.demos.total:
            log.info("the demo store in %s is kept (%d transitions); the demo file given is not loaded again",
                     self.dir / "demo_store", self.demos.num_transitions())
            return
        self.files["demo"].reserve(demos.total + reserve_step(self.demos.capacity))
        self.demos.assign(demos)
        self.files["demo"].flush()
        self.state_file.commit(self._state())

    def _stream(self, name: str, demo: bool) -> int:
        key = ("demo:" if demo else "") + name
        if key not in self.streams:
            self.streams[key] = len(self.streams)
        return self.streams[key]

    def close(self) -> None:
        self.state_file.close()


def _check_room(directory: Path, first: dict[str, int], full: dict[str, int]) -> None:
    """Refuse to start, with the numbers, when new stores' first reservation would not fit on the disk; say
    so when they would not fit once full (they then refuse chunks when the disk fills, losing nothing)."""
    new = [name for name in first if not (directory / name / "layout.json").exists()]
    free = shutil.disk_usage(directory).free
    if new and sum(first[n] for n in new) > free:
        sizes = ", ".join(f"{name}/ {first[name] / 1e9:.2f} GB" for name in new)
        raise RuntimeError(f"not enough disk space in {directory} for the replay store ({sizes} to begin with; {free / 1e9:.1f} GB free): "
                                "lower server.capacity or server.demo_capacity, free some space, or use another run_dir")
    if new and sum(full[n] for n in new) > free:
        log.warning("the replay store in %s takes %.1f GB once full and %.1f GB are free: when the disk fills, chunks are "
                    "refused (nothing stored is lost); lower server.capacity to stay within it", directory,
                    sum(full[n] for n in new) / 1e9, free / 1e9)
