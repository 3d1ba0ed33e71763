"""Remote runs with keys on, tried as an attacker would (issue 26): weights reach authenticated actors and
only the learner's are applied, a revoked key is shut out of a running server, and the actor-name table
cannot overflow the replay's persisted state. Real sockets on 127.0.0.1, every case bounded."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import zmq

from robolearn.replay.config import ServerConfig
from robolearn.replay.durable import DurableReplay, StateFile, slot_bytes_for, state_bound
from robolearn.transport.actor_client import ActorClient
from robolearn.transport.protocol import arrays_digest, encode
from robolearn.transport.keys import main as keys_command
from robolearn.transport.security import generate_keys
from tests.test_transport_attacks import Peer, one_chunk
from tests.test_transport_server import learner
from tests.transport_cases import ACTION, SPACE, running_server, stream_episodes, transport
from tests.waiting import eventually, wait_for

pytestmark = pytest.mark.timeout(120)


def weights_of(version: int, sign: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(version)
    return {"encoder.w": (sign * rng.standard_normal((64, 32))).astype(np.float32), "actor.b": np.full(8, sign * version, np.float32)}


def taken(actor: ActorClient, version: int, what: str) -> dict[str, np.ndarray]:
    got = {}

    def arrived():
        w = actor.take_weights()
        if w is not None:
            got[w[0]] = w[1]
        return version in got

    wait_for(arrived, timeout_s=10, what=what)
    return got[version]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# -- CURVE end to end through a weight update ------------------------------------------------------------
def test_with_curve_an_actor_applies_exactly_the_learners_weights(tmp_path):
    keys = generate_keys(tmp_path / "keys", ["actor", "learner"])
    cfg = transport(curve_keys=str(keys))
    with running_server(tmp_path / "srv", cfg) as server:
        lc = learner(transport(port=cfg.port, weights_port=cfg.weights_port, curve_keys=str(keys), client_key="learner"))
        actor = ActorClient(replace(cfg, spill_dir=str(tmp_path / "spill")), SPACE, ACTION, name="arm")
        try:
            wait_for(lambda: lc.connected and actor.connected, what="learner and actor connected with keys")
            for version in (1, 2):
                sent = weights_of(version)
                lc.publish_weights(version, sent)
                assert same(taken(actor, version, f"weights v{version} on the CURVE subscription"), sent)
                actor.applied(version)
            assert server.weights_digest == arrays_digest(weights_of(2))
            assert actor.stats["weights_rejected"] == 0
            stream_episodes(actor, 1, 5)  # the request channel works too
        finally:
            assert actor.close(timeout_s=10)
            lc.close()
        assert server.storage.num_transitions() == 5


# -- the takeover race: forged arrays that arrive before the learner's ---------------------------------------
class WeightsPortThief:
    """Holds the port actors take weights from and relays the real server's broadcasts onto it, sending
    forged arrays under a version ahead of each real one (so they reach the actor first), as a process that
    took over the weights port and watches the learner would."""

    def __init__(self, port: int, server_weights_port: int):
        ctx = zmq.Context.instance()
        self.out = ctx.socket(zmq.XPUB)
        self.out.linger = 0
        self.out.bind(f"tcp://127.0.0.1:{port}")
        self.real = ctx.socket(zmq.SUB)
        self.real.linger = 0
        self.real.subscribe(b"")
        self.real.connect(f"tcp://127.0.0.1:{server_weights_port}")
        self.relayed = 0
        self._forged: queue.SimpleQueue = queue.SimpleQueue()  # only the relay thread touches the sockets (ZMQ's rule)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def forge(self, version: int) -> None:
        self._forged.put(encode("weights", {"version": version}, weights_of(version, sign=-1.0)))

    def _relay(self) -> None:
        while not self._stop.is_set():
            while not self._forged.empty():
                self.out.send_multipart(self._forged.get())
            if self.out.poll(5):
                self.out.recv()  # subscriptions
            if self.real.poll(5):
                self.out.send_multipart(self.real.recv_multipart())
                self.relayed += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.out.close(0)
        self.real.close(0)


@pytest.mark.parametrize("keys", [False, True], ids=["without-keys", "with-curve"])
def test_forged_weights_that_arrive_first_are_never_applied(tmp_path, keys):
    keys_dir = generate_keys(tmp_path / "keys", ["actor", "learner"]) if keys else None
    server_cfg = transport(curve_keys=str(keys_dir) if keys else None)
    with running_server(tmp_path / "srv", server_cfg) as server:
        thief_port = transport().weights_port
        # With CURVE the thief cannot hold a subscription of the server's weights (no key): it forges only.
        thief = WeightsPortThief(thief_port, server_cfg.weights_port if not keys else transport().weights_port)
        actor_cfg = transport(port=server_cfg.port, weights_port=thief_port, curve_keys=server_cfg.curve_keys)
        lc = learner(transport(port=server_cfg.port, weights_port=server_cfg.weights_port, curve_keys=server_cfg.curve_keys,
                               client_key="learner"))
        actor = ActorClient(replace(actor_cfg, spill_dir=str(tmp_path / "spill")), SPACE, ACTION, name="arm")
        try:
            wait_for(lambda: lc.connected and actor.connected, what="connected")
            time.sleep(0.3)  # the actor's subscription reaches the thief
            applied = {}
            for version in range(1, 13):
                thief.forge(version)  # ahead of the learner's own broadcast of this version
                time.sleep(0.02)
                lc.publish_weights(version, weights_of(version))
                wait_for(lambda: server.weights_version == version, what=f"v{version} accepted")
                thief.forge(version)  # and once more after the announcement
                # Without keys, wait until this version is applied (on a loaded machine the actor may hear the
                # next announcement first, and then this version is rightly superseded); with CURVE, 1 s.
                deadline = time.monotonic() + (10.0 if not keys else 1.0)
                while time.monotonic() < deadline and not (not keys and version in applied):
                    w = actor.take_weights()
                    if w is not None:
                        applied[w[0]] = w[1]
                        actor.applied(w[0])
                    time.sleep(0.01)
            for version, arrays in applied.items():
                assert same(arrays, weights_of(version)), f"v{version}: forged arrays were applied"
            if not keys:  # the real broadcasts reach the actor through the relay: each is applied, no forgery
                assert set(applied) == set(range(1, 13))
                assert actor.stats["weights_rejected"] >= 12
            else:  # without the server's secret key the thief cannot even complete a handshake with the actor
                assert applied == {} and actor.weights_overdue_s() > 0
        finally:
            actor.close(timeout_s=10)
            lc.close()
            thief.close()


def test_weights_are_announced_at_once_not_with_the_next_heartbeat(tmp_path):
    cfg = transport(heartbeat_s=2.0, peer_timeout_s=10.0)  # a status every 2 s would be late
    with running_server(tmp_path, cfg) as server:
        lc, actor = learner(cfg), ActorClient(replace(cfg, spill_dir=str(tmp_path / "spill")), SPACE, ACTION, name="arm")
        try:
            wait_for(lambda: lc.connected and actor.connected, what="connected")
            time.sleep(0.2)
            start = time.monotonic()
            lc.publish_weights(1, weights_of(1))
            taken(actor, 1, "weights v1")
            assert time.monotonic() - start < 1.5, "weights waited for the actor's next heartbeat"
        finally:
            actor.close(timeout_s=10)
            lc.close()


# -- revoking a key while the server runs ------------------------------------------------------------------
def test_a_revoked_key_is_shut_out_of_a_running_server_and_the_others_lose_nothing(tmp_path):
    keys = generate_keys(tmp_path / "keys", ["arm1", "arm2", "learner"], names={"arm1": ["arm1"], "arm2": ["arm2"]})
    base = dict(curve_keys=str(keys))
    cfg = transport(**base)
    with running_server(tmp_path / "srv", cfg) as server:
        lc = learner(transport(port=cfg.port, weights_port=cfg.weights_port, client_key="learner", **base))
        arms = [ActorClient(transport(port=cfg.port, weights_port=cfg.weights_port, client_key=name, spill_dir=str(tmp_path / name), **base),
                            SPACE, ACTION, name=name) for name in ("arm1", "arm2")]
        arm1, arm2 = arms
        try:
            wait_for(lambda: lc.connected and arm1.connected and arm2.connected, what="all connected")
            lc.publish_weights(1, weights_of(1))
            taken(arm2, 1, "arm2 has weights v1 before the revocation")
            first = stream_episodes(arm1, 2, 10)
            stream_episodes(arm2, 1, 10, first_id=10_000)
            wait_for(lambda: server.storage.num_transitions() == 30, what="both actors' data stored")
            keys_command([str(keys), "--revoke", "arm2"])  # the robot PC behind arm2 was lost
            wait_for(lambda: server.counters["sockets_replaced"] == 1, timeout_s=10, what="the server noticed the revocation")
            wait_for(lambda: not arm2.connected or arm2.fatal, timeout_s=10, what="arm2 cut off")
            stream_episodes(arm1, 2, 10, first_id=first)  # arm1 reconnects by itself and goes on
            stream_episodes(arm2, 1, 10, first_id=20_000)
            wait_for(lambda: lc.connected, timeout_s=10, what="the learner back")
            lc.publish_weights(2, weights_of(2))
            taken(arm1, 2, "arm1 gets v2 after reconnecting")
            assert not eventually(lambda: arm2.take_weights() is not None, timeout_s=2.0), "a revoked key still gets weights"
            assert arm1.close(timeout_s=15)
            assert not arm2.close(timeout_s=1.0)  # what it holds is not acknowledged: it is not let in
            assert server.storage.num_transitions() == 50  # arm1's 40 and arm2's 10 from before, nothing after
            assert not arm2.connected
        finally:
            arm1.close(timeout_s=1), arm2.close(timeout_s=0.1)
            lc.close()


def test_a_half_written_roles_file_keeps_the_old_keys_in_force(tmp_path):
    keys = generate_keys(tmp_path / "keys", ["actor"])
    cfg = transport(curve_keys=str(keys))
    with running_server(tmp_path / "srv", cfg) as server:
        (keys / "authorized" / "roles.json").write_text('{"actor": ')  # an editor saving half a file
        time.sleep(1.5)
        actor = ActorClient(replace(cfg, spill_dir=str(tmp_path / "spill")), SPACE, ACTION, name="arm")
        stream_episodes(actor, 1, 5)
        assert actor.close(timeout_s=10)
        assert server.storage.num_transitions() == 5 and server.counters["sockets_replaced"] == 0


# -- the actor-name table ------------------------------------------------------------------------------------
def test_the_state_slot_holds_every_name_the_limits_allow(tmp_path):
    cfg = ServerConfig(capacity=100, demo_capacity=10, max_actor_names=300, max_name_bytes=64)
    data = DurableReplay(tmp_path, SPACE, ACTION, cfg)
    try:
        names = [f"{i:03d}" + "\U0001F916" * 15 for i in range(300)]  # 63 bytes each, four-byte characters
        assert all(len(n.encode()) == 63 for n in names)
        from robolearn.transport.protocol import decode

        for name in names:
            assert data.has_room_for(name)
            for demo in (False, True):
                data.accept(name, 0 if not demo else 1, demo, decode(one_chunk(name, 0, 0)).arrays)
        assert state_bound(names) <= data.state_file.slot_bytes
    finally:
        data.close()
    again = DurableReplay(tmp_path, SPACE, ACTION, cfg)  # every name and sequence number came back
    assert len(again.next_seq) == 300 and again.next_seq[names[-1]] == 2
    again.close()


def test_a_state_file_made_under_smaller_limits_refuses_new_names_not_live_actors(tmp_path):
    small = ServerConfig(capacity=1000, max_actor_names=3, max_name_bytes=8)
    DurableReplay(tmp_path, SPACE, ACTION, small).close()
    state = StateFile(tmp_path / "state", False)
    assert state.slot_bytes == slot_bytes_for(3, 8)  # recorded in the file, read back whatever the caller asks
    state.close()
    cfg = transport()
    bigger = ServerConfig(capacity=1000, max_actor_names=2000, max_name_bytes=64)
    with running_server(tmp_path, cfg, bigger) as server:
        actor = ActorClient(replace(cfg, spill_dir=str(tmp_path / "spill")), SPACE, ACTION, name="real-arm")
        first = stream_episodes(actor, 1, 4)
        wait_for(lambda: server.storage.num_transitions() == 4, what="the real actor's data")
        refused = 0
        for i in range(40):
            p = Peer(cfg)
            name = f"{i:02d}" + "\u00e9" * 31  # 64 bytes
            reply = p.hello(name=name)
            if reply.type == "welcome":
                assert p.ask(one_chunk(name, 0, 0)).type == "ack"
            else:
                assert reply.header["code"] == "too_many_names", reply.header
                refused += 1
            p.sock.send_multipart(encode("bye", {"name": "x"}))
            p.close()
        assert refused > 0 and server.counters["internal_errors"] == 0
        stream_episodes(actor, 1, 4, first_id=first)  # the live actor never noticed
        assert actor.close(timeout_s=10)
        assert server.data.next_seq["real-arm"] >= 1 and server.counters["internal_errors"] == 0


def test_a_chunk_whose_state_cannot_be_made_durable_is_not_covered_by_any_welcome(tmp_path, monkeypatch):
    from robolearn.transport.protocol import decode

    data = DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=100, demo_capacity=10))
    data.accept("arm", 0, False, decode(one_chunk("arm", 0, 0)).arrays)
    real_commit = data.state_file.commit

    def disk_error(state):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(data.state_file, "commit", disk_error)
    with pytest.raises(OSError):
        data.accept("arm", 1, False, decode(one_chunk("arm", 1, 10)).arrays)
    assert data.next_seq["arm"] == 1 and data.storage.num_transitions() == 1  # as if the chunk never came
    monkeypatch.setattr(data.state_file, "commit", real_commit)
    data.accept("arm", 1, False, decode(one_chunk("arm", 1, 10)).arrays)  # its resend is stored once
    assert data.next_seq["arm"] == 2 and data.storage.num_transitions() == 2
    data.close()
    again = DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=100, demo_capacity=10))
    assert again.next_seq["arm"] == 2 and again.storage.num_transitions() == 2
    again.close()


def test_names_are_limited_in_bytes_not_characters(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg, ServerConfig(capacity=1000, max_name_bytes=64)):
        p = Peer(cfg)
        reply = p.hello(name="\U0001F916" * 17)  # 17 characters, 68 bytes
        assert reply.type == "error" and "bytes" in reply.header["message"]
        assert Peer(cfg).hello(name="\U0001F916" * 16).type == "welcome"  # 64 bytes
        p.close()


def test_max_actors_counts_names_and_a_connection_keeps_its_name(tmp_path):
    cfg = transport()
    with running_server(tmp_path, cfg, ServerConfig(capacity=1000, max_actors=3)) as server:
        p = Peer(cfg)
        assert p.hello(name="arm0").type == "welcome"
        for i in range(1, 200):  # one connection saying hello under many names
            reply = p.hello(name=f"arm{i}")
            assert reply.header["code"] == "name_change"
        status = p.ask(encode("heartbeat", {"name": "arm0"}))
        assert status.header["actors_alive"] == 1
        others = [Peer(cfg) for _ in range(3)]
        assert [o.hello(name=f"other{i}").type for i, o in enumerate(others)] == ["welcome", "welcome", "error"]
        assert server.counters["rejected_too_many_actors"] == 1
        for o in (p, *others):
            o.close()


def test_roles_refuse_to_start_without_keys_unless_told_what_they_give_up(tmp_path):
    from robolearn.config import ConfigError
    from robolearn.transport.server import ReplayServer
    from robolearn.transport.config import TransportConfig

    for start in (lambda cfg: ReplayServer(tmp_path, SPACE, ACTION, cfg), lambda cfg: ActorClient(cfg, SPACE, ACTION, name="a"),
                  lambda cfg: learner(cfg)):
        with pytest.raises(ConfigError, match="transport.insecure_no_keys"):
            start(TransportConfig(port=0, weights_port=0))


def test_the_all_in_one_launcher_makes_per_run_keys_only_its_owner_can_read(tmp_path):
    import stat

    from robolearn.roles.group import run_keys

    keys = run_keys(tmp_path, actors=2)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for secret in keys.glob("*.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    roles = (keys / "authorized" / "roles.json").read_text()
    # each actor's key holds its own names only: its stream and its interventions' (robolearn/interventions.py)
    assert '"actor0"' in roles and '"names": [\n      "actor0",\n      "actor0.interventions"\n    ]' in roles
    before = (keys / "learner.key_secret").read_bytes()
    assert run_keys(tmp_path, actors=2) == keys and (keys / "learner.key_secret").read_bytes() == before  # a resume keeps them
