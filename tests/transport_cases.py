"""Shared pieces for the transport tests: a small observation space, free loopback ports, a server thread."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager

import numpy as np
from gymnasium import spaces

from robolearn.replay.config import ServerConfig
from robolearn.transport.server import ReplayServer
from robolearn.transport.config import TransportConfig

SPACE = spaces.Dict({
    "cam": spaces.Box(0, 255, (12, 12, 3), np.uint8),
    "joint_pos": spaces.Box(-np.inf, np.inf, (7,), np.float32),
})
ACTION = (8,)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def transport(**overrides) -> TransportConfig:
    """Loopback on two fresh ports, with short timeouts so tests finish quickly; without keys unless given."""
    values = dict(port=free_port(), weights_port=free_port(), heartbeat_s=0.1, peer_timeout_s=1.0, chunk_steps=4)
    values.update(overrides)
    values.setdefault("insecure_no_keys", not values.get("curve_keys"))
    return TransportConfig(**values)


def observation(i: int) -> dict[str, np.ndarray]:
    """Observation number i: the image and joints encode i, so stored data can be traced back."""
    return {"cam": np.full((12, 12, 3), i % 256, np.uint8), "joint_pos": np.full(7, float(i), np.float32)}


def action(i: int) -> np.ndarray:
    return np.full(ACTION, (i % 100) / 100.0, np.float32)


def stream_episodes(client, episodes: int, length: int, first_id: int = 0, version: int = 0) -> int:
    """Send episodes whose observation ids (and rewards) count up from first_id; returns the next id."""
    i = first_id
    for _ in range(episodes):
        client.start_episode(observation(i))
        for t in range(length):
            i += 1
            client.add(action(i), float(i), False, t == length - 1, observation(i), version)
        i += 1
    return i



@contextmanager
def running_server(directory, cfg: TransportConfig, server_cfg: ServerConfig | None = None, space=SPACE, action_shape=ACTION, demos=None):
    server = ReplayServer(directory, space, action_shape, cfg, server_cfg or ServerConfig(capacity=10_000), demos)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=5)
        server.close()
