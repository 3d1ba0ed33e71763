"""The replay server: owns the replay storage in its own process, so a learner crash loses no data.

One ROUTER socket serves every peer (actors and learners, request-reply); one PUB socket broadcasts
the learner's weights to actors. Messages (robolearn.transport.protocol):

    peer -> server                    server -> peer
    hello {role, name, spec}          welcome {epoch, next_seq, ...} | error
    chunk {name, seq, demo} + arrays  ack {seq} | resend {seq} | error      (actors; an ack covers every
                                                                             chunk up to seq: one per burst)
    heartbeat {name, ...}             status {epoch, learner_alive, actors_alive, transitions, ...}
    sample {req, batch_size, ...}     batch {req} + arrays | wait {req, reason}   (learners)
    weights {version} + arrays        ack {version}; the same frames go out on PUB
    bye {name}

Durability (robolearn.transport.durable): the replay storage lives in files mapped into memory, and a
chunk is acknowledged only once it is stored there and the state that covers it (each actor's next
expected sequence number among it) is written; a restart reopens the files, with every acknowledged
transition and each actor's next sequence number (so resent chunks are recognised and not stored twice).

Any malformed message, schema mismatch or out-of-spec chunk gets an `error` reply naming the problem, is
logged (rate-limited), and changes nothing.
"""

from __future__ import annotations

import itertools
import json
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

from robolearn.replay import MixedSampler, ReplayStorage
from robolearn.transport.chunks import check_chunk, wire_spec
from robolearn.transport.config import TransportConfig
from robolearn.transport.durable import DurableReplay, ServerConfig
from robolearn.transport.protocol import Message, ProtocolError, decode, encode
from robolearn.transport.security import ServerSecurity

log = logging.getLogger(__name__)
ACK_EVERY = 8  # chunks of one actor between acknowledgements within a burst (an actor keeps up to 32 in flight)


@dataclass
class Peer:
    role: str
    name: str
    last_seen: float
    state: str = ""


