"""Asynchronous training across processes: kill -9 of the replay server, end to end with two sim actors,
and a learner death that sends a fake-robot actor to a safe hold."""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from robolearn.roles.config import AsyncConfig
from robolearn.config import load_typed
from robolearn.paths import CONFIG_DIR
from robolearn.replay.config import ServerConfig
from robolearn.replay.durable import DurableReplay
from robolearn.spec import EnvSpec
from robolearn.transport.actor_client import ActorClient
from tests.transport_cases import running_server, transport
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)


def config(name: str, *overrides: str) -> AsyncConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return load_typed(AsyncConfig, compose(config_name=name, overrides=list(overrides)), name)


def role(module: str, config_name: str, run_dir, cfg, *extra: str, log=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", module, "--config-name", config_name, f"run_dir={run_dir}", f"transport.port={cfg.port}",
           f"transport.weights_port={cfg.weights_port}", f"transport.heartbeat_s={cfg.heartbeat_s}",
           f"transport.peer_timeout_s={cfg.peer_timeout_s}", "transport.insecure_no_keys=true", "server.demos=null", "hydra/job_logging=stdout",
           "progress=false", *extra]
    return subprocess.Popen(cmd, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)


def wait_for_server(run_dir, proc, since: float) -> None:
    path = run_dir / "replay" / "endpoints.json"
    wait_for(lambda: proc.poll() is None and path.exists() and path.stat().st_mtime >= since, timeout_s=60, what="replay server up")
    assert proc.poll() is None


def test_kill_9_of_the_replay_server_loses_and_duplicates_nothing(tmp_path):
    cfg = transport(spill_dir=str(tmp_path / "spill"))  # its own: a failed run's leftovers never meet the next run
    spec = EnvSpec.from_config(config("async_state").env)
    space, action_shape = spec.observation_space(), (spec.action_dim,)
    rng = np.random.default_rng(0)
    pool = [{k: rng.normal(size=s.shape).astype(np.float32) for k, s in space.spaces.items()} for _ in range(16)]
    log = open(tmp_path / "server.log", "ab")
    since = time.time() - 1
    server = role("robolearn.roles.replay_server", "async_state", tmp_path, cfg, log=log)
    wait_for_server(tmp_path, server, since)
    actor = ActorClient(cfg, space, action_shape, name="survivor")
    sent = 0

    def episode(length=20):
        nonlocal sent
        actor.start_episode(pool[0])
        for t in range(length):
            sent += 1
            actor.add(np.zeros(action_shape, np.float32), float(sent), False, t == length - 1, pool[sent % 16], 0)

    try:
        for _ in range(10):
            episode()
        wait_for(lambda: actor.acked_through >= 5, what="some chunks acknowledged")
        server.kill()  # kill -9, mid-stream
        server.wait()
        killed_at_acked = actor.acked_through
        for _ in range(10):
            episode()  # the control loop goes on; chunks wait in the outbox
        since = time.time() - 1
        server = role("robolearn.roles.replay_server", "async_state", tmp_path, cfg, log=log)
        wait_for_server(tmp_path, server, since)
        for _ in range(5):
            episode()
        assert actor.close(timeout_s=30), "not everything was acknowledged after the restart"
        assert actor.acked_through > killed_at_acked
    finally:
        server.terminate()
        server.wait(timeout=30)
    data = DurableReplay(tmp_path / "replay", space, action_shape, ServerConfig(capacity=200_000))  # async_state's
    rows = np.arange(data.storage.total)
    complete = data.storage.next[rows] >= 0
    ids = sorted(data.storage.reward[rows][complete].astype(int).tolist())
    assert ids == list(range(1, sent + 1))  # every transition exactly once
    assert data.storage.episodes_added == 25
    assert "recovered" in (tmp_path / "server.log").read_text()
    data.close()


