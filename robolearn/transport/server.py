"""The replay server: owns the replay storage in its own process, so a learner crash loses no data. It is the
network face of robolearn.replay (storage, mixing, the durable store); replay itself opens no socket.

One ROUTER socket serves every peer (actors and learners, request-reply); one XPUB socket is the one
route of the learner's weights to actors: each new version is broadcast, and the current one is sent
again whenever a subscriber joins (an actor that connects late, or reconnects, gets it at once: the
subscription has reached the socket when it is announced, so nothing is missed).

Messages (robolearn.transport.protocol):

    peer -> server                    server -> peer
    hello {role, name, spec}          welcome {epoch, next_seq, ...} | error
    chunk {name, seq, demo} + arrays  ack {seq} | resend {seq} | error      (actors; an ack covers every
                                                                             chunk up to seq: one per burst)
    heartbeat {name, ...}             status {epoch, learner_alive, actors_alive, transitions, ...}
    sample {req, batch_size, ...}     batch {req} + arrays | wait {req, reason}   (learners)
    weights {version} + arrays        ack {version}; the same frames go out on XPUB
    bye {name}

Durability (robolearn.replay.durable): the replay storage lives in files mapped into memory, and a
chunk is acknowledged only once it is stored there and the state that covers it (each actor's next
expected sequence number among it) is written; a restart reopens the files, with every acknowledged
transition and each actor's next sequence number (so resent chunks are recognised and not stored twice).

Each chunk is validated here, once, where it is untrusted (robolearn.transport.chunks: the spec's arrays,
dtypes, shapes and finite values, the record kinds, and its continuity with the actor's open episode); the
store takes it unchecked. Any malformed message, schema mismatch or out-of-spec chunk gets an `error` reply naming the problem, is
counted and logged (rate-limited), and changes nothing. Nothing a peer sends can raise out of the serving
loop: every field is checked by type, range and size before anything is allocated from it, and an
unexpected exception in a handler is answered (`code: internal`), counted and logged like a refusal.

Identity (docs/remote.md, "Roles and threat model"): a name is held by one live connection at a time (a
second hello under a live actor's name, or a second live learner, is refused); with CURVE each key is
authorised for one role and, for actors, for the names it may use (robolearn.transport.security); only
the learner's connection publishes weights, and their versions only go forward.
"""

from __future__ import annotations

import itertools
import json
import math
import logging
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq
from gymnasium import spaces

from robolearn.interventions import DEMO_STREAM_SUFFIX
from robolearn.replay import MixedSampler, ReplayStorage
from robolearn.replay.codec import INTERVENTION_VERSION, batch_arrays
from robolearn.replay.config import ServerConfig
from robolearn.replay.durable import DurableReplay, StoreFull
from robolearn.spec import spec_signature
from robolearn.transport.chunks import check_chunk, check_continuity
from robolearn.transport.config import TransportConfig
from robolearn.transport.protocol import Message, ProtocolError, arrays_digest, decode, encode
from robolearn.transport.security import ServerSecurity, role_allows

log = logging.getLogger(__name__)
ACK_EVERY = 8  # chunks of one actor between acknowledgements within a burst (an actor keeps up to 32 in flight)
# Subscribers send only subscriptions (a byte and a topic), but ZeroMQ applies this limit to the CURVE
# handshake too: at 256 bytes every authenticated subscriber was dropped while connecting (measured: 512
# lets it through). 4 kB bounds what a subscriber can send and leaves the handshake room.
MAX_SUBSCRIBER_MESSAGE = 4096
KEYS_CHECK_S = 1.0  # how often the authorised keys are looked at for changes (revocations)


@dataclass
class Peer:
    role: str
    name: str
    last_seen: float
    state: str = ""
    pending: int = 0  # sample requests being gathered for it
    user: str | None = None  # with CURVE: the client name of the key it connected with