class ReplayServer:
    def __init__(self, directory: str | Path, observation_space: spaces.Dict, action_shape: tuple[int, ...],
                 transport: TransportConfig | None = None, cfg: ServerConfig | None = None, demos: ReplayStorage | None = None):
        self.cfg = cfg = cfg or ServerConfig()
        self.transport = transport = transport or TransportConfig()
        self.dir = Path(directory)
        self.observation_space, self.action_shape = observation_space, tuple(action_shape)
        self.spec = wire_spec(observation_space, action_shape)
        self.data = DurableReplay(self.dir, observation_space, action_shape, cfg, demos)
        self.storage, self.demos = self.data.storage, self.data.demos
        self.epoch = uuid.uuid4().hex[:12]
        # Sampling: rows are drawn under a lock that ingestion also takes (cheap), then gathered by sampler
        # threads (numpy releases the GIL while copying) while ingestion goes on; the oldest rows of a
        # full buffer are not drawn, since writes arriving during a gather overwrite them.
        self._lock = threading.Lock()
        self._local = threading.local()
        self._thread_seeds = itertools.count()
        self._samplers = ThreadPoolExecutor(cfg.sampler_threads, thread_name_prefix="sampler") if cfg.sampler_threads else None
        self._skip_oldest = min(cfg.capacity // 10, 10_000)
        self.peers: dict[bytes, Peer] = {}
        self.actor_seen: dict[str, float] = {}
        self.learner_seen = -float("inf")
        self.weights: list[bytes] | None = None
        self.weights_version = -1
        self.counters: Counter = Counter()
        self._acks: dict[bytes, int] = {}  # per actor, the newest chunk stored but not yet acknowledged
        self.context = zmq.Context()
        self.security = ServerSecurity(self.context, transport.curve_keys) if transport.curve_keys else None
        self.router = self._bind(zmq.ROUTER, transport.port)
        self.publisher = self._bind(zmq.PUB, transport.weights_port)
        self.endpoints = {"router": self.router.last_endpoint.decode(), "weights": self.publisher.last_endpoint.decode()}
        self._replies_endpoint = f"inproc://sampled-{self.epoch}"
        self._replies = self.context.socket(zmq.PULL)  # batches from sampler threads; only this thread uses the ROUTER
        self._replies.bind(self._replies_endpoint)
        (self.dir / "endpoints.json").write_text(json.dumps({**self.endpoints, "epoch": self.epoch}))
        self._stopping = False
        self._last_report = time.monotonic()
        self._alive_state = (None, None)

    def _bind(self, kind: int, port: int) -> zmq.Socket:
        socket = self.context.socket(kind)
        socket.linger = 0
        if kind == zmq.PUB:
            socket.sndhwm = 4  # weights: a slow subscriber gets the newest, not a backlog
        if self.security:
            self.security.apply(socket)
        endpoint = f"tcp://{self.transport.host}:{port if port else '*'}"
        socket.bind(endpoint)
        return socket

    # -- serving -------------------------------------------------------------------------------------
    def serve(self, duration_s: float | None = None) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self._replies, zmq.POLLIN)
        end = None if duration_s is None else time.monotonic() + duration_s
        log.info("replay server %s listening on %s (weights on %s)%s", self.epoch, self.endpoints["router"],
                 self.endpoints["weights"], " with CURVE" if self.security else "")
        while not self._stopping and (end is None or time.monotonic() < end):
            events = dict(poller.poll(100))
            if self._replies in events:
                while True:
                    try:
                        self.router.send_multipart(self._replies.recv_multipart(zmq.NOBLOCK, copy=False), copy=False)
                    except zmq.Again:
                        break
            if self.router in events:
                for _ in range(64):  # a burst, then the periodic checks below
                    try:
                        frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(frames[0].bytes, frames[1:])
                self._send_acks()
            self._periodic()

    def stop(self) -> None:
        self._stopping = True

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

    def _handle(self, identity: bytes, frames) -> None:
        now = time.monotonic()
        msg = None
        try:
            msg = decode(frames)
            handler = getattr(self, f"_on_{msg.type}", None)
            if handler is None:
                raise ProtocolError(f"unknown message type {msg.type!r}")
            if msg.type != "hello" and identity not in self.peers:
                # Not an error of the peer's data: after a server restart every peer must say hello again.
                self.router.send_multipart([identity, *encode("error", {"code": "hello_first", "message": f"'{msg.type}' before 'hello'"})])
                return
            peer = self.peers.get(identity)
            if peer is not None:
                peer.last_seen = now
                if peer.role == "learner":
                    self.learner_seen = now
                else:
                    self.actor_seen[peer.name] = now
            reply = handler(identity, msg)
        except ProtocolError as exc:
            self.counters["rejected"] += 1
            if self.counters["rejected"] <= 20 or self.counters["rejected"] % 1000 == 0:
                log.warning("rejected a message from peer %s (%d rejected so far): %s", identity.hex(), self.counters["rejected"], exc)
            ref = {"ref_type": msg.type, "seq": msg.header.get("seq")} if msg is not None else {}
            reply = encode("error", {"code": "rejected", "message": str(exc), **ref})
        if reply is not None:
            self.router.send_multipart([identity, *reply], copy=False)

    # -- handlers ------------------------------------------------------------------------------------
    def _on_hello(self, identity: bytes, msg: Message):
        role, name = msg.header.get("role"), msg.header.get("name")
        if role not in ("actor", "learner") or not isinstance(name, str) or not name:
            raise ProtocolError(f"hello needs role 'actor' or 'learner' and a name, got role={role!r} name={name!r}")
        if msg.header.get("spec") != self.spec:
            raise ProtocolError(f"observation/action spec mismatch: peer {name!r} has {msg.header.get('spec')}, server has {self.spec}")
        now = time.monotonic()
        self.peers[identity] = Peer(role, name, now)
        if role == "learner":
            self.learner_seen = now
        else:
            self.actor_seen[name] = now
        log.info("%s %r connected (%s)", role, name, identity.hex())
        if role == "actor" and self.weights is not None:
            self.router.send_multipart([identity, *self.weights], copy=False)  # PUB misses what was sent before it joined
        return encode("welcome", {"epoch": self.epoch, "next_seq": self.data.next_seq.get(name, 0), **self._status()})

    def _on_chunk(self, identity: bytes, msg: Message):
        peer = self.peers[identity]
        seq, demo = msg.header.get("seq"), bool(msg.header.get("demo", False))
        if peer.role != "actor" or not isinstance(seq, int) or msg.header.get("name") != peer.name:
            raise ProtocolError("chunk needs an actor peer, an integer seq and the actor's name")
        expected = self.data.next_seq.get(peer.name, 0)
        if seq < expected:
            self.counters["duplicates"] += 1
            return encode("ack", {"seq": seq, "duplicate": True})
        if seq > expected:
            return encode("resend", {"seq": expected})
        check_chunk(msg.arrays, self.observation_space, self.action_shape)
        with self._lock:
            self.counters["transitions"] += self.data.accept(peer.name, seq, demo, msg.arrays)
        self.counters["chunks"] += 1
        # Acknowledgements are cumulative: one per actor per burst (or per ACK_EVERY chunks, so an actor's
        # window of unacknowledged chunks keeps moving) instead of one per chunk.
        self._acks[identity] = seq
        if seq % ACK_EVERY == ACK_EVERY - 1:
            self._send_acks()
        return None

    def _send_acks(self) -> None:
        for identity, seq in self._acks.items():
            self.router.send_multipart([identity, *encode("ack", {"seq": seq})], copy=False)
        self._acks.clear()

    def _on_heartbeat(self, identity: bytes, msg: Message):
        peer, state = self.peers[identity], msg.header.get("state")
        if isinstance(state, str) and state != peer.state:
            if peer.state or state != "acting":
                log.warning("%s %r reports: %s", peer.role, peer.name, state)
            peer.state = state
        return encode("status", {"epoch": self.epoch, **self._status()})

    def _on_sample(self, identity: bytes, msg: Message):
        h = msg.header
        try:
            batch_size, n_step, frame_stack = int(h["batch_size"]), int(h.get("n_step", 1)), int(h.get("frame_stack", 1))
            gamma, min_transitions = float(h.get("gamma", 0.99)), int(h.get("min_transitions", 1))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"sample request needs integer batch_size, n_step, frame_stack: {exc}") from None
        if not (0 < batch_size <= 65536 and 0 < n_step <= 100 and 0 < frame_stack <= 16):
            raise ProtocolError(f"sample request out of range: batch_size={batch_size} n_step={n_step} frame_stack={frame_stack}")
        have = self.storage.num_transitions()
        if have < max(min_transitions, 1):
            return encode("wait", {"req": h.get("req"), "reason": f"{have} transitions stored, waiting for {min_transitions}", **self._status()})
        request = dict(req=h.get("req"), batch_size=batch_size, n_step=n_step, gamma=gamma, frame_stack=frame_stack)
        self.counters["batches"] += 1
        if self._samplers is None:
            return self._batch(**request)
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
        arrays = {"action": batch.action, "reward": batch.reward, "discount": batch.discount}
        arrays.update({f"obs/{k}": v for k, v in batch.obs.items()})
        arrays.update({f"next_obs/{k}": v for k, v in batch.next_obs.items()})
        return encode("batch", {"req": req, **self._status()}, arrays)

    def _gather_beside_ingestion(self, sampler: MixedSampler, batch_size: int, rng, gather: dict):
        """Draw under the lock, gather outside it while chunks keep arriving. The oldest rows are not drawn,
        as writes during the gather overwrite them; if more rows were written meanwhile than that margin
        covers (a sampler thread held up, a burst of chunks), the batch may mix old and new rows: it is
        gathered again, and on the last try under the lock."""
        attempt = 0
        while True:
            with self._lock:
                draws = sampler.draw(batch_size, rng, skip_oldest=self._skip_oldest)
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

    def _on_weights(self, identity: bytes, msg: Message):
        if self.peers[identity].role != "learner":
            raise ProtocolError("only a learner publishes weights")
        version = msg.header.get("version")
        if not isinstance(version, int):
            raise ProtocolError("weights need an integer version")
        self.weights = encode("weights", {"version": version}, msg.arrays)
        self.weights = [bytes(f) for f in self.weights]  # kept for actors that connect later
        self.weights_version = version
        self.publisher.send_multipart(self.weights, copy=False)
        return encode("ack", {"version": version})

    def _on_bye(self, identity: bytes, msg: Message):
        peer = self.peers.pop(identity)
        if peer.role == "learner":
            self.learner_seen = -float("inf")
        else:
            self.actor_seen.pop(peer.name, None)
        log.info("%s %r said goodbye", peer.role, peer.name)
        return None

    # -- liveness ------------------------------------------------------------------------------------
    def _status(self) -> dict:
        now = time.monotonic()
        timeout = self.transport.peer_timeout_s
        return {
            "learner_alive": now - self.learner_seen < timeout,
            "actors_alive": sum(now - t < timeout for t in list(self.actor_seen.values())),  # list(): atomic, sampler threads call this too
            "weights_version": self.weights_version,
            "transitions": self.storage.num_transitions(),
            "demo_transitions": self.demos.num_transitions(),
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
        forget = 10 * self.transport.peer_timeout_s  # connections replaced by a reconnect, or peers gone for good
        for identity in [i for i, p in self.peers.items() if now - p.last_seen > forget]:
            del self.peers[identity]
        if now - self._last_report > 10.0:
            self._last_report = now
            log.info("replay: %d transitions (%d demo), %d actors alive, learner %s, %d batches served (%d gathered again), "
                     "%d rejected, %d duplicates", status["transitions"], status["demo_transitions"], status["actors_alive"],
                     "alive" if status["learner_alive"] else "absent", self.counters["batches"], self.counters["regathered"],
                     self.counters["rejected"], self.counters["duplicates"])
