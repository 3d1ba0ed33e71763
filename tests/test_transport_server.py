"""Replay server with in-process clients on loopback: streaming, dedup, malformed input, CURVE, spilling, recovery."""

import os

import msgpack
import numpy as np
import pytest
import zmq

from robolearn.transport.chunks import ChunkBuilder
from robolearn.replay.config import ServerConfig
from robolearn.replay.durable import DurableReplay
from robolearn.spec import spec_signature
from robolearn.transport.actor_client import ActorClient
from robolearn.transport.learner_client import LearnerClient
from robolearn.transport.protocol import SCHEMA_VERSION, decode, encode
from robolearn.transport.security import generate_keys
from tests.transport_cases import ACTION, SPACE, action, observation, running_server, stream_episodes, transport
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def stored_ids(store) -> list[int]:
    """Rewards of all stored transitions (the tests use reward = id of the next observation)."""
    rows = np.arange(store.oldest, store.total)
    slots = rows % store.capacity
    has_next = store.next[slots] >= 0
    return sorted(store.reward[slots][has_next].astype(int).tolist())


def learner(cfg, **kw) -> LearnerClient:
    return LearnerClient(cfg, SPACE, ACTION, batch_size=kw.get("batch_size", 8), n_step=1, gamma=0.9, frame_stack=2, min_transitions=kw.get("min_transitions", 1))


