"""The actor's side of the transport: the control loop hands steps over and never waits on the network.

The control thread calls `start_episode`/`add` (cheap: it appends to a chunk in memory) and, between
steps, `take_weights` and `link_problem`. A network thread owns the sockets: it sends chunks with
sequence numbers, keeps up to `max_in_flight` unacknowledged ones, resends them after a reconnect (the
server drops duplicates by sequence number), heartbeats, and receives weights.

Unsent chunks wait in an ordered outbox: in memory up to `outbox_mb`, then in spill files on disk, so a
long outage costs disk space, not data. The order of chunks is kept across memory and disk.

What is still unacknowledged when the client closes (a SIGTERM to the whole run, a server that stopped
first) is written to `<spill dir>/unacknowledged/`, with the server's sequence numbers where they are
known, and sent first by the next client with the same name and spill dir: nothing produced is lost,
and nothing the server already stored is stored twice.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path

import numpy as np
import zmq
from gymnasium import spaces

from robolearn.replay.codec import obs_name
from robolearn.spec import is_image_space, spec_signature
from robolearn.transport.chunks import ChunkBuilder
from robolearn.transport.client import TransportFatal, close_dealer, connect_dealer, read_reply, reconnect_on, refusal
from robolearn.transport.config import TransportConfig, endpoint
from robolearn.transport.protocol import ProtocolError, arrays_digest, decode, encode
from robolearn.transport.records import pack_record, unpack_record
from robolearn.transport.security import apply_client_keys

log = logging.getLogger(__name__)


def _write_chunk_file(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """One chunk to its own checksummed file, written whole or not at all (temporary file, then rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pack_record(encode("chunk", {}, arrays)))
    os.replace(tmp, path)


def _read_chunk_file(path: Path) -> dict[str, np.ndarray]:
    return decode(unpack_record(path.read_bytes())).arrays


def _nbytes(arrays: dict) -> int:
    return sum(sum(r.nbytes for r in a) if isinstance(a, list) else a.nbytes for a in arrays.values())


class Outbox:
    """FIFO of (seq, arrays): memory up to a byte budget, then files in `spill_dir`, order kept across both."""

    def __init__(self, max_bytes: int, spill_dir: Path):
        self.max_bytes, self.spill_dir = max_bytes, spill_dir
        self._memory: deque = deque()
        self._memory_bytes = 0
        self._spilled: deque[int] = deque()  # seqs on disk, all newer than those in memory
        self._lock = threading.Lock()
        self.spilled_total = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory) + len(self._spilled)

    def push(self, seq: int, arrays: dict[str, np.ndarray]) -> None:
        size = _nbytes(arrays)
        with self._lock:
            if not self._spilled and self._memory_bytes + size <= self.max_bytes:
                self._memory.append((seq, arrays))
                self._memory_bytes += size
                return
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            _write_chunk_file(self.spill_dir / f"{seq:012d}.chunk", arrays)
            self._spilled.append(seq)
            self.spilled_total += 1

    def pop(self) -> tuple[int, dict[str, np.ndarray]] | None:
        with self._lock:
            if self._memory:
                seq, arrays = self._memory.popleft()
                self._memory_bytes -= _nbytes(arrays)
                return seq, arrays
            if not self._spilled:
                return None
            seq = self._spilled.popleft()
        path = self.spill_dir / f"{seq:012d}.chunk"
        arrays = _read_chunk_file(path)
        path.unlink()
        return seq, arrays