def test_async_training_end_to_end_with_two_sim_actors(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "robolearn.roles.launch", "--config-name", "async_state", f"run_dir={run_dir}", "actors=2",
           "transport.port=0", "transport.weights_port=0", "server.demos=null", "learner.total_updates=300",
           "learner.min_transitions=300", "learner.batch_size=64", "learner.publish_every=50", "learner.save_every=100",
           "actor.seed_steps=100", "progress=false", "torch_threads=1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + (run_dir / "learner.log").read_text()[-3000:]
    assert "exit codes {'replay_server': 0, 'learner': 0, 'actor0': 0, 'actor1': 0}" in result.stdout

    from robolearn.checkpoint import load_checkpoint
    payload = load_checkpoint(run_dir / "learner")
    assert payload["counters"]["updates"] == 300
    spec = EnvSpec.from_config(config("async_state").env)
    data = DurableReplay(run_dir / "replay", spec.observation_space(), (spec.action_dim,), ServerConfig(capacity=200_000))
    assert set(data.streams) == {"actor0", "actor1"}
    rows = np.arange(data.storage.total)
    versions = data.storage.policy_version[rows][data.storage.next[rows] >= 0]
    assert (versions == -1).any() and (versions >= 50).any()  # random seed steps, then policies from the learner
    data.close()
    for i in range(2):
        assert "finished" in (run_dir / f"actor{i}.log").read_text()

    # The learner's checkpoint is an ordinary policy checkpoint: the eval command can load it.
    from robolearn.agents.policy import load_checkpoint_policy
    from robolearn.envs import make_env
    env = make_env(config("async_state").env)
    try:
        obs, _ = env.reset(seed=0)
        assert env.action_space.contains(load_checkpoint_policy(env, str(run_dir / "learner")).act(obs))
    finally:
        env.close()


def test_learner_death_sends_a_fake_robot_actor_to_safe_hold(tmp_path):
    from robolearn.roles.actor import Actor
    from robolearn.roles.config import AsyncConfig
    from robolearn.config import load_typed

    cfg = transport()
    overrides = [f"run_dir={tmp_path}", f"transport.port={cfg.port}", f"transport.weights_port={cfg.weights_port}",
                 f"transport.heartbeat_s={cfg.heartbeat_s}", f"transport.peer_timeout_s={cfg.peer_timeout_s}",
                 "transport.insecure_no_keys=true", "env.hardware.loop.clock=virtual", "actor.name=arm"]
    actor_cfg = config("async_real_fake", *overrides)
    spec = EnvSpec.from_config(actor_cfg.env)
    with running_server(tmp_path / "replay", cfg, ServerConfig(capacity=20_000), spec.observation_space(), (spec.action_dim,)) as server:
        actor = Actor(load_typed(AsyncConfig, actor_cfg, "async"))
        safety = actor.env.unwrapped.safety
        stop = threading.Event()
        actor.stop = stop
        thread = threading.Thread(target=actor.run, daemon=True)
        thread.start()
        learner_log = open(tmp_path / "learner.log", "ab")
        learner = role("robolearn.roles.learner", "async_real_fake", tmp_path, cfg, "learner.min_transitions=1000000", log=learner_log)
        try:
            # Before a learner exists the arm holds; once it is there, the actor acts.
            wait_for(lambda: actor.events[-1:] == ["resume"], timeout_s=60, what="actor acting once the learner is up")
            wait_for(lambda: actor.steps > 20, what="actor stepping")
            holds_before = safety.counters["holds"]
            learner.kill()  # the learner dies without a word
            killed = time.monotonic()
            wait_for(lambda: len(actor.events) >= 3 and actor.events[2].startswith("hold"), timeout_s=10, what="safe hold")
            reaction_s = time.monotonic() - killed
            steps_at_hold = actor.steps
            assert "learner lost" in actor.events[2]
            assert safety.counters["holds"] > holds_before  # through the safety layer
            assert not safety.latched  # a hold is a safe state, not a fault
            assert reaction_s < cfg.peer_timeout_s + 2.0, reaction_s
            time.sleep(0.5)
            assert actor.steps == steps_at_hold  # nothing moves while the learner is gone
            wait_for(lambda: server.peers and any(p.state == "holding" for p in server.peers.values()), timeout_s=5,
                     what="the server hears the actor report its hold")
        finally:
            stop.set()
            learner.kill()
            learner.wait()
            thread.join(timeout=10)
            actor.close()
    assert json.loads((tmp_path / "replay" / "endpoints.json").read_text())["router"].endswith(str(cfg.port))


def test_a_learner_at_its_update_cap_still_stops_and_says_when_actors_are_gone(tmp_path, caplog):
    from robolearn.roles.learner import Learner

    cfg = transport()
    lcfg = config("async_state", f"run_dir={tmp_path}", f"transport.port={cfg.port}", f"transport.weights_port={cfg.weights_port}",
                  f"transport.heartbeat_s={cfg.heartbeat_s}", f"transport.peer_timeout_s={cfg.peer_timeout_s}", "progress=false",
                  "transport.insecure_no_keys=true", "learner.batch_size=8", "learner.min_transitions=10", "learner.max_utd=0.25", "learner.total_updates=null")
    spec = EnvSpec.from_config(lcfg.env)
    space, action_shape = spec.observation_space(), (spec.action_dim,)
    rng = np.random.default_rng(0)
    with running_server(tmp_path / "replay", cfg, ServerConfig(capacity=1000), space, action_shape):
        actor = ActorClient(cfg, space, action_shape, name="brief")
        for _ in range(2):
            actor.start_episode({k: rng.normal(size=s.shape).astype(np.float32) for k, s in space.spaces.items()})
            for t in range(20):
                actor.add(np.zeros(action_shape, np.float32), 0.0, False, t == 19,
                          {k: rng.normal(size=s.shape).astype(np.float32) for k, s in space.spaces.items()}, 0)
        assert actor.close(timeout_s=10)  # 40 transitions, then the only actor is gone
        learner = Learner(lcfg, tmp_path / "learner")
        thread = threading.Thread(target=learner.train, daemon=True)
        with caplog.at_level("INFO", logger="robolearn.roles.learner"):
            thread.start()
            # The cap counts from the first update, as the inline loop's utd per step after its seed steps.
            wait_for(lambda: learner.updates >= 8, timeout_s=60, what="the learner reaching its cap (0.25 x (40 - 10 + 1))")
            wait_for(lambda: "no actor is alive" in caplog.text, timeout_s=10, what="the learner saying it is alone")
            learner.stop_requested = True  # what SIGTERM does
            thread.join(timeout=10)
        assert not thread.is_alive()
        assert learner.updates == 8 and (tmp_path / "learner" / "checkpoint.pt").exists()
        learner.close()


def test_actor_pacing_spaces_steps_on_absolute_deadlines(monkeypatch):
    # `actor.max_steps_per_s` on a virtual clock: steps are 1/rate apart whatever each step costs, and a
    # stall does not earn a burst of catch-up steps.
    from omegaconf import OmegaConf

    import robolearn.roles.actor as actor_module

    now = {"t": 100.0}
    slept: list[float] = []
    monkeypatch.setattr(actor_module.time, "monotonic", lambda: now["t"])

    def sleep(s):
        slept.append(round(s, 6))
        now["t"] += s

    monkeypatch.setattr(actor_module.time, "sleep", sleep)
    actor = actor_module.Actor.__new__(actor_module.Actor)
    actor.acfg = OmegaConf.create({"max_steps_per_s": 5})
    starts = []
    for cost in (0.05, 0.05, 0.3, 0.05):
        actor._pace()
        starts.append(round(now["t"], 6))
        now["t"] += cost
    assert starts == [100.0, 100.2, 100.4, 100.7]  # the 0.3 s step overran its slot: the next starts at once
    now["t"] += 5.0  # a stall (a reset, a hold)
    actor._pace()
    assert round(now["t"], 6) == 105.75  # at once ...
    actor._pace()
    assert round(now["t"], 6) == 105.95  # ... and the next a full period later: no burst of catch-up steps
    assert slept == [0.15, 0.15, 0.2]


def test_a_sigterm_to_the_whole_run_stops_every_role_cleanly_and_loses_nothing(tmp_path):
    """What `timeout` or a cluster scheduler does: SIGTERM to the process group, all roles at once."""
    import os
    import re
    import signal

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "robolearn.roles.launch", "--config-name", "async_state", f"run_dir={run_dir}", "actors=2",
           "transport.port=0", "transport.weights_port=0", "server.demos=null", "learner.total_updates=100000",
           "learner.min_transitions=200", "learner.batch_size=64", "actor.seed_steps=100", "actor.max_steps_per_s=100",
           "progress=false", "torch_threads=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        spec = EnvSpec.from_config(config("async_state").env)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:  # until both actors are streaming
            logs = [run_dir / f"actor{i}.log" for i in range(2)]
            if all(p.exists() and "connected to replay server" in p.read_text() for p in logs):
                break
            time.sleep(0.5)
        time.sleep(3.0)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert "exit codes {'replay_server': 0, 'learner': 0, 'actor0': 0, 'actor1': 0}" in out, out[-3000:]
    sent = 0
    for i in range(2):
        text = (run_dir / f"actor{i}.log").read_text()
        found = re.search(r"'transitions_sent': (\d+), 'all_acknowledged': (True|False)", text)
        assert found, text[-2000:]
        sent += int(found.group(1))
        assert found.group(2) == "True", text[-2000:]
    data = DurableReplay(run_dir / "replay", spec.observation_space(), (spec.action_dim,), ServerConfig(capacity=200_000))
    try:
        stored = data.storage.num_transitions()
    finally:
        data.close()
    assert sent > 0 and stored == sent, (stored, sent)  # the server drained while the actors flushed: every one stored once


def _importing_torch(pid: int) -> bool:
    """Whether the process has begun loading torch's libraries (its heavy imports, well before main())."""
    with open(f"/proc/{pid}/maps") as f:
        return "libtorch" in f.read()


@pytest.mark.parametrize("role", ["robolearn.roles.replay_server", "robolearn.roles.learner", "robolearn.roles.actor"])
def test_a_role_stopped_while_it_starts_exits_cleanly(tmp_path, role):
    """A group SIGTERM can reach a role still importing torch: that is a clean exit (0), not -15."""
    import signal

    cmd = [sys.executable, "-m", role, "--config-name", "async_state", f"run_dir={tmp_path}", "transport.port=0",
           "transport.weights_port=0", "transport.insecure_no_keys=true", "progress=false"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: proc.poll() is not None or _importing_torch(proc.pid), timeout_s=30, what="the imports")
        proc.send_signal(signal.SIGTERM)  # while the heavy imports run, before main() installs its handlers
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
