"""`transport` benchmark: actor -> replay server over tcp loopback, learner batches, weight broadcast.

The payload is the default kettle-to-sink observation (two 84x84 RGB cameras + proprioception). The
replay server runs in its own process, as in training; the actor client streams from this process.
`transitions_per_s` is measured once the server's buffer has been filled (a long-running server's normal
state: its memory pages are touched); the first fill is reported apart (`first_fill_transitions_per_s`):
on this VM every first write to a fresh 4 kB page costs ~9 us, which dominates that phase.
Baseline, same run, same payload: raw pyzmq PUSH/PULL of the same chunk frames to a process that
only receives them (no acknowledgements, no validation, no log, no storage): the ceiling.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
import multiprocessing as mp
import shutil
import statistics
import tempfile
import time

import numpy as np

from robolearn.process.allocator import keep_freed_memory
from robolearn.spec import EnvSpec
from robolearn.transport.protocol import wire_bytes

CHUNK = 16
# The durable floor's receiver is slower than its sender: with ZeroMQ's default queues (1000 messages each
# side) ~1.4 GB of chunks would pile up in fresh buffers. Our actor keeps at most ~100 chunks unacknowledged.
FLOOR_HWM = 32


def _contract():
    spec = EnvSpec.from_config({})
    return spec.observation_space(), (spec.action_dim,)


def _observations(space, n: int = 32) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{k: rng.integers(0, 256, s.shape, dtype=np.uint8) if s.dtype == np.uint8 else rng.normal(size=s.shape).astype(np.float32)
             for k, s in space.spaces.items()} for _ in range(n)]


# -- processes -------------------------------------------------------------------------------------------
def _serve(directory: str, cfg, capacity: int, ready, keep_freed: bool) -> None:
    from robolearn.replay.config import ServerConfig
    from robolearn.transport.server import ReplayServer

    space, action_shape = _contract()
    server = ReplayServer(directory, space, action_shape, cfg, ServerConfig(capacity=capacity))
    if keep_freed:
        keep_freed_memory()  # after the replay is allocated, as python -m robolearn.roles.replay_server does
    ready.set()
    import signal
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        server.serve()
    finally:
        server.close()


def _pull(port: int, messages: int, ready, done, keep_freed: bool, durable_dir: str | None = None, message_bytes: int = 0) -> None:
    """Receive `messages` multipart messages. With `durable_dir`, also do the one copy a durable replay server
    cannot avoid, and nothing else: each message's frames go into a ring of slots in a file mapped into memory
    (as the server's store is). No decoding, checking, acknowledging or Python bookkeeping beyond that."""
    import zmq

    if keep_freed:
        keep_freed_memory()
    sock = zmq.Context.instance().socket(zmq.PULL)
    durable = durable_dir is not None
    if durable:
        sock.rcvhwm = FLOOR_HWM
        slots = 64
        ring = np.lib.format.open_memmap(f"{durable_dir}/floor.npy", mode="w+", dtype=np.uint8, shape=(slots, message_bytes))
        ring[:] = 1  # touched before timing starts, as a long-running server's store is
    sock.bind(f"tcp://127.0.0.1:{port}")
    ready.set()
    for i in range(messages):
        frames = sock.recv_multipart(copy=False)
        if not durable:
            continue
        row, at = ring[i % slots], 0
        for f in frames:
            b = f.buffer
            row[at:at + b.nbytes] = np.frombuffer(b, np.uint8)
            at += b.nbytes
    done.set()
    sock.close(0)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- measurements ----------------------------------------------------------------------------------------
def measure_ceiling(chunk_frames: list, chunks: int, keep_freed: bool, durable_dir: str | None = None) -> float:
    """Transitions/s of raw PUSH/PULL with the same multipart frames (with `durable_dir`: plus the receiver's
    unavoidable copy into a mapped file, see `_pull`)."""
    import zmq

    ctx = mp.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    port = _free_port()
    proc = ctx.Process(target=_pull, args=(port, chunks, ready, done, keep_freed, durable_dir, wire_bytes(chunk_frames)), daemon=True)
    proc.start()
    ready.wait(30)
    sock = zmq.Context.instance().socket(zmq.PUSH)
    if durable_dir is not None:
        sock.sndhwm = FLOOR_HWM
    sock.connect(f"tcp://127.0.0.1:{port}")
    start = time.perf_counter()
    for _ in range(chunks):
        sock.send_multipart(chunk_frames, copy=False)
    done.wait(120)
    elapsed = time.perf_counter() - start
    sock.close(0)
    proc.join(10)
    return chunks * CHUNK / elapsed


def _stream(actor, pool, action, transitions: int, backlog_chunks: int) -> float:
    """Episodes of 100 steps handed over as fast as the link takes them; transitions/s until all are acknowledged.

    The producer waits while more than `backlog_chunks` chunks are unacknowledged, as the ceiling's PUSH socket
    blocks at its high-water mark: a producer outrunning the link would measure the outbox's spill-to-disk
    path instead (tested in tests/test_transport_server.py), which a real control loop at 10-100 Hz never takes.
    """
    start = time.perf_counter()
    sent = 0
    while sent < transitions:
        actor.start_episode(pool[0])
        for t in range(min(100, transitions - sent)):
            sent += 1
            actor.add(action, 0.0, False, t == 99, pool[sent % len(pool)], 0)
            if sent % CHUNK == 0:  # look at the backlog once per chunk's worth of steps
                actor.wait_for_backlog(backlog_chunks, timeout_s=30)
    actor.flush()
    actor.wait_for_backlog(0, timeout_s=60)
    return sent / (time.perf_counter() - start)


def run(quick: bool = False, argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m robolearn.bench transport")
    parser.add_argument("--transitions", type=int, default=8_000 if quick else 40_000)
    parser.add_argument("--capacity", type=int, default=4_096, help="server replay capacity (filled before timing)")
    parser.add_argument("--batches", type=int, default=20 if quick else 100)
    parser.add_argument("--broadcasts", type=int, default=10 if quick else 30)
    parser.add_argument("--insecure-no-keys", action="store_true",
                        help="run the roles without CURVE (default: with per-run keys, as every run is by default)")
    parser.add_argument("--allocator", choices=("keep-freed", "default"), default="keep-freed",
                        help="glibc settings in every process of the run, the ceiling's included (robolearn/process/allocator.py): "
                             "keep-freed, as the replay server and learner run; or glibc's defaults")
    args = parser.parse_args(argv or [])
    keep_freed = args.allocator == "keep-freed"
    if keep_freed:
        keep_freed_memory()  # this process: the actor, and the ceiling's sender

    from robolearn.agents.weights import acting_weights
    from robolearn.agents import AgentConfig, DrQAgent
    from robolearn.transport.actor_client import ActorClient
    from robolearn.transport.chunks import ChunkBuilder
    from robolearn.transport.config import TransportConfig
    from robolearn.transport.learner_client import LearnerClient
    from robolearn.transport.protocol import encode
    from robolearn.transport.security import generate_keys

    space, action_shape = _contract()
    pool = _observations(space)
    obs_bytes = sum(v.nbytes for v in pool[0].values())
    chunks = max(args.transitions // CHUNK, 10)
    action = np.zeros(action_shape, np.float32)

    # The ceiling: the frames of one real 16-transition chunk (including its episode start), sent raw.
    builder = ChunkBuilder(space, action_shape)
    builder.start(pool[0])
    for t in range(CHUNK):
        builder.step(action, 0.0, False, False, pool[(t + 1) % len(pool)], 0)
    frames = encode("chunk", {"name": "bench", "seq": 0, "demo": False}, builder.take())
    print(f"ceiling: raw PUSH/PULL of {chunks} chunks of {CHUNK} transitions ...", flush=True)
    ceiling = measure_ceiling(frames, chunks, keep_freed)
    print("floor of a durable server: the same, plus one copy per chunk into a mapped file ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="robolearn-bench-floor-") as floor_dir:
        durable_ceiling = measure_ceiling(frames, chunks, keep_freed, floor_dir)

    # The replay server in its own process.
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    directory = tempfile.mkdtemp(prefix="robolearn-bench-transport-")
    keys = None if args.insecure_no_keys else str(generate_keys(Path(directory) / "keys", ["actor", "learner"]))
    cfg = TransportConfig(port=_free_port(), weights_port=_free_port(), chunk_steps=CHUNK, max_in_flight=32, curve_keys=keys,
                          insecure_no_keys=args.insecure_no_keys, spill_dir=str(Path(directory) / "spill"))
    server = ctx.Process(target=_serve, args=(str(Path(directory) / "replay"), cfg, args.capacity, ready, keep_freed), daemon=True)
    server.start()
    try:
        ready.wait(60)
        actor = ActorClient(cfg, space, action_shape, name="bench")
        while not actor.connected:
            time.sleep(0.01)
        print(f"actor -> replay server: first fill of {args.capacity} transitions ...", flush=True)
        first_fill = _stream(actor, pool, action, args.capacity, 2 * cfg.max_in_flight)
        print(f"actor -> replay server: {chunks * CHUNK} transitions ...", flush=True)
        transitions_per_s = _stream(actor, pool, action, chunks * CHUNK, 2 * cfg.max_in_flight)
        spilled = actor.outbox.spilled_total
        sent = chunks * CHUNK
        wire_per_transition = actor.stats["wire_bytes"] / actor.stats["transitions"]

        print(f"learner: {args.batches} batches of 256 (3 frames, 3-step) ...", flush=True)
        learner = LearnerClient(replace(cfg, client_key="learner"), space, action_shape, batch_size=256, n_step=3, gamma=0.99, frame_stack=3, min_transitions=1)
        learner.next_batch(timeout_s=30)  # connected and warm
        start = time.perf_counter()
        for _ in range(args.batches):
            learner.next_batch(timeout_s=30)
        batches_per_s = args.batches / (time.perf_counter() - start)

        print(f"weights: {args.broadcasts} broadcasts of the DrQ acting networks ...", flush=True)
        agent = DrQAgent(space, __import__("gymnasium").spaces.Box(-1, 1, action_shape, np.float32), AgentConfig())
        weights = acting_weights(agent)
        weight_bytes = sum(a.nbytes for a in weights.values())
        latencies = []
        for version in range(1, args.broadcasts + 1):
            t0 = time.perf_counter()
            learner.publish_weights(version, weights)
            while True:
                got = actor.take_weights()
                if got is not None and got[0] == version:
                    break
                time.sleep(0.0005)
            latencies.append(1000 * (time.perf_counter() - t0))
            actor.applied(version)
        # Applying weights happens on the actor's control thread, between two steps.
        from robolearn.agents.weights import load_acting_weights
        actor_agent = DrQAgent(space, __import__("gymnasium").spaces.Box(-1, 1, action_shape, np.float32), AgentConfig())
        _, received = actor.take_weights() or (None, weights)
        applies = []
        for _ in range(5):
            t0 = time.perf_counter()
            load_acting_weights(actor_agent, received)
            applies.append(1000 * (time.perf_counter() - t0))
        learner.close()
        actor.close(timeout_s=5)
    finally:
        server.terminate()
        server.join(10)
        shutil.rmtree(directory, ignore_errors=True)  # the server's store: the capacity's worth of files
    return {
        "benchmark": "transport",
        "transitions": sent,
        "transitions_per_s": round(transitions_per_s, 1),
        "first_fill_transitions_per_s": round(first_fill, 1),
        "ceiling_transitions_per_s": round(ceiling, 1),
        "ratio": round(transitions_per_s / ceiling, 3),
        "durable_ceiling_transitions_per_s": round(durable_ceiling, 1),
        "durable_ratio": round(transitions_per_s / durable_ceiling, 3),
        "wire_bytes_per_transition": round(wire_per_transition, 1),
        "obs_bytes": obs_bytes,
        "wire_ratio": round(wire_per_transition / obs_bytes, 4),
        "learner_batches_per_s": round(batches_per_s, 2),
        "weight_bytes": weight_bytes,
        "weight_broadcast_ms": round(statistics.median(latencies), 2),
        "weight_broadcast_ms_max": round(max(latencies), 2),
        "weight_apply_ms": round(statistics.median(applies), 2),
        "chunk_transitions": CHUNK,
        "allocator": args.allocator,
        "curve": not args.insecure_no_keys,
        "spilled_chunks": spilled,
        "ceiling_wire_bytes_per_transition": round(wire_bytes(frames) / CHUNK, 1),
    }
