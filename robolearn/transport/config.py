"""Transport settings shared by the replay server, actors and learners (configs/transport/*.yaml)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from robolearn.config import ConfigError, check, load_typed, register_schema


@dataclass
class TransportConfig:
    host: str = "127.0.0.1"  # the server binds here; clients connect here. Loopback unless a remote run asks otherwise
    port: int = 5555  # ROUTER: every request/reply (0 on the server: any free port)
    weights_port: int = 5556  # XPUB: weights to actors (broadcast, and re-sent to each subscriber that joins)
    curve_keys: Optional[str] = None  # a directory from `python -m robolearn.transport.keys`: required unless insecure_no_keys
    client_key: str = "actor"  # which keypair in curve_keys this client uses
    # Run without CURVE: any local process (any user's, on a shared learner box) can then connect as an actor or
    # as the learner, store data and publish weights that move an arm. Loopback only; for tests and single-user machines.
    insecure_no_keys: bool = False
    heartbeat_s: float = 0.5
    peer_timeout_s: float = 3.0  # silence after which a peer counts as lost
    chunk_steps: int = 16  # steps per chunk an actor sends
    chunk_max_age_s: float = 0.5  # a chunk goes out after this long even if not full (slow real-robot loops)
    max_in_flight: int = 32  # unacknowledged chunks on the wire
    outbox_mb: float = 256.0  # memory for unsent chunks; beyond it they spill to disk
    spill_dir: Optional[str] = None  # default: <run_dir>/spill/<actor name> for python -m robolearn.roles.actor (a temporary directory for bare clients)
    compression: str = "none"  # none | jpeg | png: image codec on the wire (slow links)
    jpeg_quality: int = 90
    prefetch: int = 2  # learner: sample requests kept in flight

    def __post_init__(self) -> None:
        check(self.compression in ("none", "jpeg", "png"), "transport.compression", self.compression, "none, jpeg or png")
        for key in ("heartbeat_s", "peer_timeout_s", "chunk_max_age_s", "outbox_mb"):
            check(getattr(self, key) > 0, f"transport.{key}", getattr(self, key), "must be positive")
        check(self.peer_timeout_s > 2 * self.heartbeat_s, "transport.peer_timeout_s", self.peer_timeout_s,
              f"must exceed two heartbeats, {2 * self.heartbeat_s} s")
        for key in ("chunk_steps", "max_in_flight", "prefetch"):
            check(getattr(self, key) >= 1, f"transport.{key}", getattr(self, key), "must be at least 1")
        check(_is_loopback(self.host) or bool(self.curve_keys), "transport.host", self.host,
              "not loopback; remote runs need transport.curve_keys (generate them with `python -m robolearn.transport.keys DIR`)")

    def require_keys(self, who: str) -> None:
        """Every role authenticates by default: a role started without keys fails here, naming the fix."""
        if not self.curve_keys and not self.insecure_no_keys:
            raise ConfigError(
                f"{who}: transport.curve_keys is not set, and every role authenticates by default (on a shared machine "
                "loopback is no boundary: another user's process could publish weights that move an arm). Make keys with "
                "`python -m robolearn.transport.keys KEYS_DIR` and pass transport.curve_keys=KEYS_DIR (clients also "
                "transport.client_key=<their key>); `python -m robolearn.roles.launch` makes per-run keys itself. "
                "transport.insecure_no_keys=true runs without them (docs/remote.md says what a local peer can then do).")


# configs/transport/*.yaml start from it and hold only what differs.
register_schema("transport_schema", TransportConfig, group="transport")


def load_transport_config(node) -> TransportConfig:
    """The `transport` node as a checked TransportConfig (ConfigError naming a wrong key or value)."""
    return load_typed(TransportConfig, node, "transport")


def _is_loopback(host: str) -> bool:
    """An address that cannot leave this machine, parsed (a name like 127.0.0.1.example.com is not one)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"
