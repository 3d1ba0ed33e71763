"""The replay server tried as an attacker and as a faulty peer would: messages that used to stop it,
peers that borrow names, forged weights, peers that never read, and a seeded fuzz run against a server
in its own process. Loopback only; every case is bounded."""

from __future__ import annotations

import multiprocessing
import time

import msgpack
import numpy as np
import pytest
import zmq

from robolearn.transport.chunks import ChunkBuilder
from robolearn.replay.config import ServerConfig
from robolearn.replay.durable import DurableReplay
from robolearn.spec import spec_signature
from robolearn.transport.actor_client import ActorClient
from robolearn.transport.protocol import SCHEMA_VERSION, decode, encode
from robolearn.transport.security import generate_keys
from tests.test_transport_server import learner, stored_ids
from tests.transport_cases import ACTION, SPACE, action, observation, running_server, stream_episodes, transport
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(90)
SPEC = spec_signature(SPACE, ACTION)


class Peer:
    """A raw DEALER that speaks the protocol by hand (and can say anything)."""

    def __init__(self, cfg, keys=None, client=None):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.linger = 0
        if keys:
            from robolearn.transport.security import apply_client_keys

            apply_client_keys(self.sock, keys, client)
        self.sock.connect(f"tcp://127.0.0.1:{cfg.port}")

    def ask(self, frames, timeout_ms: int = 5000):
        self.sock.send_multipart(frames)
        assert self.sock.poll(timeout_ms), "no reply: the server is not answering"
        return decode(self.sock.recv_multipart())

    def hello(self, role="actor", name="raw"):
        return self.ask(encode("hello", {"role": role, "name": name, "spec": SPEC}))

    def close(self):
        self.sock.close(0)


def one_chunk(name: str, seq: int, first_id: int) -> list:
    builder = ChunkBuilder(SPACE, ACTION)
    builder.start(observation(first_id))
    builder.step(action(first_id + 1), float(first_id + 1), False, True, observation(first_id + 1), 0)
    return encode("chunk", {"name": name, "seq": seq, "demo": False}, builder.take())


def png_declaring(shape, real=(12, 12)) -> list:
    """A png-coded array whose descriptor declares `shape`, carrying one small real image."""
    import cv2

    ok, buf = cv2.imencode(".png", np.zeros((*real, 3), np.uint8))
    blob = buf.tobytes()
    head = {"v": SCHEMA_VERSION, "type": "chunk", "name": "raw", "seq": 0,
            "arrays": [["obs/cam", "uint8", list(shape), "png", [len(blob)]]]}
    return [msgpack.packb(head), blob]


# -- single messages that used to stop the server ------------------------------------------------------
@pytest.mark.parametrize("case", ["nan_batch", "inf_frame_stack", "dtype_list", "codec_map", "huge_png", "png_lies_about_size", "long_name"])
def test_a_single_message_that_used_to_stop_the_server_gets_an_error_and_the_server_serves_on(tmp_path, case):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        peer = Peer(cfg)
        role = "learner" if case in ("nan_batch", "inf_frame_stack") else "actor"
        assert peer.hello(role).type == "welcome"
        frames = {
            "nan_batch": lambda: [msgpack.packb({"v": SCHEMA_VERSION, "type": "sample", "batch_size": float("nan")})],
            "inf_frame_stack": lambda: [msgpack.packb({"v": SCHEMA_VERSION, "type": "sample", "batch_size": 8, "frame_stack": float("inf")})],
            "dtype_list": lambda: [msgpack.packb({"v": SCHEMA_VERSION, "type": "chunk", "arrays": [["kind", ["uint8"], [2], "raw", 2]]}), b"\0\0"],
            "codec_map": lambda: [msgpack.packb({"v": SCHEMA_VERSION, "type": "chunk", "arrays": [["kind", "uint8", [2], {"a": 1}, 2]]}), b"\0\0"],
            "huge_png": lambda: png_declaring([1, 100_000, 100_000, 3]),
            "png_lies_about_size": lambda: png_declaring([1, 4000, 4000, 3]),  # within the limits, but not what the image says
            "long_name": lambda: encode("hello", {"role": "actor", "name": "x" * 450_000, "spec": SPEC}),
        }[case]()
        reply = peer.ask(frames)
        assert reply.type == "error" and reply.header["code"] == "rejected", reply.header
        fragment = {"nan_batch": "'batch_size'", "inf_frame_stack": "'frame_stack'", "dtype_list": "dtype", "codec_map": "codec",
                    "huge_png": "above the limit", "png_lies_about_size": "declares (12, 12)", "long_name": "'name'"}[case]
        assert fragment in reply.header["message"]
        assert server.counters["rejected"] == 1 and server.counters["internal_errors"] == 0
        good = ActorClient(cfg, SPACE, ACTION, name="good")
        stream_episodes(good, 1, 3)
        assert good.close(timeout_s=10) and server.storage.num_transitions() == 3
        assert "x" * 100 not in "".join(server.data.next_seq)
        peer.close()


