"""What the actor and learner clients share: the DEALER connection, replies read, server errors handled."""

from __future__ import annotations

import logging
import time

import zmq

from robolearn.transport.config import TransportConfig, endpoint
from robolearn.transport.protocol import Message, ProtocolError, decode, encode
from robolearn.transport.security import apply_client_keys

log = logging.getLogger(__name__)


class TransportFatal(RuntimeError):
    """The server refused this peer for good (schema or spec mismatch, rejected data)."""


def connect_dealer(context: zmq.Context, cfg: TransportConfig, role: str, name: str, spec: dict) -> zmq.Socket:
    """A fresh DEALER to the server's ROUTER (a new connection: nothing queued for an old one survives),
    which says hello first, as every peer must after each (re)connect."""
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    # Sends never block (zmq.Again instead): a connection whose handshake the server refused (a revoked or
    # unknown key) leaves the DEALER with nowhere to send, and a blocking send would hang the client for good.
    dealer.sndtimeo = 0
    dealer.sndhwm = 0  # no queue limit, so zmq.Again means no connection, never backpressure: the
    # callers bound what they queue (an actor's max_in_flight chunks, a learner's prefetch requests)
    if cfg.curve_keys:
        apply_client_keys(dealer, cfg.curve_keys, cfg.client_key)
    dealer.connect(endpoint(cfg.host, cfg.port))
    dealer.send_multipart(encode("hello", {"role": role, "name": name, "spec": spec}))
    return dealer


def close_dealer(dealer: zmq.Socket | None, name: str) -> None:
    """Say goodbye if the server can still hear it (so it does not wait for a timeout), then close."""
    if dealer is None:
        return
    try:
        dealer.send_multipart(encode("bye", {"name": name}), zmq.NOBLOCK)
    except zmq.ZMQError:
        pass
    dealer.close(linger=200)


def read_reply(frames, who: str) -> Message | None:
    """A reply from the server, or None (logged) if it cannot be read."""
    try:
        return decode(frames)
    except ProtocolError as exc:
        log.error("%s: unreadable reply from the server: %s", who, exc)
        return None


def reconnect_on(header: dict, who: str, cfg: TransportConfig) -> bool:
    """Whether an `error` reply only asks for a new connection: the server restarted (`hello_first`: say
    hello again and resend), or our name is held by a connection not yet timed out (`name_in_use`: our own
    before a restart, or another peer using our name; retried after a heartbeat)."""
    if header.get("code") == "hello_first":
        return True
    if header.get("code") == "name_in_use":
        log.warning("%s: %s; retrying", who, header.get("message"))
        time.sleep(cfg.heartbeat_s)
        return True
    return False


def refusal(header: dict) -> str:
    """What a refusal says, for TransportFatal: the server's message and what it answered."""
    return f"{header.get('message')} (in reply to {header.get('ref_type') or 'a message'})"