class PeerLog:
    """Log lines about peers, at most `per_min` a minute: a peer cannot flood the server's log."""

    def __init__(self, per_min: int, clock=time.monotonic):
        self.per_min, self.clock = per_min, clock
        self.window, self.count, self.suppressed = clock(), 0, 0

    def __call__(self, level: int, fmt: str, *args) -> None:
        now = self.clock()
        if now - self.window >= 60.0:
            if self.suppressed:
                log.warning("%d log lines about peers suppressed in the last minute", self.suppressed)
            self.window, self.count, self.suppressed = now, 0, 0
        if self.count < self.per_min:
            self.count += 1
            log.log(level, fmt, *args)
        else:
            self.suppressed += 1


class Refused(ProtocolError):
    """A well-formed request the server will not grant (a name in use, a limit reached): `code` says which."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _int_field(header: dict, key: str, low: int, high: int, default: int | None = None) -> int:
    value = header.get(key, default)
    if type(value) is not int or not low <= value <= high:  # bool is an int, NaN and inf are floats: all refused
        raise ProtocolError(f"field {key!r} must be an integer in [{low}, {high}], got {value!r:.80}")
    return value


def _float_field(header: dict, key: str, low: float, high: float, default: float) -> float:
    value = header.get(key, default)
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
        raise ProtocolError(f"field {key!r} must be a finite number in [{low}, {high}], got {value!r:.80}")
    return float(value)


class ReplayServer:
    def __init__(self, directory: str | Path, observation_space: spaces.Dict, action_shape: tuple[int, ...],
                 transport: TransportConfig | None = None, cfg: ServerConfig | None = None, demos: ReplayStorage | None = None):
        self.cfg = cfg = cfg or ServerConfig()
        self.transport = transport = transport or TransportConfig()
        transport.require_keys("the replay server")
        self.dir = Path(directory)
        self.observation_space, self.action_shape = observation_space, tuple(action_shape)
        self.spec = spec_signature(observation_space, action_shape)
        self.data = DurableReplay(self.dir, observation_space, action_shape, cfg, demos)
        self.storage, self.demos = self.data.storage, self.data.demos
        # Online transitions an intervener chose (robolearn/interventions.py), counted once from a recovered store
        self.intervention_transitions = int(np.count_nonzero(self.storage.policy_version == INTERVENTION_VERSION))
        self.epoch = uuid.uuid4().hex[:12]
        # Sampling: rows are drawn under a lock that ingestion also takes (cheap), then gathered by sampler
        # threads (numpy releases the GIL while copying) while ingestion goes on; the oldest rows of a
        # full buffer are not drawn, since writes arriving during a gather overwrite them.
        self._lock = threading.Lock()
        self._local = threading.local()
        self._thread_seeds = itertools.count()
        self._samplers = ThreadPoolExecutor(cfg.sampler_threads, thread_name_prefix="sampler") if cfg.sampler_threads else None
        self._skip_oldest = min(cfg.capacity // 10, 10_000)  # of the online store's rows
        self._row_bytes = sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in observation_space.spaces.values())
        self.peers: dict[bytes, Peer] = {}
        self.actor_seen: dict[str, float] = {}
        self.learner_seen = -float("inf")
        self.weights: list[bytes] | None = None
        self.weights_version = -1
        self.weights_digest = ""  # arrays_digest of the current weights: actors apply only arrays that hash to it
        self._weights_from: bytes | None = None  # the learner connection that published the current weights
        self.counters: Counter = Counter()
        self.peer_log = PeerLog(cfg.peer_log_per_min)
        self._max_message = int(cfg.max_message_mb * 2**20)
        self._acks: dict[bytes, int] = {}  # per actor, the newest chunk stored but not yet acknowledged
        self.context = zmq.Context()
        self.security = ServerSecurity(self.context, transport.curve_keys) if transport.curve_keys else None
        self.router = self._bind(zmq.ROUTER, transport.port)
        self.publisher = self._bind(zmq.XPUB, transport.weights_port)
        self.endpoints = {"router": self.router.last_endpoint.decode(), "weights": self.publisher.last_endpoint.decode()}
        self._sockets_replaced = False  # set when revoked keys made the server bind new sockets (the poller follows)
        self._keys_checked = time.monotonic()
        self._replies_endpoint = f"inproc://sampled-{self.epoch}"
        self._replies = self.context.socket(zmq.PULL)  # batches from sampler threads; only this thread uses the ROUTER
        self._replies.bind(self._replies_endpoint)
        (self.dir / "endpoints.json").write_text(json.dumps({**self.endpoints, "epoch": self.epoch}))
        self._stopping = False
        self._drain_until = 0.0
        self._last_report = time.monotonic()
        self._alive_state = (None, None)

    def _bind(self, kind: int, port: int, retry_s: float = 0.0) -> zmq.Socket:
        socket = self.context.socket(kind)
        socket.linger = 0
        if kind == zmq.XPUB:
            socket.sndhwm = 4  # weights: a slow subscriber gets the newest, not a backlog
            socket.xpub_verbose = True  # every subscription is reported, not only the first: each joiner gets the weights
            socket.maxmsgsize = MAX_SUBSCRIBER_MESSAGE
        else:
            socket.maxmsgsize = self._max_message  # ZeroMQ drops larger messages (and their peer) before reading them
            socket.sndhwm = self.cfg.max_queued_replies  # per peer: a peer that does not read holds at most this many
            socket.router_mandatory = True  # a full or gone peer raises (counted) instead of dropping silently
        if self.security:
            self.security.apply(socket)
        endpoint = f"tcp://{self.transport.host}:{port if port else '*'}"
        deadline = time.monotonic() + retry_s
        while True:
            try:
                socket.bind(endpoint)
                return socket
            except zmq.ZMQError as exc:  # a port just released by the socket this one replaces frees up shortly
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    socket.close(0)
                    raise
                time.sleep(0.05)

    # -- serving -------------------------------------------------------------------------------------
    def serve(self, duration_s: float | None = None) -> None:
        poller = self._poller()
        end = None if duration_s is None else time.monotonic() + duration_s
        log.info("replay server %s listening on %s (weights on %s)%s", self.epoch, self.endpoints["router"],
                 self.endpoints["weights"], " with CURVE" if self.security else " WITHOUT keys: any local process can connect")
        while not self._drained() and (end is None or time.monotonic() < end):
            if self._sockets_replaced:
                poller, self._sockets_replaced = self._poller(), False
            events = dict(poller.poll(100))
            if self._replies in events:
                while True:
                    try:
                        identity, *reply = self._replies.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    peer = self.peers.get(identity.bytes)
                    if peer is not None:
                        peer.pending = max(peer.pending - 1, 0)
                    self._send(identity.bytes, reply)
            if self.publisher in events:
                self._on_subscriptions()
            if self.router in events:
                for _ in range(64):  # a burst, then the periodic checks below
                    try:
                        frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(frames[0].bytes, frames[1:])
                self._send_acks()
            self._periodic()

    def _poller(self) -> zmq.Poller:
        poller = zmq.Poller()
        for socket in (self.router, self._replies, self.publisher):
            poller.register(socket, zmq.POLLIN)
        return poller

    def stop(self, drain_s: float = 0.0) -> None:
        """Stop serving: at once, or (drain_s > 0, as on SIGTERM) once every actor has said goodbye or
        drain_s has passed, so actors stopped by the same signal still get their last chunks acknowledged.
        A second call stops at once."""
        if self._stopping or drain_s <= 0:
            self._drain_until = 0.0
        else:
            self._drain_until = time.monotonic() + drain_s
            log.info("replay server stopping: serving up to %.0f s more while actors send what they hold", drain_s)
        self._stopping = True

    def _drained(self) -> bool:
        if not self._stopping:
            return False
        now = time.monotonic()
        actors_live = any(p.role == "actor" and now - p.last_seen < self.transport.peer_timeout_s for p in self.peers.values())
        return now >= self._drain_until or not actors_live

    def close(self) -> None:
        if self._samplers is not None:
            self._samplers.shutdown(wait=True)
        self._replies.close(0)
        self.router.close(0)
        self.publisher.close(0)
        if self.security:
            self.security.stop()
        self.context.term()
        self.data.close()

    def _send(self, identity: bytes, frames) -> bool:
        """Send on the ROUTER without blocking; a peer that is gone or does not read loses the reply (counted)."""
        try:
            self.router.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            self.counters["replies_dropped_peer_full"] += 1
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.counters["replies_dropped_peer_gone"] += 1
        return False

    _HANDLERS = ("hello", "chunk", "heartbeat", "sample", "weights", "bye")

    def _handle(self, identity: bytes, frames) -> None:
        now = time.monotonic()
        msg = None
        try:
            msg = decode(frames)
            if msg.type not in self._HANDLERS:
                raise ProtocolError(f"unknown message type {msg.type!r:.80}")
            if msg.type != "hello" and identity not in self.peers:
                # Not an error of the peer's data: after a server restart every peer must say hello again.
                self._send(identity, encode("error", {"code": "hello_first", "message": f"'{msg.type}' before 'hello'"}))
                return
            peer = self.peers.get(identity)
            if peer is not None:
                peer.last_seen = now
                if peer.role == "learner":
                    self.learner_seen = now
                else:
                    self.actor_seen[peer.name] = now
            reply = getattr(self, f"_on_{msg.type}")(identity, frames[0], msg)
        except ProtocolError as exc:
            code = exc.code if isinstance(exc, Refused) else "rejected"
            self.counters["rejected"] += 1
            self.counters[f"rejected_{code}"] += 1
            self.peer_log(logging.WARNING, "refused a message from peer %s (%d refused so far): %s", identity.hex()[:16], self.counters["rejected"], exc)
            reply = encode("error", {"code": code, "message": str(exc), **self._reference(msg)})
        except Exception as exc:  # a defect of the server's own: answered and counted, never fatal to the loop
            self.counters["internal_errors"] += 1
            log.exception("handling a message from peer %s failed (%d internal errors so far)", identity.hex()[:16], self.counters["internal_errors"])
            reply = encode("error", {"code": "internal", "message": f"the server failed on this message: {type(exc).__name__}: {exc!s:.200}",
                                     **self._reference(msg)})
        if reply is not None:
            self._send(identity, reply)

    @staticmethod
    def _reference(msg: Message | None) -> dict:
        """Which message an error answers: its type and seq, if they are plain values."""
        if msg is None:
            return {}
        seq, req = msg.header.get("seq"), msg.header.get("req")
        return {"ref_type": msg.type[:64], "seq": seq if type(seq) is int else None, "req": req if type(req) is int else None}

    # -- handlers ------------------------------------------------------------------------------------
    def _on_hello(self, identity: bytes, head_frame, msg: Message):
        role, name = msg.header.get("role"), msg.header.get("name")
        if not (isinstance(role, str) and role in ("actor", "learner")):
            raise ProtocolError(f"field 'role' must be 'actor' or 'learner', got {role!r:.80}")
        size = len(name.encode("utf-8", "surrogatepass")) if isinstance(name, str) else 0
        if not (isinstance(name, str) and 0 < size <= self.cfg.max_name_bytes and name.isprintable()):
            raise ProtocolError(f"field 'name' must be printable text of 1-{self.cfg.max_name_bytes} bytes in UTF-8, got {name!r:.80}"
                                + (f" ({size} bytes)" if isinstance(name, str) else ""))
        if msg.header.get("spec") != self.spec:
            raise ProtocolError(f"observation/action spec mismatch: peer {name!r} has {msg.header.get('spec')!s:.500}, server has {self.spec}")
        user = None
        if self.security is not None:
            user = self.security.user_of(head_frame)
            if not role_allows(self.security.roles, user, role, name):
                raise Refused("not_authorised", f"key {user!r} is not authorised as {role} {name!r} (see {self.security.roles_path})")
        known = self.peers.get(identity)
        if known is not None and (known.role, known.name) != (role, name):
            raise Refused("name_change", f"this connection said hello as {known.role} {known.name!r}: a connection keeps its "
                                         "role and name (connect again to use another)")
        now = time.monotonic()
        live = [(i, p) for i, p in self.peers.items() if i != identity and now - p.last_seen < self.transport.peer_timeout_s]
        if role == "actor" and any(p.role == "actor" and p.name == name for _, p in live):
            raise Refused("name_in_use", f"actor name {name!r} is held by a live connection: say hello again once it is gone "
                                         f"({self.transport.peer_timeout_s} s of silence)")
        if role == "learner" and any(p.role == "learner" for _, p in live):
            raise Refused("name_in_use", "a learner is already connected and alive: only one learner publishes weights")
        if role == "actor" and name not in self.data.next_seq:
            if len(self.data.next_seq) >= self.cfg.max_actor_names:
                raise Refused("too_many_names", f"{len(self.data.next_seq)} actor names already hold data in this replay "
                                                f"(server.max_actor_names): reuse a name, or start a new run directory")
            if not self.data.has_room_for(name):  # only a state file made under smaller limits can get here
                raise Refused("too_many_names", f"the replay state in {self.data.dir} has no room for another actor name: "
                                                "reuse a name, or start a new run directory")
        live_names = {p.name for _, p in live if p.role == "actor"}
        if role == "actor" and name not in live_names and len(live_names) >= self.cfg.max_actors:
            raise Refused("too_many_actors", f"{len(live_names)} actor names are live (server.max_actors={self.cfg.max_actors})")
        if identity not in self.peers and len(self.peers) >= self.cfg.max_peers:
            self._forget_peers(now, older_than=self.transport.peer_timeout_s)
            if len(self.peers) >= self.cfg.max_peers:
                raise Refused("too_many_peers", f"{self.cfg.max_peers} connections are live (server.max_peers)")
        self.peers[identity] = Peer(role, name, now, user=user)
        if role == "learner":
            self.learner_seen = now
        else:
            self.actor_seen[name] = now
        self.peer_log(logging.INFO, "%s %r connected (%s)", role, name, identity.hex()[:16])
        return encode("welcome", {"epoch": self.epoch, "next_seq": self.data.next_seq.get(name, 0), **self._status()})

    def _on_chunk(self, identity: bytes, head_frame, msg: Message):
        peer = self.peers[identity]
        seq, demo = msg.header.get("seq"), msg.header.get("demo", False)
        if peer.role != "actor" or type(seq) is not int or seq < 0 or type(demo) is not bool or msg.header.get("name") != peer.name:
            raise ProtocolError("chunk needs an actor peer, a non-negative integer 'seq', a boolean 'demo' and the actor's 'name'")
        expected = self.data.next_seq.get(peer.name, 0)
        if seq < expected:
            self.counters["duplicates"] += 1
            return encode("ack", {"seq": seq, "duplicate": True})
        if seq > expected:
            return encode("resend", {"seq": expected})
        check_chunk(msg.arrays, self.observation_space, self.action_shape)
        check_continuity(msg.arrays, self.data.episode_open(peer.name, demo))
        try:
            with self._lock:
                self.counters["transitions"] += self.data.accept(peer.name, seq, demo, msg.arrays)
            if not demo:
                self.intervention_transitions += int(np.count_nonzero(msg.arrays["policy_version"] == INTERVENTION_VERSION))
        except StoreFull as exc:  # the actor keeps the chunk (and saves it on closing): nothing is lost
            raise Refused("disk_full", str(exc)) from None
        self.counters["chunks"] += 1
        # Acknowledgements are cumulative: one per actor per burst (or per ACK_EVERY chunks, so an actor's
        # window of unacknowledged chunks keeps moving) instead of one per chunk.
        self._acks[identity] = seq
        if seq % ACK_EVERY == ACK_EVERY - 1:
            self._send_acks()
        return None

    def _send_acks(self) -> None:
        for identity, seq in self._acks.items():
            self._send(identity, encode("ack", {"seq": seq}))
        self._acks.clear()

    def _on_heartbeat(self, identity: bytes, head_frame, msg: Message):
        peer, state = self.peers[identity], msg.header.get("state")
        if isinstance(state, str) and state != peer.state:
            state = state[:200]
            if peer.state or state != "acting":  # holding or a fault is worth a warning; back to acting is news only
                self.peer_log(logging.INFO if state == "acting" else logging.WARNING, "%s %r reports: %s", peer.role, peer.name, state)
            peer.state = state
        return encode("status", {"epoch": self.epoch, **self._status()})

    def _on_sample(self, identity: bytes, head_frame, msg: Message):
        h, peer = msg.header, self.peers[identity]
        if peer.role != "learner":
            raise ProtocolError("only a learner samples batches")
        batch_size = _int_field(h, "batch_size", 1, 65536)
        n_step = _int_field(h, "n_step", 1, 100, default=1)
        frame_stack = _int_field(h, "frame_stack", 1, 16, default=1)
        min_transitions = _int_field(h, "min_transitions", 0, 1 << 40, default=1)
        gamma = _float_field(h, "gamma", 0.0, 1.0, default=0.99)
        req = h.get("req")
        if req is not None and type(req) is not int:
            raise ProtocolError(f"field 'req' must be an integer, got {req!r:.80}")
        size = batch_size * 2 * frame_stack * self._row_bytes  # obs and next_obs, each frame of the stack
        if size > self.cfg.max_batch_mb * 2**20:
            raise Refused("too_large", f"a batch of {batch_size} x {frame_stack} frames is {size / 2**20:.0f} MB, above server.max_batch_mb={self.cfg.max_batch_mb}")
        if peer.pending >= self.cfg.max_pending_per_peer:
            raise Refused("busy", f"{peer.pending} sample requests of this peer are being gathered (server.max_pending_per_peer): "
                                  "read the batches before asking for more")
        have = self.storage.num_transitions()
        if have < max(min_transitions, 1):
            return encode("wait", {"req": req, "reason": f"{have} transitions stored, waiting for {min_transitions}", **self._status()})
        request = dict(req=req, batch_size=batch_size, n_step=n_step, gamma=gamma, frame_stack=frame_stack)
        self.counters["batches"] += 1
        if self._samplers is None:
            return self._batch(**request)
        peer.pending += 1
        self._samplers.submit(self._sample_in_thread, identity, request)
        return None  # the reply comes from a sampler thread, through the main loop

    def _batch(self, req, batch_size: int, n_step: int, gamma: float, frame_stack: int) -> list:
        rng = getattr(self._local, "rng", None)
        if rng is None:
            rng = self._local.rng = np.random.default_rng([self.cfg.seed, next(self._thread_seeds)])
        demos = self.demos if self.demos.num_transitions() else None
        sampler = MixedSampler(self.storage, demos, self.cfg.demo_ratio if demos is not None else 0.0)
        gather = dict(n_step=n_step, gamma=gamma, frame_stack=frame_stack)
        if self._samplers is None:  # gathering in the serving loop: nothing is written meanwhile
            batch = sampler.gather(sampler.draw(batch_size, rng), **gather)
        else:
            batch = self._gather_beside_ingestion(sampler, batch_size, rng, gather)
        return encode("batch", {"req": req, **self._status()}, batch_arrays(batch))

    def _demo_skip(self) -> int:
        """The demo store's margin: none while nothing writes to it (the demo file it was loaded with, often
        exactly as large as the store: a margin there would leave its oldest demos out of every batch, and
        one as large as the online store's left one demo row to draw); its own tenth once demo streams
        (interventions, teleop) write to it."""
        if not any(key.startswith("demo:") for key in self.data.streams):
            return 0
        return min(self.demos.capacity // 10, 10_000)

    def _gather_beside_ingestion(self, sampler: MixedSampler, batch_size: int, rng, gather: dict):
        """Draw under the lock, gather outside it while chunks keep arriving. The oldest rows are not drawn,
        as writes during the gather overwrite them; if more rows were written meanwhile than that margin
        covers (a sampler thread held up, a burst of chunks), the batch may mix old and new rows: it is
        gathered again, and on the last try under the lock."""
        attempt = 0
        while True:
            with self._lock:
                draws = sampler.draw(batch_size, rng, skip_oldest=self._skip_oldest, skip_oldest_demos=self._demo_skip())
                # Per store: the lowest row the gather may read (frame stacks reach frame_stack - 1 rows back).
                lowest = [int(starts.min()) - (gather["frame_stack"] - 1) for _, starts in draws]
                if attempt == 2:
                    return sampler.gather(draws, **gather)
            batch = sampler.gather(draws, **gather)
            with self._lock:
                if all(store.total - store.capacity <= low for (store, _), low in zip(draws, lowest)):
                    return batch
                self.counters["regathered"] += 1
            attempt += 1

    def _sample_in_thread(self, identity: bytes, request: dict) -> None:
        sender = getattr(self._local, "sender", None)
        if sender is None:
            sender = self._local.sender = self.context.socket(zmq.PUSH)
            sender.linger = 0
            sender.connect(self._replies_endpoint)
        try:
            reply = self._batch(**request)
        except Exception as exc:  # a failure here must reach the learner, not vanish in the pool
            log.exception("sampling failed")
            reply = encode("error", {"code": "rejected", "message": f"sampling failed: {type(exc).__name__}: {exc}", "ref_type": "sample"})
        sender.send_multipart([identity, *reply], copy=False)

    def _on_weights(self, identity: bytes, head_frame, msg: Message):
        if self.peers[identity].role != "learner":
            raise Refused("not_authorised", "only the learner publishes weights")
        version = msg.header.get("version")
        if type(version) is not int or version < 0:
            raise ProtocolError(f"field 'version' must be a non-negative integer, got {version!r:.80}")
        if identity == self._weights_from and version == self.weights_version:
            return encode("ack", {"version": version})  # sent again (its acknowledgement was lost): already held
        if identity == self._weights_from and version < self.weights_version:
            raise ProtocolError(f"weights version {version} does not go forward (the last was {self.weights_version})")
        self._weights_from = identity
        self.weights = encode("weights", {"version": version}, msg.arrays)
        self.weights = [bytes(f) for f in self.weights]  # kept for actors that connect later
        self.weights_version = version
        self.weights_digest = arrays_digest(msg.arrays)
        self.publisher.send_multipart(self.weights, copy=False)
        # Announce it to the actors now rather than with their next status: they apply arrays only once
        # announced, and waiting for the next heartbeat cost ~500 ms.
        status = encode("status", {"epoch": self.epoch, **self._status()})
        for peer_id, peer in list(self.peers.items()):
            if peer.role == "actor":
                self._send(peer_id, status)
        return encode("ack", {"version": version})

    def _on_subscriptions(self) -> None:
        """Subscribers that joined get the current weights (once per burst of joins: the others get a
        version they already hold, which they ignore)."""
        joined = False
        while True:
            try:
                event = self.publisher.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            joined |= event[:1] == b"\x01"  # 1: subscribe, 0: unsubscribe
        if joined and self.weights is not None:
            self.counters["weights_to_joiners"] += 1
            self.publisher.send_multipart(self.weights, copy=False)

    def _on_bye(self, identity: bytes, head_frame, msg: Message):
        peer = self.peers.pop(identity)
        if peer.role == "learner":
            self.learner_seen = -float("inf")
        else:
            self.actor_seen.pop(peer.name, None)
        self.peer_log(logging.INFO, "%s %r said goodbye", peer.role, peer.name)
        return None

    def _forget_peers(self, now: float, older_than: float) -> None:
        for identity in [i for i, p in self.peers.items() if now - p.last_seen > older_than]:
            del self.peers[identity]
        for name in [n for n, t in self.actor_seen.items() if now - t > older_than]:
            del self.actor_seen[name]

    # -- keys --------------------------------------------------------------------------------------------
    def _check_keys(self) -> None:
        """Take changes to `authorized/` (a key deleted, roles.json edited) without a restart. When a key is
        revoked or its role narrowed, both sockets are bound anew: every connection is closed and handshakes
        again against the new key list, so the revoked key's connections (weights subscriptions included)
        end at once; the other peers reconnect and say hello again within about a second, losing nothing
        (actors resend what was not acknowledged)."""
        try:
            revoked = self.security.reload()
        except Exception as exc:  # a half-edited roles.json: keep the old table, say so, try again later
            self.peer_log(logging.ERROR, "the authorised keys could not be reloaded (the previous ones stay in force): %s", exc)
            return
        if revoked is None:
            return
        if not revoked:
            log.info("authorised keys changed: none revoked (new handshakes use the new list)")
            return
        log.warning("authorised keys revoked or narrowed: %s: closing every connection so each handshakes again", sorted(revoked))
        self._replace_sockets()

    def _replace_sockets(self) -> None:
        ports = [int(self.endpoints[k].rsplit(":", 1)[1]) for k in ("router", "weights")]
        self.router.close(0)
        self.publisher.close(0)
        self.router = self._bind(zmq.ROUTER, ports[0], retry_s=5.0)
        self.publisher = self._bind(zmq.XPUB, ports[1], retry_s=5.0)
        self.peers.clear()  # every peer says hello again on its new connection
        self._acks.clear()
        self.counters["sockets_replaced"] += 1
        self._sockets_replaced = True

    # -- liveness ------------------------------------------------------------------------------------
    def _status(self) -> dict:
        now = time.monotonic()
        timeout = self.transport.peer_timeout_s
        return {
            "learner_alive": now - self.learner_seen < timeout,
            # An actor's intervention stream (<name>.interventions) is the same actor: not counted twice.
            "actors_alive": sum(now - t < timeout for name, t in list(self.actor_seen.items())  # list(): atomic, sampler threads call this too
                                if not name.endswith(DEMO_STREAM_SUFFIX)),
            "weights_version": self.weights_version,
            "weights_digest": self.weights_digest,
            "transitions": self.storage.num_transitions(),
            "demo_transitions": self.demos.num_transitions(),
            "intervention_transitions": self.intervention_transitions,
        }

    def _periodic(self) -> None:
        status = self._status()
        alive = (status["learner_alive"], status["actors_alive"] > 0)
        if alive != self._alive_state:
            if self._alive_state[0] and not alive[0]:
                log.warning("the learner went silent (no message for %.1f s)", self.transport.peer_timeout_s)
            if self._alive_state[1] and not alive[1]:
                log.warning("no actor is alive (none heard from for %.1f s)", self.transport.peer_timeout_s)
            self._alive_state = alive
        now = time.monotonic()
        # Connections replaced by a reconnect, or peers gone for good (and the names they used).
        self._forget_peers(now, older_than=10 * self.transport.peer_timeout_s)
        if self.security is not None and now - self._keys_checked > KEYS_CHECK_S:
            self._keys_checked = now
            self._check_keys()
        if now - self._last_report > 10.0:
            self._last_report = now
            log.info("replay: %d transitions (%d demo), %d actors alive, learner %s, %d batches served (%d gathered again), "
                     "%d rejected, %d duplicates", status["transitions"], status["demo_transitions"], status["actors_alive"],
                     "alive" if status["learner_alive"] else "absent", self.counters["batches"], self.counters["regathered"],
                     self.counters["rejected"], self.counters["duplicates"])