def test_an_unexpected_failure_in_a_handler_is_answered_and_counted(tmp_path, monkeypatch):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        monkeypatch.setattr(server, "_on_heartbeat", lambda *a: 1 / 0)
        peer = Peer(cfg)
        assert peer.hello().type == "welcome"
        reply = peer.ask(encode("heartbeat", {"name": "raw"}))
        assert reply.header["code"] == "internal" and "ZeroDivisionError" in reply.header["message"]
        assert server.counters["internal_errors"] == 1
        monkeypatch.undo()
        assert peer.ask(encode("heartbeat", {"name": "raw"})).type == "status"
        peer.close()


def test_messages_over_the_size_limit_are_dropped_before_they_are_read(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg, ServerConfig(capacity=1000, max_message_mb=1.0)) as server:
        big = Peer(cfg)
        assert big.hello(name="big").type == "welcome"
        big.sock.send_multipart([msgpack.packb({"v": SCHEMA_VERSION, "type": "heartbeat"}), b"\0" * (2 << 20)])
        assert not big.sock.poll(1000)  # ZeroMQ dropped it (and the connection): no reply, nothing allocated for it
        other = Peer(cfg)
        assert other.hello(name="other").type == "welcome"  # the server serves on
        big.close(), other.close()
        assert server.counters["internal_errors"] == 0


