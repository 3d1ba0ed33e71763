"""The client side's socket handling, shared by actors and learners."""

from __future__ import annotations

import zmq

from robolearn.transport.config import TransportConfig, endpoint
from robolearn.transport.protocol import encode
from robolearn.transport.security import apply_client_keys


def connect_dealer(context: zmq.Context, cfg: TransportConfig, role: str, name: str, spec: dict) -> zmq.Socket:
    """A fresh DEALER to the server's ROUTER (a new connection: nothing queued for an old one survives),
    which says hello first, as every peer must after each (re)connect."""
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
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
