"""The replay server's settings (the `server` node of configs/async_*.yaml): storage, sampling and the limits on peers.

Built with robolearn.config.load_typed at start-up: an unknown key, a wrong type or a value out of range
fails there, naming `server.<key>`."""

from __future__ import annotations

from dataclasses import dataclass

from robolearn.config import check


@dataclass
class ServerConfig:
    capacity: int = 200_000
    fsync: bool = False  # True: survive power loss too (msync + fsync per chunk); kill -9 is survived either way
    demo_capacity: int = 20_000
    demo_ratio: float = 0.5  # share of each batch drawn from demos, when there are any
    sampler_threads: int = 2  # threads gathering batches beside ingestion (0: in the server's loop)
    seed: int = 0
    # Limits on what peers may ask of the server (docs/remote.md, "Limits"):
    max_message_mb: float = 64.0  # larger messages are dropped by ZeroMQ before they are read (and the peer disconnected)
    max_batch_mb: float = 512.0  # sample requests whose batch would be larger are refused
    max_name_bytes: int = 64  # actor and learner names, in UTF-8 bytes (what the persisted state holds)
    max_actors: int = 64  # live actor names at once
    max_actor_names: int = 2000  # names ever stored under (persisted with their sequence numbers; the state slots are sized for this many names of max_name_bytes)
    max_peers: int = 1024  # connections remembered (stale ones are forgotten first)
    max_pending_per_peer: int = 4  # sample requests being gathered for one peer; more are refused
    max_queued_replies: int = 64  # replies ZeroMQ holds for a peer that does not read; beyond, they are dropped
    peer_log_per_min: int = 30  # log lines about peers (connections, refusals); the rest are counted
    drain_s: float = 10.0  # on SIGTERM: serve this long at most while actors (stopped by the same signal) flush
    demos: str | None = None  # a demo file (ReplayStorage.save) loaded at start when present

    def __post_init__(self) -> None:
        for key in ("capacity", "demo_capacity"):
            check(getattr(self, key) >= 2, f"server.{key}", getattr(self, key), "a replay store holds at least 2 rows")
        check(0.0 <= self.demo_ratio <= 1.0, "server.demo_ratio", self.demo_ratio, "a share of each batch, in [0, 1]")
        check(self.sampler_threads >= 0, "server.sampler_threads", self.sampler_threads, "0 gathers in the server's loop")
        for key in ("max_message_mb", "max_batch_mb"):
            check(getattr(self, key) > 0, f"server.{key}", getattr(self, key), "must be positive")
        for key in ("max_name_bytes", "max_actors", "max_actor_names", "max_peers", "max_pending_per_peer", "max_queued_replies",
                    "peer_log_per_min"):
            check(getattr(self, key) >= 1, f"server.{key}", getattr(self, key), "must be at least 1")
        check(self.drain_s >= 0, "server.drain_s", self.drain_s, "seconds, 0 or more")