# -- identity -----------------------------------------------------------------------------------------
def test_a_peer_cannot_borrow_a_live_actors_name_and_the_real_actor_loses_nothing(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        real = ActorClient(cfg, SPACE, ACTION, name="arm")
        end = stream_episodes(real, episodes=3, length=10)
        wait_for(lambda: real.pending() == 0, what="acknowledged")
        impostor = Peer(cfg)
        reply = impostor.hello(name="arm")
        assert reply.type == "error" and reply.header["code"] == "name_in_use" and "next_seq" not in reply.header
        stolen = impostor.ask(one_chunk("arm", 99, 10_000))
        assert stolen.header["code"] == "hello_first"  # it never got in
        end = stream_episodes(real, episodes=2, length=10, first_id=end)
        assert real.close(timeout_s=10)
        assert stored_ids(server.storage) == [i for i in range(end) if i % 11]
        impostor.close()


def test_an_actor_that_restarts_gets_its_name_back_once_the_old_connection_is_silent(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        first = Peer(cfg)
        assert first.hello(name="arm").type == "welcome"
        assert first.ask(one_chunk("arm", 0, 0)).type == "ack"
        # The process died without a goodbye: its connection is silent. The restarted actor retries its hello.
        restarted = ActorClient(cfg, SPACE, ACTION, name="arm")
        wait_for(lambda: restarted.connected, timeout_s=cfg.peer_timeout_s + 3, what="reconnected under its own name")
        stream_episodes(restarted, 1, 3, first_id=100)
        assert restarted.close(timeout_s=10)
        assert 101 in stored_ids(server.storage)
        first.close()


def test_only_the_learner_publishes_weights_and_versions_only_go_forward(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        lc = learner(cfg)
        try:
            wait_for(lambda: lc.connected, what="learner connected")
            second = Peer(cfg)
            assert second.hello(role="learner", name="forger").header["code"] == "name_in_use"
            actor_peer = Peer(cfg)
            assert actor_peer.hello(name="a").type == "welcome"
            forged = actor_peer.ask(encode("weights", {"version": 10**6}, {"w": np.zeros(2, np.float32)}))
            assert forged.header["code"] == "not_authorised" and server.weights_version == -1
            lc.publish_weights(5, {"w": np.ones(2, np.float32)})
            wait_for(lambda: server.weights_version == 5, what="weights accepted")
            lc.publish_weights(4, {"w": np.ones(2, np.float32)})
            time.sleep(0.3)
            assert server.weights_version == 5 and server.counters["rejected"] >= 2
            second.close(), actor_peer.close()
        finally:
            lc.close()


def test_an_actor_takes_no_weights_beyond_what_the_server_announced(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        lc, actor = learner(cfg), ActorClient(cfg, SPACE, ACTION, name="a")
        try:
            wait_for(lambda: lc.connected and actor.connected, what="both connected")
            # As if another process had taken over the weights port: a broadcast the server never announced.
            actor._keep_weights(decode(encode("weights", {"version": 10**6}, {"w": np.full(2, -1.0, np.float32)})))
            for _ in range(2):  # status replies go by (each replaces server_status): still not taken
                before = actor.server_status
                wait_for(lambda: actor.server_status is not before, what="a status reply")
            assert actor.take_weights() is None and actor.stats["weights_unannounced"] == 1
            lc.publish_weights(3, {"w": np.ones(2, np.float32)})
            wait_for(lambda: server.weights_version == 3, what="weights accepted")
            stream_episodes(actor, 1, 5)  # chunks get acks and status replies
            got = []
            wait_for(lambda: got.append(actor.take_weights()) or got[-1] is not None, what="announced weights")
            assert got[-1][0] == 3 and np.all(got[-1][1]["w"] == 1.0)
        finally:
            actor.close(timeout_s=10)
            lc.close()


def test_with_curve_each_key_has_one_role_and_its_names(tmp_path):
    keys = generate_keys(tmp_path / "keys", ["arm1", "learner"], names={"arm1": ["arm1", "arm1-*"]})
    cfg = transport(curve_keys=str(keys))
    with running_server(tmp_path / "srv", cfg) as server:
        arm = Peer(cfg, keys, "arm1")
        assert arm.hello(name="arm1-left").type == "welcome"
        as_learner = Peer(cfg, keys, "arm1")
        assert as_learner.hello(role="learner", name="learner").header["code"] == "not_authorised"
        other_name = Peer(cfg, keys, "arm1")
        assert other_name.hello(name="arm2").header["code"] == "not_authorised"
        learner_as_actor = Peer(cfg, keys, "learner")
        assert learner_as_actor.hello(name="arm1").header["code"] == "not_authorised"
        learner_key = Peer(cfg, keys, "learner")
        assert learner_key.hello(role="learner", name="learner").type == "welcome"
        for p in (arm, as_learner, other_name, learner_as_actor, learner_key):
            p.close()
        assert server.counters["rejected_not_authorised"] == 3


def test_the_loopback_check_parses_the_address():
    from robolearn.config import ConfigError
    from robolearn.transport.config import load_transport_config

    for host in ("127.0.0.1", "127.3.2.1", "localhost", "::1"):
        assert load_transport_config({"host": host}).host == host
    for host in ("127.0.0.1.attacker.example", "127.evil.com", "10.0.0.1", "localhost.example"):
        with pytest.raises(ConfigError, match="not loopback"):
            load_transport_config({"host": host})


def test_a_wrong_transport_key_or_value_fails_at_start_up_naming_it():
    from robolearn.config import ConfigError
    from robolearn.transport.config import load_transport_config

    with pytest.raises(ConfigError, match="prot"):
        load_transport_config({"prot": 5555})
    for key, value in (("compression", "gif"), ("heartbeat_s", 0.0), ("peer_timeout_s", 0.9), ("prefetch", 0)):
        with pytest.raises(ConfigError, match=f"transport.{key}"):
            load_transport_config({key: value})


# -- resource bounds ----------------------------------------------------------------------------------
def test_a_learner_that_never_reads_is_held_to_a_few_requests(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg, ServerConfig(capacity=1000, max_pending_per_peer=2, max_queued_replies=4)) as server:
        actor = ActorClient(cfg, SPACE, ACTION, name="a")
        stream_episodes(actor, 2, 10)
        wait_for(lambda: actor.pending() == 0, what="data")
        greedy = Peer(cfg)
        assert greedy.hello(role="learner", name="greedy").type == "welcome"
        request = encode("sample", {"req": 1, "batch_size": 64, "frame_stack": 2})
        for _ in range(2000):
            greedy.sock.send_multipart(request)
        wait_for(lambda: server.counters["rejected_busy"] + server.counters["batches"] >= 2000, what="all requests handled")
        assert server.counters["rejected_busy"] > 0
        assert server.counters["replies_dropped_peer_full"] > 0  # what it does not read is dropped, not queued
        greedy.close()
        assert actor.close(timeout_s=10)


def test_the_names_persisted_with_the_replay_are_bounded(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg, ServerConfig(capacity=1000, max_actor_names=3)) as server:
        for i in range(3):
            p = Peer(cfg)
            assert p.hello(name=f"arm{i}").type == "welcome"
            assert p.ask(one_chunk(f"arm{i}", 0, 10 * i)).type == "ack"
            p.sock.send_multipart(encode("bye", {"name": f"arm{i}"}))
            p.sock.close(linger=2000)  # delivered before the socket goes
        newcomer = Peer(cfg)
        assert newcomer.hello(name="arm3").header["code"] == "too_many_names"
        back = Peer(cfg)
        assert back.hello(name="arm1").type == "welcome"  # a known name is always welcome
        newcomer.close(), back.close()
        assert sorted(server.data.next_seq) == ["arm0", "arm1", "arm2"]


def test_names_of_actors_gone_for_good_are_forgotten(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        for i in range(50):
            p = Peer(cfg)
            assert p.hello(name=f"drive-by-{i}").type == "welcome"
            p.close()
        assert len(server.actor_seen) == 50
        server._forget_peers(time.monotonic() + 100, older_than=10 * cfg.peer_timeout_s)
        assert server.actor_seen == {} and server.peers == {}


# -- fuzz, against a server in its own process ------------------------------------------------------------
def _serve(directory, cfg, seconds):
    from robolearn.transport.server import ReplayServer

    server = ReplayServer(directory, SPACE, ACTION, cfg, ServerConfig(capacity=10_000))
    try:
        server.serve(duration_s=seconds)
    finally:
        server.close()


ODD_VALUES = [None, True, -1, 0, 2**63 - 1, -(2**63), 1.5, float("nan"), float("inf"), "", "x" * 5000, [], [1, [2]], {}, {"a": {"b": 1}}, b"\xff" * 9]


def mutate(frames: list, rng: np.random.Generator) -> list:
    """One generated defect of a valid message: a header field (or an array descriptor's field) replaced by
    a value of another type or range, a field removed, a frame cut, dropped or added."""
    head = msgpack.unpackb(bytes(frames[0]), raw=False)
    buffers = [bytes(f) for f in frames[1:]]
    choice = rng.integers(0, 6)
    if choice <= 1:
        key = list(head)[rng.integers(0, len(head))]
        if choice == 0:
            head[key] = ODD_VALUES[rng.integers(0, len(ODD_VALUES))]
        else:
            del head[key]
    elif choice == 2 and head.get("arrays"):
        entry = head["arrays"][rng.integers(0, len(head["arrays"]))]
        entry[rng.integers(0, 5)] = ODD_VALUES[rng.integers(0, len(ODD_VALUES))]
    elif choice == 3 and buffers:
        i = rng.integers(0, len(buffers))
        buffers[i] = buffers[i][: rng.integers(0, max(len(buffers[i]), 1))]
    elif choice == 4:
        buffers = buffers[:-1] if buffers else [rng.bytes(8)]
    else:
        buffers.append(rng.bytes(int(rng.integers(0, 32))))
    return [msgpack.packb(head, use_bin_type=True), *buffers]


def test_fuzz_thousands_of_generated_malformed_messages_against_a_server_process(tmp_path):
    cfg = transport()
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_serve, args=(tmp_path, cfg, 60.0), daemon=True)
    proc.start()
    try:
        good = ActorClient(cfg, SPACE, ACTION, name="good")
        end = stream_episodes(good, 2, 10)
        wait_for(lambda: good.pending() == 0, timeout_s=30, what="server up and first data acknowledged")
        rng = np.random.default_rng(1234)
        templates = [encode("hello", {"role": "actor", "name": "fuzz", "spec": SPEC}), one_chunk("fuzz", 0, 5000),
                     encode("heartbeat", {"name": "fuzz", "state": "acting"}),
                     encode("sample", {"req": 1, "batch_size": 8, "n_step": 1, "frame_stack": 2, "gamma": 0.9}),
                     encode("weights", {"version": 1}, {"w": np.zeros(3, np.float32)}), encode("bye", {"name": "fuzz"})]
        attackers = [Peer(cfg), Peer(cfg)]
        assert attackers[0].hello(name="fuzz").type == "welcome"  # one attacker is a known actor, the other never says hello
        sent = answered = 0
        for i in range(3000):
            peer = attackers[i % 2]
            peer.sock.send_multipart(mutate(templates[rng.integers(0, len(templates))], rng))
            sent += 1
            while peer.sock.poll(0):
                peer.sock.recv_multipart()
                answered += 1
            if i % 500 == 0:  # the good actor streams on all along
                end = stream_episodes(good, 1, 10, first_id=end)
        for peer in attackers:
            while peer.sock.poll(300):
                peer.sock.recv_multipart()
                answered += 1
        assert answered > sent // 2  # most malformed messages are answered (a 'bye' or an ack is answered by nothing)
        end = stream_episodes(good, 1, 10, first_id=end)
        assert good.close(timeout_s=20), "the server stopped acknowledging"
        assert proc.is_alive()
        for p in attackers:
            p.close()
    finally:
        proc.terminate()
        proc.join(10)
    data = DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=10_000))
    try:
        ids = [i for i in stored_ids(data.storage) if i < 5000]
        assert ids == [i for i in range(end) if i % 11], "every acknowledged transition of the good actor, exactly once"
    finally:
        data.close()


# -- stopping: nothing produced is lost -------------------------------------------------------------------
def _acknowledged_actor(cfg):
    """Actor "arm" after two episodes, every chunk acknowledged; with the next observation id."""
    actor = ActorClient(cfg, SPACE, ACTION, name="arm")
    end = stream_episodes(actor, 2, 10)
    wait_for(lambda: actor.pending() == 0, what="acknowledged")
    return actor, end


def _the_next_actor_completes_the_replay(cfg, server, restored: int, first_id: int) -> None:
    """A new actor "arm" restores `restored` chunks and sends one more episode: every id is stored once."""
    second = ActorClient(cfg, SPACE, ACTION, name="arm")
    assert second.restored == restored
    end = stream_episodes(second, 1, 10, first_id=first_id)
    assert second.close(timeout_s=10)
    assert stored_ids(server.storage) == [i for i in range(end) if i % 11]  # all of it, nothing twice


def test_what_an_actor_leaves_unacknowledged_is_sent_first_by_the_next_one(tmp_path):
    cfg = transport(spill_dir=str(tmp_path / "spill"))
    with running_server(tmp_path / "srv", cfg):
        first, end = _acknowledged_actor(cfg)
    # The server stopped first (as under a group SIGTERM); the actor goes on producing, then closes.
    end = stream_episodes(first, 2, 10, first_id=end)
    assert not first.close(timeout_s=0.5)
    kept = sorted(p.name for p in (tmp_path / "spill" / "unacknowledged").iterdir())
    assert kept and all(name.endswith(".chunk") for name in kept)
    with running_server(tmp_path / "srv", cfg) as server:  # the same replay directory, restarted
        _the_next_actor_completes_the_replay(cfg, server, len(kept), end)
    assert not any((tmp_path / "spill" / "unacknowledged").iterdir())


def test_chunks_left_by_a_run_against_another_replay_are_refused_by_the_actor_not_resent_for_ever(tmp_path):
    cfg = transport(spill_dir=str(tmp_path / "spill"))
    with running_server(tmp_path / "first", cfg):
        first, end = _acknowledged_actor(cfg)
    stream_episodes(first, 2, 10, first_id=end)
    assert not first.close(timeout_s=0.5)  # numbered chunks kept: the first replay's numbers
    kept = sorted(p.name for p in (tmp_path / "spill" / "unacknowledged").iterdir())
    with running_server(tmp_path / "other", cfg) as server:  # another replay: it expects chunk 0
        second = ActorClient(cfg, SPACE, ACTION, name="arm")
        wait_for(lambda: second.fatal is not None, what="the actor names the gap")
        assert "expects chunk 0 next" in second.fatal and "another replay" in second.fatal
        assert second.stats["resent"] == 0 and server.storage.num_transitions() == 0
        second.close(timeout_s=0.5)
    assert sorted(p.name for p in (tmp_path / "spill" / "unacknowledged").iterdir()) == kept  # nothing deleted


def test_a_chunk_stored_but_never_acknowledged_is_not_stored_twice_by_the_next_actor(tmp_path):
    cfg = transport(spill_dir=str(tmp_path / "spill"))
    with running_server(tmp_path / "srv", cfg) as server:
        first, end = _acknowledged_actor(cfg)
        first._stop.set()
        first._thread.join()
        # The server stored its last two chunks, but their acknowledgement never arrived before it closed.
        last = first._seq - 1
        for local in (last - 1, last):
            first._in_flight[local] = one_chunk("arm", local + first._seq_offset, 90_000 + 10 * local)
        first.acked_through = last - 2
        assert first._keep_unacknowledged() == 2
        _the_next_actor_completes_the_replay(cfg, server, 2, end)  # nothing of the restored copies twice
    assert not any((tmp_path / "spill" / "unacknowledged").iterdir())


def test_the_server_drains_on_stop_until_its_actors_said_goodbye(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        actor = ActorClient(cfg, SPACE, ACTION, name="late")
        stream_episodes(actor, 1, 5)
        wait_for(lambda: actor.pending() == 0, what="connected")
        server.stop(drain_s=30.0)  # SIGTERM: it goes on serving while the actor finishes
        end = stream_episodes(actor, 3, 10, first_id=100)
        assert actor.close(timeout_s=10)
        wait_for(lambda: server._drained(), timeout_s=5, what="drained once the actor said goodbye")
        assert max(stored_ids(server.storage)) == end - 1
