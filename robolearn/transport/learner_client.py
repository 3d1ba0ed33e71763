"""The learner's side of the transport: prefetched batches in, versioned weights out.

A network thread owns the socket. It keeps `prefetch` sample requests outstanding so that the next
batch is usually waiting when an update finishes, heartbeats, and sends the weights the learner hands
it (only the newest pending weights are sent: an older set still queued is superseded).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np
import zmq
from gymnasium import spaces

from robolearn.replay import Batch
from robolearn.replay.codec import batch_from_arrays
from robolearn.spec import spec_signature
from robolearn.transport.client import TransportFatal, close_dealer, connect_dealer, read_reply, reconnect_on, refusal
from robolearn.transport.config import TransportConfig
from robolearn.transport.protocol import encode

log = logging.getLogger(__name__)


class LearnerClient:
    def __init__(self, cfg: TransportConfig, observation_space: spaces.Dict, action_shape: tuple[int, ...], *,
                 batch_size: int, n_step: int, gamma: float, frame_stack: int, min_transitions: int, name: str = "learner"):
        cfg.require_keys("the learner")
        self.cfg, self.name = cfg, name
        self.spec = spec_signature(observation_space, action_shape)
        self.request = {"batch_size": batch_size, "n_step": n_step, "gamma": gamma, "frame_stack": frame_stack,
                        "min_transitions": min_transitions}
        self._batches: queue.Queue = queue.Queue(maxsize=max(cfg.prefetch, 1))
        self._weights_out: tuple[int, dict] | None = None
        self._last_sent: tuple[int, dict] | None = None
        self._lock = threading.Lock()
        self.status: dict = {}
        self.status_at = 0.0  # when the last status came (time.monotonic)
        self.connected = False
        self.fatal: str | None = None
        self.waiting_reason: str | None = None
        self.weights_acked = -1
        self.last_reply = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="learner-net", daemon=True)
        self._thread.start()

    # -- learner-thread API --------------------------------------------------------------------------
    def next_batch(self, timeout_s: float | None = None) -> Batch | None:
        """The next batch (None after timeout_s). Raises TransportFatal if the server refused us."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self.fatal:
                raise TransportFatal(self.fatal)
            wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                return batch_from_arrays(self._batches.get(timeout=wait))
            except queue.Empty:
                continue

    def publish_weights(self, version: int, arrays: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._weights_out = (version, arrays)

    def actors_alive(self) -> int:
        return int(self.status.get("actors_alive") or 0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    # -- network thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        context = zmq.Context.instance()
        dealer, outstanding, req = None, set(), 0
        hello_at = last_beat = 0.0
        try:
            while not self._stop.is_set():
                try:
                    now = time.monotonic()
                    if dealer is None:  # a new connection: what was asked on the old one is not answered
                        self.connected, outstanding, hello_at = False, set(), now
                        dealer = connect_dealer(context, self.cfg, "learner", self.name, self.spec)
                    if dealer.poll(10):
                        while True:
                            try:
                                frames = dealer.recv_multipart(zmq.NOBLOCK, copy=False)
                            except zmq.Again:
                                break
                            action = self._on_reply(frames, outstanding)
                            if action == "reconnect":
                                dealer.close(0)
                                dealer = None
                                break
                    if self.fatal:
                        return
                    if dealer is None:
                        continue
                    now = time.monotonic()
                    silent = now - (self.last_reply if self.connected else hello_at)
                    if silent > self.cfg.peer_timeout_s:
                        log.warning("learner: replay server silent for %.1f s; reconnecting", silent)
                        self.connected = False
                        dealer.close(0)
                        dealer = None
                        continue
                    if not self.connected:
                        continue
                    with self._lock:
                        weights, self._weights_out = self._weights_out, None
                    if weights is not None:
                        self._last_sent = weights  # sent again after a reconnect until acknowledged
                        dealer.send_multipart(encode("weights", {"version": weights[0]}, weights[1]), copy=False)
                    # Keep `prefetch` requests outstanding, counting batches already waiting in the queue.
                    while len(outstanding) + self._batches.qsize() < self.cfg.prefetch:
                        req += 1
                        outstanding.add(req)
                        dealer.send_multipart(encode("sample", {"req": req, **self.request}))
                    if now - last_beat > self.cfg.heartbeat_s:
                        dealer.send_multipart(encode("heartbeat", {"name": self.name}))
                        last_beat = now
                except zmq.Again:  # a send that would block: no connection to send on (a key the server refused)
                    log.warning("learner: the replay server does not take messages (no connection: is our key authorised?); reconnecting")
                    if dealer is not None:
                        dealer.close(0)
                    dealer = None
        finally:
            close_dealer(dealer, self.name)

    def _on_reply(self, frames, outstanding: set) -> str | None:
        msg = read_reply(frames, "learner")
        if msg is None:
            return None
        self.last_reply = time.monotonic()
        h = msg.header
        if "actors_alive" in h:
            self.status = {k: h.get(k) for k in ("epoch", "learner_alive", "actors_alive", "weights_version", "transitions", "demo_transitions",
                                                   "intervention_transitions")}
            self.status_at = self.last_reply
        if msg.type == "welcome":
            self.connected = True
            sent = self._last_sent
            if sent is not None and self.weights_acked < sent[0]:  # lost with the old connection
                with self._lock:
                    if self._weights_out is None:
                        self._weights_out = sent
            log.info("learner: connected to replay server %s (%s transitions stored)", h.get("epoch"), h.get("transitions"))
        elif msg.type == "batch":
            outstanding.discard(h.get("req"))
            self.waiting_reason = None
            self._batches.put(msg.arrays)
        elif msg.type == "wait":
            outstanding.discard(h.get("req"))
            if self.waiting_reason != h.get("reason"):
                self.waiting_reason = h.get("reason")
            time.sleep(0.05)  # the server has too little data yet; ask again shortly
        elif msg.type == "ack" and "version" in h:
            self.weights_acked = max(self.weights_acked, int(h["version"]))
        elif msg.type == "error":
            if reconnect_on(h, "learner", self.cfg):
                return "reconnect"
            if h.get("code") == "busy":  # too many requests in flight: ask again when a batch arrives
                outstanding.discard(h.get("req"))
                time.sleep(0.01)
                return None
            self.fatal = refusal(h)
            log.error("learner: %s", self.fatal)
        return None