def test_actor_stream_is_stored_once_and_sampled_by_the_learner(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        actor = ActorClient(cfg, SPACE, ACTION, name="a0")
        end = stream_episodes(actor, episodes=3, length=10, version=5)
        assert actor.close(timeout_s=10)
        assert stored_ids(server.storage) == [i for i in range(end) if i % 11]  # every transition, no duplicates
        assert set(server.storage.policy_version[:server.storage.total][server.storage.next[:server.storage.total] >= 0]) == {5}
        lc = learner(cfg)
        try:
            batch = lc.next_batch(timeout_s=10)
        finally:
            lc.close()
        assert batch.obs["cam"].shape == (8, 2, 12, 12, 3) and batch.action.shape == (8, *ACTION)
        # n_step=1: the next observation's id is the reward (the actor's convention).
        np.testing.assert_array_equal(batch.next_obs["joint_pos"][:, 0], batch.reward)


def test_weights_reach_running_and_late_actors(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        early = ActorClient(cfg, SPACE, ACTION, name="early")
        wait_for(lambda: early.connected, what="actor connected")
        lc = learner(cfg)
        try:
            wait_for(lambda: lc.connected, what="learner connected")
            lc.publish_weights(3, {"w": np.arange(4, dtype=np.float32)})
            got = []
            wait_for(lambda: got.append(early.take_weights()) or got[-1] is not None, what="broadcast weights")
            assert got[-1][0] == 3 and got[-1][1]["w"].tolist() == [0, 1, 2, 3]
            late = ActorClient(cfg, SPACE, ACTION, name="late")  # joins after the broadcast: gets them when its subscription arrives
            wait_for(lambda: got.append(late.take_weights()) or got[-1] is not None, what="weights on subscribing")
            assert got[-1][0] == 3
            assert server.counters["weights_to_joiners"] >= 1  # the one route: the weights socket, not the ROUTER
            wait_for(lambda: early.link_problem() is None, what="actor sees the learner")
            late.close(1)
        finally:
            lc.close()
            early.close(1)


def test_duplicate_and_out_of_order_chunks(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{cfg.port}")

        def ask(frames):
            sock.send_multipart(frames)
            assert sock.poll(5000), "no reply"
            return decode(sock.recv_multipart())

        assert ask(encode("hello", {"role": "actor", "name": "raw", "spec": spec_signature(SPACE, ACTION)})).type == "welcome"
        builder = ChunkBuilder(SPACE, ACTION)
        builder.start(observation(0))
        builder.step(action(1), 1.0, False, False, observation(1), 0)
        chunk0 = builder.take()
        builder.step(action(2), 2.0, False, True, observation(2), 0)
        chunk1 = builder.take()
        assert ask(encode("chunk", {"name": "raw", "seq": 1, "demo": False}, chunk1)).header == {"type": "resend", "v": SCHEMA_VERSION, "seq": 0}
        assert ask(encode("chunk", {"name": "raw", "seq": 0, "demo": False}, chunk0)).type == "ack"
        again = ask(encode("chunk", {"name": "raw", "seq": 0, "demo": False}, chunk0))
        assert again.type == "ack" and again.header["duplicate"]
        assert ask(encode("chunk", {"name": "raw", "seq": 1, "demo": False}, chunk1)).type == "ack"
        assert stored_ids(server.storage) == [1, 2]
        sock.close()


def _malformed(i: int, rng: np.random.Generator, valid: list) -> list:
    kind = i % 8
    if kind == 0:
        return [rng.bytes(int(rng.integers(0, 64)))]
    if kind == 1:  # a valid chunk cut short
        return [valid[0], valid[1][: len(valid[1]) // 2], *valid[2:]]
    if kind == 2:
        return [msgpack.packb({"v": SCHEMA_VERSION + 1, "type": "chunk"})]
    if kind == 3:
        return [msgpack.packb({"v": SCHEMA_VERSION, "type": "no_such_type"})]
    if kind == 4:  # a header that claims more buffers than it brings
        return valid[:2]
    if kind == 5:  # right schema, wrong shapes
        return encode("chunk", {"name": "bad", "seq": 0}, {"kind": np.zeros(2, np.uint8)})
    if kind == 6:  # NaN in the data
        m = decode(valid)
        arrays = {k: v.copy() for k, v in m.arrays.items()}
        arrays["reward"][0] = np.nan
        return encode("chunk", m.header, arrays)
    return [msgpack.packb({"v": SCHEMA_VERSION, "type": "sample", "batch_size": "lots"})]


def test_ten_thousand_malformed_messages_leave_server_and_data_intact(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg) as server:
        actor = ActorClient(cfg, SPACE, ACTION, name="good")
        stream_episodes(actor, episodes=2, length=10)
        wait_for(lambda: actor.pending() == 0, what="first episodes acknowledged")
        before = stored_ids(server.storage)
        builder = ChunkBuilder(SPACE, ACTION)
        builder.start(observation(0))
        builder.step(action(1), 1.0, False, False, observation(1), 0)
        valid = [bytes(f) for f in encode("chunk", {"name": "bad", "seq": 0, "demo": False}, builder.take())]
        rng = np.random.default_rng(0)
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{cfg.port}")
        sock.send_multipart(encode("hello", {"role": "actor", "name": "bad", "spec": spec_signature(SPACE, ACTION)}))
        assert decode(sock.recv_multipart()).type == "welcome"
        n = 10_000
        replies = []
        for i in range(n):
            sock.send_multipart(_malformed(i, rng, valid))
            # A peer that reads its replies gets every one (a peer that does not is held to
            # server.max_queued_replies: test_a_peer_that_never_reads_costs_bounded_memory).
            while sock.poll(0) or (i - len(replies) > 8 and sock.poll(5000)):
                replies.append(sock.recv_multipart())
        while len(replies) < n and sock.poll(5000):
            replies.append(sock.recv_multipart())
        assert len(replies) == n, dict(server.counters)  # every bad message got an answer...
        errors = [decode(r) for r in replies]
        assert all(e.type == "error" and e.header["code"] == "rejected" for e in errors)  # ...naming the problem
        messages = " ".join({e.header["message"] for e in errors})
        for fragment in ("schema version", "unknown message type", "non-finite", "header is not msgpack"):
            assert fragment in messages
        assert server.counters["rejected"] == n
        assert stored_ids(server.storage) == before
        stream_episodes(actor, episodes=1, length=5, first_id=100)  # and the server still serves good peers
        assert actor.close(timeout_s=10)
        assert stored_ids(server.storage) == before + list(range(101, 106))
        sock.close()


def test_spec_mismatch_refuses_the_actor_with_a_clear_error(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg):
        actor = ActorClient(cfg, SPACE, (3,), name="wrong")
        wait_for(lambda: actor.fatal is not None, what="refusal")
        assert "spec mismatch" in actor.link_problem() and "refused by the replay server" in actor.link_problem()
        actor.close(0.1)


def test_a_bad_chunk_is_refused_by_the_server_and_the_actor_is_told_what_was_wrong(tmp_path):
    """The actor's client does not validate its chunks; the server does, once, and its refusal names the fault."""
    cfg = transport(spill_dir=str(tmp_path / "spill"))
    with running_server(tmp_path / "srv", cfg) as server:
        actor = ActorClient(cfg, SPACE, ACTION, name="arm")
        stream_episodes(actor, episodes=1, length=3)  # a good episode first: stored
        actor.start_episode(observation(10))
        actor.add(action(11), float("nan"), False, True, observation(11), 0)  # a NaN reward: out of spec
        wait_for(lambda: actor.fatal is not None, what="refusal")
        problem = actor.link_problem()
        assert "refused by the replay server" in problem and "'reward' holds non-finite values" in problem, problem
        assert server.counters["rejected"] == 1 and stored_ids(server.storage) == [1, 2, 3]
        assert not actor.close(timeout_s=0.5)
    # The refused chunk (seq 1) is not kept for the next actor under this name; chunk 0, stored, may be kept when its
    # acknowledgement came after the refusal (the server then takes it for a duplicate).
    assert not (tmp_path / "spill" / "unacknowledged" / f"{1:012d}.chunk").exists()


def test_curve_refuses_peers_without_the_right_key(tmp_path):
    keys = generate_keys(tmp_path / "keys", ["actor"])
    other = generate_keys(tmp_path / "other", ["actor"])  # a valid keypair the server does not know
    cfg = transport(curve_keys=str(keys))
    with running_server(tmp_path / "srv", cfg) as server:
        good = ActorClient(cfg, SPACE, ACTION, name="good")
        stream_episodes(good, 1, 3)
        assert good.close(timeout_s=10)
        assert server.storage.num_transitions() == 3
        for label, client_cfg in (("no keys", transport(port=cfg.port, weights_port=cfg.weights_port)),
                                  ("unknown key", transport(port=cfg.port, weights_port=cfg.weights_port, curve_keys=str(other)))):
            if label == "unknown key":
                (other / "server.key").write_bytes((keys / "server.key").read_bytes())  # knows the server, is not authorized
            intruder = ActorClient(client_cfg, SPACE, ACTION, name=label.replace(" ", "-"))
            stream_episodes(intruder, 1, 3)
            assert not intruder.close(timeout_s=1.5), label
            assert not intruder.connected, label
        assert server.storage.num_transitions() == 3 and "no-keys" not in server.data.next_seq


def test_chunks_spill_to_disk_while_the_server_is_down_and_arrive_in_order(tmp_path):
    cfg = transport(outbox_mb=0.001, spill_dir=str(tmp_path / "spill"))  # ~1 kB of memory: everything spills
    actor = ActorClient(cfg, SPACE, ACTION, name="offline")
    end = stream_episodes(actor, episodes=4, length=10)
    assert actor.outbox.spilled_total > 0 and any((tmp_path / "spill").iterdir())
    with running_server(tmp_path / "srv", cfg) as server:
        assert actor.close(timeout_s=15)
        assert stored_ids(server.storage) == [i for i in range(end) if i % 11]
    assert not any((tmp_path / "spill").iterdir())


def test_learner_is_told_when_no_actor_is_alive(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg):
        actor = ActorClient(cfg, SPACE, ACTION, name="a")
        stream_episodes(actor, 1, 5)
        lc = learner(cfg)
        try:
            wait_for(lambda: lc.actors_alive() == 1, what="one actor alive")
            actor.close(timeout_s=5)
            wait_for(lambda: lc.actors_alive() == 0, timeout_s=5, what="no actor alive")
        finally:
            lc.close()


def test_the_server_keeps_its_files_in_its_directory(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_store", "endpoints.json", "state", "store"]
    assert "layout.json" in os.listdir(tmp_path / "store")


def test_batches_gathered_beside_ingestion_are_consistent(tmp_path):
    """Sampler threads gather while an actor streams into a full, wrapping buffer: every sampled transition
    is whole (its image, joints, reward and next observation belong together)."""
    cfg = transport(chunk_steps=8)
    with running_server(tmp_path, cfg, ServerConfig(capacity=600, sampler_threads=2)) as server:
        actor = ActorClient(cfg, SPACE, ACTION, name="writer")
        stream_episodes(actor, episodes=3, length=150)
        wait_for(lambda: actor.pending() == 0, what="buffer filled")
        lc = learner(cfg, batch_size=64)
        checked = 0
        try:
            first = stream_episodes(actor, episodes=1, length=1, first_id=10_000)
            while checked < 40:
                first = stream_episodes(actor, episodes=1, length=40, first_id=first)  # keeps overwriting the oldest rows
                batch = lc.next_batch(timeout_s=10)
                ids = batch.reward.astype(int)  # reward = id of the next observation
                np.testing.assert_array_equal(batch.next_obs["joint_pos"][:, 0], ids)
                np.testing.assert_array_equal(batch.next_obs["cam"][:, -1, 0, 0, 0], ids % 256)
                np.testing.assert_array_equal(batch.obs["joint_pos"][:, 0], ids - 1)
                np.testing.assert_array_equal(batch.obs["cam"][:, -1, 0, 0, 0], (ids - 1) % 256)
                checked += 1
        finally:
            lc.close()
            actor.close(timeout_s=5)
        assert server.storage.total > 2 * 600  # it wrapped while being sampled


def test_compressed_images_arrive_intact_and_survive_a_restart(tmp_path):
    raw_cfg, png_cfg = transport(), transport(compression="png")
    sizes = {}
    for label, cfg in (("raw", raw_cfg), ("png", png_cfg)):
        with running_server(tmp_path / label, cfg) as server:
            actor = ActorClient(cfg, SPACE, ACTION, name=label)
            end = stream_episodes(actor, episodes=2, length=20)
            assert actor.close(timeout_s=10)
            assert stored_ids(server.storage) == [i for i in range(end) if i % 21]
            rows = np.arange(server.storage.total)
            np.testing.assert_array_equal(server.storage.obs["cam"][rows, 0, 0, 0], server.storage.obs["joint_pos"][rows, 0] % 256)
            sizes[label] = actor.stats["wire_bytes"]
        recovered = DurableReplay(tmp_path / label, SPACE, ACTION, ServerConfig(capacity=10_000))
        assert stored_ids(recovered.storage) == [i for i in range(end) if i % 21]
        recovered.close()
    assert sizes["png"] < sizes["raw"] / 2


def test_a_batch_overrun_by_writes_during_its_gather_is_gathered_again(tmp_path):
    """More rows written while a sampler thread gathers than the skipped oldest rows cover: the batch could
    mix rows from before and after; the server must notice and gather again (deterministic version of the
    race the test above can only hit by chance)."""
    from robolearn.replay import MixedSampler
    from robolearn.transport.server import ReplayServer

    server = ReplayServer(tmp_path, SPACE, ACTION, transport(), ServerConfig(capacity=600, sampler_threads=1))
    try:
        store, next_id = server.storage, 0
        store.start_episode(observation(0))

        def write(steps: int) -> None:  # one long episode: reward = id of the next observation
            nonlocal next_id
            for _ in range(steps):
                next_id += 1
                store.add(action(next_id), float(next_id), False, False, observation(next_id))

        write(800)  # the buffer is full and has wrapped

        # The writes land in the middle of the first gather: after the rewards are read, before the images.
        observations, pending = store._observations, [200]  # far more than the 60 oldest rows never drawn

        def observations_after_writes(rows, frame_stack):
            if pending:
                write(pending.pop())
            return observations(rows, frame_stack)

        store._observations = observations_after_writes
        sampler = MixedSampler(store, None, 0.0)
        batch = server._gather_beside_ingestion(sampler, 64, np.random.default_rng(0), dict(n_step=1, gamma=0.9, frame_stack=2))
        assert server.counters["regathered"] == 1
        ids = batch.reward.astype(int)
        np.testing.assert_array_equal(batch.next_obs["joint_pos"][:, 0], ids)
        np.testing.assert_array_equal(batch.obs["joint_pos"][:, 0], ids - 1)
        np.testing.assert_array_equal(batch.obs["cam"][:, -1, 0, 0, 0], (ids - 1) % 256)
    finally:
        server.close()


def test_the_learner_gets_the_demo_rows_flagged_with_their_own_actions(tmp_path):
    """What the learner learns from: in each batch the flagged rows are the demo store's, drawn over all of it,
    each with the demo's action for its observation (the demo ids are >= 5000; action(i) encodes i % 100).
    The demo store is exactly as large as its demos, as the main job makes it: the online store's margin
    against overwrites once left one demo row to draw, repeated over the whole demo half of every batch."""
    from robolearn.replay import ReplayStorage

    demos = ReplayStorage(SPACE, ACTION, 40)
    for first in (5000, 5100):
        demos.start_episode(observation(first))
        for i in range(first + 1, first + 20):
            demos.add(action(i), float(i), i == first + 19, False, observation(i))
    cfg = transport()
    with running_server(tmp_path, cfg, ServerConfig(capacity=10_000, demo_capacity=40, demo_ratio=0.5), demos=demos):
        actor = ActorClient(cfg, SPACE, ACTION, name="a0")
        stream_episodes(actor, episodes=3, length=10)
        assert actor.close(timeout_s=10)
        lc = LearnerClient(cfg, SPACE, ACTION, batch_size=32, n_step=1, gamma=0.9, frame_stack=1, min_transitions=1)
        try:
            batch = lc.next_batch(timeout_s=10)
        finally:
            lc.close()
    ids = batch.obs["joint_pos"][:, 0]
    np.testing.assert_array_equal(batch.demo, ids >= 5000)
    assert batch.demo.sum() == 16
    assert len(np.unique(ids[batch.demo])) >= 8  # 16 draws over 38 demo transitions
    # n_step=1 and reward = id of the next observation: each row's action is the one that led to it
    np.testing.assert_allclose(batch.action[:, 0], (batch.reward % 100) / 100.0, atol=1e-6)