class ActorClient:
    def __init__(self, cfg: TransportConfig, observation_space: spaces.Dict, action_shape: tuple[int, ...],
                 name: str | None = None, demo: bool = False):
        cfg.require_keys("an actor")
        self.cfg = cfg
        self.name = name or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.demo = demo
        self.observation_space, self.action_shape = observation_space, tuple(action_shape)
        self.spec = spec_signature(observation_space, action_shape)
        self._builder = ChunkBuilder(observation_space, action_shape, rows=cfg.chunk_steps)
        self._chunk_started = 0.0
        self._seq = 0
        spill = Path(cfg.spill_dir) if cfg.spill_dir else Path(tempfile.gettempdir()) / f"robolearn-spill-{self.name}"
        self.outbox = Outbox(int(cfg.outbox_mb * (1 << 20)), spill)
        self.unacknowledged_dir = spill / "unacknowledged"
        self.compress = {} if cfg.compression == "none" else {obs_name(k): cfg.compression for k, s in observation_space.spaces.items()
                                                               if is_image_space(s)}
        # Shared with the network thread (simple values: assignments are atomic under the GIL).
        self.state = "acting"  # or "holding": reported to the server with each heartbeat
        self.connected = False
        self.learner_alive = False
        self.learner_seen_ever = False
        self.server_status: dict = {}
        self.fatal: str | None = None
        self.last_reply = time.monotonic()
        self.acked_through = -1
        self._acked = threading.Condition()  # notified on every acknowledgement (producers waiting for a backlog to drain)
        self._in_flight: dict[int, list] = {}  # local seq -> frames sent, not yet acknowledged (the network thread's)
        self._welcomed = False
        self.restored = self._restore_unacknowledged()
        self.stats = {"chunks_sent": 0, "resent": 0, "acked": 0, "wire_bytes": 0, "transitions": 0, "weights_unannounced": 0,
                      "weights_rejected": 0}
        self._weights: tuple[int, dict[str, np.ndarray]] | None = None
        self._announced: tuple[int, str] = (-1, "")  # the newest (version, digest) the server announced
        self._announced_at = 0.0
        self._unannounced: dict[str, tuple[int, dict]] = {}  # by digest: weights that arrived before their announcement
        self._weights_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"actor-net-{self.name}", daemon=True)
        self._thread.start()

    # -- control-thread API --------------------------------------------------------------------------
    def start_episode(self, obs: dict[str, np.ndarray]) -> None:
        self._builder.start(obs)
        self._maybe_flush(force=False)

    def add(self, action, reward: float, terminated: bool, truncated: bool, next_obs: dict[str, np.ndarray], policy_version: int) -> None:
        self._builder.step(action, reward, terminated, truncated, next_obs, policy_version)
        self.stats["transitions"] += 1
        self._maybe_flush(force=terminated or truncated)

    def flush(self) -> None:
        self._maybe_flush(force=True)

    def _maybe_flush(self, force: bool) -> None:
        n = len(self._builder)
        if n == 1:
            self._chunk_started = time.monotonic()
        if n and (force or n >= self.cfg.chunk_steps or time.monotonic() - self._chunk_started >= self.cfg.chunk_max_age_s):
            arrays = self._builder.take()  # validated by the server, which refuses a bad chunk naming what is wrong (`fatal`)
            self.outbox.push(self._seq, arrays)
            self._seq += 1

    def take_weights(self) -> tuple[int, dict[str, np.ndarray]] | None:
        """The newest weights received since the last call, as (version, arrays), or None."""
        with self._weights_lock:
            weights, self._weights = self._weights, None
        return weights

    def link_problem(self) -> str | None:
        """Why this actor cannot count on the learner now (None when it can)."""
        if self.fatal:
            return f"refused by the replay server: {self.fatal}"
        silent = time.monotonic() - self.last_reply
        if not self.connected and self.server_status == {}:
            return f"not connected to the replay server at {endpoint(self.cfg.host, self.cfg.port)} yet"
        if not self.connected or silent > self.cfg.peer_timeout_s:
            return f"replay server unreachable (no reply for {silent:.1f} s)"
        if not self.learner_alive:
            return "learner lost (the replay server has not heard from it)" if self.learner_seen_ever else "waiting for a learner"
        return None

    def pending(self) -> int:
        """Chunks handed over but not yet acknowledged (in memory, on disk or on the wire). Sequence numbers
        are consecutive and an acknowledgement covers all before it, so this needs no shared queue state."""
        return self._seq - 1 - self.acked_through

    def wait_for_backlog(self, max_chunks: int, timeout_s: float) -> bool:
        """Block until at most `max_chunks` are unacknowledged (True) or timeout_s passes (False).

        For producers that would rather wait than spill: uploading stored episodes, or a benchmark. A robot's
        control loop never calls this; its chunks queue in memory and then on disk.
        """
        with self._acked:
            return self._acked.wait_for(lambda: self.pending() <= max_chunks or self.fatal is not None, timeout_s)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Send what is left (waiting up to timeout_s for acknowledgements), then stop. True if all was acknowledged."""
        self.flush()
        done = self.wait_for_backlog(0, timeout_s) and self.pending() == 0
        self._stop.set()
        self._thread.join(timeout=5.0)
        if not done and self.pending() > 0:
            kept = self._keep_unacknowledged()
            log.warning("actor %s: closing with %d chunks unacknowledged: kept in %s, sent first by the next actor with this "
                        "name and spill dir", self.name, kept, self.unacknowledged_dir)
        return done

    # -- network thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        context = zmq.Context.instance()
        sub = context.socket(zmq.SUB)
        sub.linger = 0
        sub.rcvhwm = 2
        if self.cfg.curve_keys:
            apply_client_keys(sub, self.cfg.curve_keys, self.cfg.client_key)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(endpoint(self.cfg.host, self.cfg.weights_port))
        dealer = poller = None
        in_flight = self._in_flight
        hello_at = last_beat = 0.0
        try:
            while not self._stop.is_set():
                try:
                    now = time.monotonic()
                    if dealer is None:
                        dealer = connect_dealer(context, self.cfg, "actor", self.name, self.spec)
                        self.connected = False
                        hello_at = now
                        poller = zmq.Poller()  # one per connection, not per loop
                        poller.register(dealer, zmq.POLLIN)
                        poller.register(sub, zmq.POLLIN)
                    events = dict(poller.poll(10))
                    if sub in events:
                        self._receive_weights(sub)
                    if dealer in events:
                        while True:
                            try:
                                frames = dealer.recv_multipart(zmq.NOBLOCK, copy=False)
                            except zmq.Again:
                                break
                            if self._on_reply(frames, dealer, in_flight) == "reconnect":
                                dealer.close(0)
                                dealer = None
                                break
                    if dealer is None or self.fatal:
                        if self.fatal:
                            return
                        continue
                    now = time.monotonic()
                    if not self.connected:
                        if now - hello_at > self.cfg.peer_timeout_s:
                            dealer.close(0)  # drop whatever is queued for a dead connection; resend after the next welcome
                            dealer = None
                        continue
                    if now - self.last_reply > self.cfg.peer_timeout_s:
                        log.warning("actor %s: replay server silent for %.1f s; reconnecting", self.name, now - self.last_reply)
                        dealer.close(0)
                        dealer = None
                        continue
                    while len(in_flight) < self.cfg.max_in_flight:
                        item = self.outbox.pop()
                        if item is None:
                            break
                        seq, arrays = item
                        frames = encode("chunk", {"name": self.name, "seq": seq + self._seq_offset, "demo": self.demo}, arrays,
                                        self.compress, self.cfg.jpeg_quality)
                        in_flight[seq] = frames
                        self._send(dealer, frames)
                        self.stats["chunks_sent"] += 1
                    if now - last_beat > self.cfg.heartbeat_s:
                        dealer.send_multipart(encode("heartbeat", {"name": self.name, "state": self.state}))
                        last_beat = now
                        self._warn_if_weights_overdue()
                except zmq.Again:  # a send that would block: no connection to send on (a key the server refused)
                    log.warning("actor %s: the replay server does not take messages (no connection: is our key authorised?); reconnecting", self.name)
                    if dealer is not None:
                        dealer.close(0)
                    dealer = None
        finally:
            close_dealer(dealer, self.name)
            sub.close(0)

    def _send(self, dealer: zmq.Socket, frames: list) -> None:
        dealer.send_multipart(frames, copy=False)
        self.stats["wire_bytes"] += sum(f.nbytes if isinstance(f, memoryview) else len(f) for f in frames)

    def _on_reply(self, frames, dealer: zmq.Socket, in_flight: dict) -> str | None:
        msg = read_reply(frames, f"actor {self.name}")
        if msg is None:
            return None
        self.last_reply = time.monotonic()
        h = msg.header
        if msg.type in ("welcome", "status"):
            self._update_status(h)
        if msg.type == "welcome":
            self.connected = True
            if not self._welcomed:
                self._welcomed = True
                # This client's first welcome: the server may already hold chunks under this name (an actor
                # restarted under its old name). Our chunks are numbered on from there, not from 0, so none
                # is taken for a duplicate of its predecessor's; restored chunks keep their numbers.
                server_next = int(h["next_seq"])
                restored = [s for s in in_flight if s < 0]
                if restored and server_next < min(restored) + self._seq_offset:
                    # A gap no one can fill: the folder's chunks were numbered by another replay (a spill folder left
                    # by another run, or a replay started afresh). Resending them would be refused for ever.
                    with self._acked:
                        self.fatal = (f"the spill folder {self.unacknowledged_dir} holds chunks {min(restored) + self._seq_offset}-"
                                      f"{max(restored) + self._seq_offset} of actor {self.name!r}, but the replay server "
                                      f"{h.get('epoch')} expects chunk {server_next} next: they were left by a run against "
                                      "another replay. Nothing was sent or deleted: move the folder away (or point the "
                                      "actor at its own replay) and start again")
                        self._acked.notify_all()
                    log.error("actor %s: %s", self.name, self.fatal)
                    return None
                if self._seq_offset is None or server_next > self._seq_offset:
                    if self._seq_offset is not None:  # their acknowledgement was lost: none is sent twice
                        log.info("actor %s: the server already stored the restored chunks", self.name)
                        for seq in [s for s in in_flight if s < 0]:
                            del in_flight[seq]
                            (self.unacknowledged_dir / f"{seq + self._seq_offset:012d}.chunk").unlink(missing_ok=True)
                    self._seq_offset = server_next
            next_seq = int(h["next_seq"]) - self._seq_offset
            for seq in [s for s in in_flight if s < next_seq]:
                del in_flight[seq]  # stored before the reconnect
                if seq < 0:
                    (self.unacknowledged_dir / f"{seq + self._seq_offset:012d}.chunk").unlink(missing_ok=True)
            self._acknowledged(next_seq - 1)
            for seq in sorted(in_flight):
                self._send(dealer, in_flight[seq])
                self.stats["resent"] += 1
            log.info("actor %s: connected to replay server %s (%d chunks resent)", self.name, h.get("epoch"), len(in_flight))
        elif msg.type == "ack":
            acked = h["seq"] - self._seq_offset
            for seq in [s for s in in_flight if s <= acked]:
                del in_flight[seq]
                self.stats["acked"] += 1
                if seq < 0:  # a restored chunk: its file goes once it is stored
                    (self.unacknowledged_dir / f"{seq + self._seq_offset:012d}.chunk").unlink(missing_ok=True)
            self._acknowledged(acked)
        elif msg.type == "resend":
            for seq in sorted(s for s in in_flight if s >= h["seq"] - self._seq_offset):
                self._send(dealer, in_flight[seq])
                self.stats["resent"] += 1
        elif msg.type == "error":
            if reconnect_on(h, f"actor {self.name}", self.cfg):
                return "reconnect"
            if h.get("code") == "rejected" and h.get("ref_type") == "chunk" and type(h.get("seq")) is int:
                self._drop_refused(h["seq"] - self._seq_offset, in_flight)
            with self._acked:
                self.fatal = refusal(h)
                self._acked.notify_all()
            log.error("actor %s: %s", self.name, self.fatal)
        return None

    def _drop_refused(self, seq: int, in_flight: dict) -> None:
        """A chunk the server refused for its content is not kept for the next client with this name (it would
        be refused again, ahead of everything after it); chunks refused for want of room (`disk_full`) are kept."""
        if in_flight.pop(seq, None) is not None and seq < 0:
            (self.unacknowledged_dir / f"{seq + self._seq_offset:012d}.chunk").unlink(missing_ok=True)

    # -- what a previous client left unacknowledged --------------------------------------------------
    def _restore_unacknowledged(self) -> int:
        """Load chunks a previous client with this name left unacknowledged: numbered ones (`<server seq>.chunk`)
        are resent with their numbers first; never-sent ones (`new-<n>.chunk`) join the outbox, numbered after."""
        directory = self.unacknowledged_dir
        if not directory.is_dir():
            return 0
        numbered = sorted(directory.glob("[0-9]*.chunk"))
        fresh = sorted(directory.glob("new-*.chunk"))
        if numbered:
            seqs = [int(p.stem) for p in numbered]
            self._seq_offset = seqs[-1] + 1
            for server_seq, path in zip(seqs, numbered):
                arrays = _read_chunk_file(path)
                self._in_flight[server_seq - self._seq_offset] = encode(
                    "chunk", {"name": self.name, "seq": server_seq, "demo": self.demo}, arrays, self.compress, self.cfg.jpeg_quality)
            self.acked_through = -len(numbered) - 1
        for path in fresh:
            self.outbox.push(self._seq, _read_chunk_file(path))
            self._seq += 1
            path.unlink()
        if numbered or fresh:
            log.info("actor %s: restored %d unacknowledged chunks from %s", self.name, len(numbered) + len(fresh), directory)
        return len(numbered) + len(fresh)

    def _keep_unacknowledged(self) -> int:
        """After the network thread stopped: write every chunk not acknowledged to the unacknowledged dir."""
        directory = self.unacknowledged_dir
        kept = 0
        directory.mkdir(parents=True, exist_ok=True)

        for seq in sorted(self._in_flight):
            if seq <= self.acked_through:
                continue
            arrays = decode(self._in_flight[seq]).arrays
            if seq >= 0 or not (directory / f"{seq + self._seq_offset:012d}.chunk").exists():
                _write_chunk_file(directory / f"{seq + self._seq_offset:012d}.chunk", arrays)
            kept += 1
        n = 0
        while (item := self.outbox.pop()) is not None:
            seq, arrays = item
            if self._seq_offset is not None:
                _write_chunk_file(directory / f"{seq + self._seq_offset:012d}.chunk", arrays)  # never sent, but its number is known
            else:
                _write_chunk_file(directory / f"new-{n:012d}.chunk", arrays)
                n += 1
            kept += 1
        return kept

    def _acknowledged(self, seq: int) -> None:
        with self._acked:
            self.acked_through = max(self.acked_through, seq)
            self._acked.notify_all()

    def _update_status(self, h: dict) -> None:
        self.learner_alive = bool(h.get("learner_alive"))
        self.learner_seen_ever |= self.learner_alive
        self.server_status = {k: h.get(k) for k in ("epoch", "learner_alive", "actors_alive", "weights_version", "weights_digest", "transitions")}
        version, digest = h.get("weights_version"), h.get("weights_digest")
        if type(version) is not int or not isinstance(digest, str) or version <= self._announced[0]:
            return
        with self._weights_lock:
            self._announced, self._announced_at = (version, digest), time.monotonic()
            held = self._unannounced.pop(digest, None)
            if held is not None and held[0] == version:
                self._take(version, held[1])
            for key in [k for k, (v, _) in self._unannounced.items() if v <= version]:
                del self._unannounced[key]  # announced under another digest, or superseded: never applied
                self._rejected(f"weights claiming version <= {version} do not hash to what the server announced")

    def _receive_weights(self, sub: zmq.Socket) -> None:
        while True:  # every message is checked: a forged one must not push the learner's aside
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                self._keep_weights(decode(frames))
            except ProtocolError as exc:
                log.error("actor %s: unreadable weights: %s", self.name, exc)

    def _keep_weights(self, msg) -> None:
        """Weights are applied only when they are the learner's: their arrays hash to the digest that the
        server announced (on the request channel, where with CURVE the server's key is checked) for their
        version. Arrays that arrive before their announcement are held (4 at most, by digest) until it
        comes; arrays that hash to nothing announced (whoever took over the weights port, a garbled or
        forged copy, whatever version they claim) are never applied and are counted (`weights_rejected`)."""
        version = msg.header.get("version")
        if type(version) is not int or version < 0:
            log.error("actor %s: weights with an invalid version %r ignored", self.name, version)
            return
        digest = arrays_digest(msg.arrays)
        with self._weights_lock:
            announced_version, announced_digest = self._announced
            if (version, digest) == (announced_version, announced_digest):
                self._take(version, msg.arrays)
            elif version > announced_version:
                self.stats["weights_unannounced"] += 1
                self._unannounced[digest] = (version, msg.arrays)
                while len(self._unannounced) > 4:  # the oldest arrivals go: a forged version cannot stay forever
                    del self._unannounced[next(iter(self._unannounced))]
            elif version == announced_version:
                self._rejected(f"weights v{version} do not hash to what the server announced")
            # Older than the announcement: superseded (an earlier broadcast arriving late), not applied.

    def _rejected(self, why: str) -> None:
        self.stats["weights_rejected"] += 1
        if self.stats["weights_rejected"] in (1, 10, 100, 1000):
            log.error("actor %s: %s: ignored (%d so far; another process on the weights port %d?)", self.name, why,
                      self.stats["weights_rejected"], self.cfg.weights_port)

    def _warn_if_weights_overdue(self, after_s: float = 5.0) -> None:
        version = self._announced[0]
        if self.weights_overdue_s() > after_s and self._overdue_warned != version:
            self._overdue_warned = version
            log.warning("actor %s: the server announced weights v%d %.0f s ago and they have not arrived on the weights port "
                        "%d (blocked, or taken by another process?)", self.name, version, self.weights_overdue_s(), self.cfg.weights_port)

    _overdue_warned = -1

    def weights_overdue_s(self) -> float:
        """How long the newest announced weights have been announced without arriving (0 if they did):
        weights that never arrive mean the weights port is not the server's, or is blocked."""
        version = self._announced[0]
        current = max(self._weights[0] if self._weights else -1, self._applied_version)
        return time.monotonic() - self._announced_at if version >= 0 and current < version else 0.0

    def _take(self, version: int, arrays) -> None:
        current = self._weights[0] if self._weights else -1
        if version > max(current, self._applied_version):
            self._weights = (version, arrays)

    _applied_version = -1
    _seq_offset: int | None = None  # the server's next sequence number for our name at our first welcome

    def applied(self, version: int) -> None:
        """The control loop applied weights of this version (older broadcasts are ignored from now on)."""
        self._applied_version = version
