"""The one training recipe and its two runners (`python -m robolearn.train runner=async|inline`).

The roles' config made from the TrainConfig, the actor's follow-the-learner gate, a group stop and resume
of the async runner that keep every acknowledged transition exactly once, a role that dies reported by name,
and the inline runner through the same `run`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import robolearn.roles.actor
from robolearn.roles.config import AsyncConfig
from robolearn.checkpoint import load_checkpoint
from robolearn.config import load_typed
from robolearn.paths import CONFIG_DIR
from robolearn.roles.group import stop_in_order
from robolearn.training.evaluation import EVAL_COLUMNS
from robolearn.training.roles import ROLES_FILE, role_config, write_role_config
from robolearn.train import TrainConfig, run
from tests.waiting import eventually, wait_for

ROLE_LOGS = ("replay_server", "learner", "actor0", "evaluator")

# The tiny async state run: 2 s episodes (20 steps), small networks, 2 demo episodes, an eval every 200 steps.
TINY_ASYNC = [
    "env.episode_seconds=2", "agent.hidden_dim=32", "batch_size=16", "seed_steps=40", "utd=1", "eval.every=200",
    "eval.episodes=2", "eval.video=false", "progress=false", "demos.episodes=2", "replay.capacity=2000",
]


def train_config(*overrides: str) -> TrainConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return load_typed(TrainConfig, compose(config_name="train_state", overrides=list(overrides)), "train")


# -- 1. the roles' config, made from the recipe -------------------------------------------------------------

@pytest.mark.timeout(60)
def test_role_config_maps_the_recipe_onto_every_role_and_loads_back(tmp_path):
    cfg = train_config("utd=2", "update_every=1", "seed_steps=1000", "async_roles.actors=2", "total_steps=5000",
                       "save_every=2500", "replay.demo_ratio=0.25", "async_roles.ahead_steps=7", "async_roles.publish_every=9",
                       "async_roles.learner_threads=3")
    run_dir, keys, demos = tmp_path / "run", tmp_path / "keys", tmp_path / "demo.npz"
    run_dir.mkdir()
    rc = role_config(cfg, run_dir, keys_dir=keys, demo_path=demos, demo_rows=123)

    learner, actor, server, transport = rc["learner"], rc["actor"], rc["server"], rc["transport"]
    assert learner["max_utd"] == 2.0 and learner["min_transitions"] == 1000
    assert learner["total_updates"] is None  # the actors' total_steps ends the run, not an update count
    assert learner["save_every"] == 5000  # save_every env steps x 2 updates per step
    assert learner["publish_every"] == 9 and learner["subdir"] == "" and learner["eval_snapshots"] is True
    assert actor["seed_steps"] == 500 and actor["total_steps"] == 2500  # each of 2 actors its share
    assert actor["follow_utd"] == 2.0 and actor["ahead_steps"] == 7 and actor["finish_episode_on_stop"] is True
    assert server["demo_ratio"] == cfg.replay.demo_ratio == 0.25
    assert server["demos"] == str(demos) and server["demo_capacity"] == 123 and server["capacity"] == cfg.replay.capacity
    assert transport["port"] == 0 and transport["weights_port"] == 0 and transport["spill_dir"] is None
    assert transport["curve_keys"] == str(keys)
    assert rc["actors"] == 2 and rc["run_dir"] == str(run_dir) and rc["progress"] is False
    assert rc["torch_threads"] == cfg.async_roles.role_threads and learner["torch_threads"] == 3

    # Without per-run keys the transport's own setting stays (here: none).
    bare = role_config(cfg, run_dir, keys_dir=None, demo_path=None, demo_rows=0)
    assert bare["transport"]["curve_keys"] is None and bare["server"]["demos"] is None
    assert bare["server"]["demo_capacity"] >= 2

    # The file every role reads: `--config-dir <run_dir> --config-name roles`.
    path = write_role_config(run_dir, rc)
    assert path == run_dir / ROLES_FILE
    with initialize_config_dir(config_dir=str(run_dir), version_base="1.3"):
        composed = compose(config_name=Path(ROLES_FILE).stem)
    loaded = load_typed(AsyncConfig, composed, "async")
    assert isinstance(loaded, AsyncConfig)
    assert loaded.learner.max_utd == 2.0 and loaded.learner.min_transitions == 1000 and loaded.learner.total_updates is None
    assert loaded.learner.torch_threads == 3
    assert loaded.actor.seed_steps == 500 and loaded.actor.total_steps == 2500
    assert loaded.actor.follow_utd == 2.0 and loaded.actor.finish_episode_on_stop is True
    assert loaded.server.demo_ratio == 0.25 and loaded.server.demos == str(demos)
    assert loaded.transport.port == 0 and loaded.transport.curve_keys == str(keys)
    assert loaded.agent.hidden_dim == cfg.agent.hidden_dim and loaded.env == OmegaConf.to_container(OmegaConf.create(rc["env"]))
    plain = OmegaConf.to_container(OmegaConf.load(path))
    assert plain.pop("defaults") == ["async_schema", "_self_"] and plain.pop("hydra")["run"]["dir"] == str(run_dir)
    assert load_typed(AsyncConfig, plain, "async").actor.total_steps == 2500  # the rest of the file is the roles' config


class ScriptedRole:
    """A role process that stops after `stops_after_s` of waiting (None: never) and records what it was asked."""

    def __init__(self, name: str, stops_after_s: float | None, events: list):
        self.name, self.stops_after_s, self.events = name, stops_after_s, events

    def stop(self):
        self.events.append(("stop", self.name))

    def wait(self, timeout_s: float) -> bool:
        self.events.append(("wait", self.name, timeout_s))
        return self.stops_after_s is not None and self.stops_after_s <= timeout_s

    def kill(self):
        self.events.append(("kill", self.name))


def test_the_group_stops_in_order_and_gives_the_evaluator_its_own_grace():
    events: list = []
    roles = {name: ScriptedRole(name, after, events) for name, after in
             [("replay_server", 1), ("evaluator", 200), ("learner", 5), ("actor0", 1), ("actor1", None)]}
    stop_in_order(roles, grace_s=120, evaluator_grace_s=360)
    assert events == [("stop", "actor0"), ("stop", "actor1"), ("wait", "actor0", 120), ("wait", "actor1", 120), ("kill", "actor1"),
                      ("stop", "learner"), ("wait", "learner", 120), ("stop", "evaluator"), ("wait", "evaluator", 360),
                      ("stop", "replay_server"), ("wait", "replay_server", 120)]
    events.clear()
    stop_in_order(roles, grace_s=120)  # without its own grace, the evaluator's 200 s final evaluation is cut
    assert ("kill", "evaluator") in events and ("wait", "evaluator", 120) in events
    assert train_config().async_roles.evaluator_stop_grace_s >= 3 * train_config().async_roles.stop_grace_s


@pytest.mark.timeout(60)
@pytest.mark.parametrize("utd, update_every, total_steps, actors, max_utd, per_actor, save_every", [
    (3, 2, 5001, 2, 1.5, 2501, 3750),  # a fractional utd; shares rounded up
    (1, 4, 100, 3, 0.25, 34, 625),
])
def test_role_config_rates_and_shares(utd, update_every, total_steps, actors, max_utd, per_actor, save_every, tmp_path):
    cfg = train_config(f"utd={utd}", f"update_every={update_every}", f"total_steps={total_steps}", f"async_roles.actors={actors}",
                       "save_every=2500", "seed_steps=10")
    rc = role_config(cfg, tmp_path, keys_dir=None, demo_path=None, demo_rows=0)
    assert rc["learner"]["max_utd"] == max_utd and rc["actor"]["follow_utd"] == max_utd
    assert rc["actor"]["total_steps"] == per_actor and per_actor * actors >= total_steps
    assert rc["actor"]["seed_steps"] * actors >= 10
    assert rc["learner"]["save_every"] == save_every


# -- 5. the actor's follow-the-learner gate, without sockets -----------------------------------------------

class _Gate:
    """What Actor._follow_learner reads: the acting config, the learner's min_transitions, the server's status."""

    def __init__(self, follow_utd=2.0, ahead_steps=10, min_transitions=100, status=None, version=-1, steps=0):
        self.acfg = SimpleNamespace(follow_utd=follow_utd, ahead_steps=ahead_steps)
        self.cfg = SimpleNamespace(learner=SimpleNamespace(min_transitions=min_transitions))
        self.problem = None
        self.client = SimpleNamespace(server_status=dict(status or {}), link_problem=lambda: self.problem)
        self.version, self.steps, self.waits = version, steps, 0
        self._stored_seen, self._steps_at_status = None, 0
        self.stop = threading.Event()
        self.applied = 0
        self.on_apply = None  # called with the number of _apply_weights calls so far

    def _apply_weights(self):
        self.applied += 1
        if self.on_apply is not None:
            self.on_apply(self.applied)

    def follow(self):
        robolearn.roles.actor.Actor._follow_learner(self)


@pytest.fixture
def sleeps(monkeypatch):
    """time.sleep in robolearn.roles.actor, counted and instant; a gate that never opens fails instead of hanging."""
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) > 10_000:
            raise AssertionError("the gate never let the actor go on")

    monkeypatch.setattr(robolearn.roles.actor, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic, perf_counter=time.perf_counter))
    return calls


@pytest.mark.timeout(30)
def test_follow_the_learner_lets_the_actor_go_within_its_allowance(sleeps):
    # Allowance: stored < (min_transitions - 1) + updates / follow_utd + ahead_steps = 99 + 0 + 10 = 109.
    gate = _Gate(status={"transitions": 108, "weights_version": 0})
    gate.follow()
    assert gate.waits == 0 and sleeps == [] and gate.applied == 0

    off = _Gate(follow_utd=None, status={"transitions": 10_000})  # a real arm: never waits
    off.follow()
    assert off.waits == 0 and sleeps == []

    unknown = _Gate(status={})  # no status from the server yet: nothing to follow
    unknown.follow()
    assert unknown.waits == 0 and sleeps == []

    # The learner's updates widen it: 24 updates at utd 2 -> 99 + 12 + 10 = 121, from the status or the weights applied.
    by_status = _Gate(status={"transitions": 120, "weights_version": 24})
    by_status.follow()
    by_weights = _Gate(status={"transitions": 120, "weights_version": 0}, version=24)
    by_weights.follow()
    assert by_status.waits == by_weights.waits == 0 and sleeps == []


@pytest.mark.timeout(30)
def test_follow_the_learner_waits_above_its_allowance_until_the_learner_catches_up(sleeps):
    gate = _Gate(status={"transitions": 109, "weights_version": 0})  # exactly at the allowance: waits

    def learner_catches_up(calls):
        if calls == 3:
            gate.version = 2  # 99 + 1 + 10 = 110 > 109

    gate.on_apply = learner_catches_up
    gate.follow()
    assert gate.waits == 1  # one wait, however many polls it took
    assert gate.applied == 3 and len(sleeps) == 3
    gate.follow()  # now within: no second wait
    assert gate.waits == 1 and len(sleeps) == 3

    # A newer status from the server with more updates opens it too.
    late = _Gate(status={"transitions": 150, "weights_version": 0})
    late.on_apply = lambda calls: calls == 5 and late.client.server_status.update(weights_version=200)
    late.follow()
    assert late.waits == 1 and late.applied == 5


@pytest.mark.timeout(30)
def test_follow_the_learner_counts_the_actors_own_steps_since_the_last_status(sleeps):
    gate = _Gate(status={"transitions": 100, "weights_version": 0}, steps=40)
    gate.follow()
    assert gate.waits == 0
    gate.steps = 48  # 8 more steps, the server's count not updated yet: 108 < 109
    gate.follow()
    assert gate.waits == 0
    gate.steps = 49  # 109: at the allowance
    gate.on_apply = lambda calls: calls == 2 and gate.client.server_status.update(transitions=100, weights_version=4)
    gate.follow()  # still 100 reported (the same count): 109 against 99 + 2 + 10 = 111 -> goes on
    assert gate.waits == 1 and gate.applied == 2
    # A new count from the server replaces the actor's own tally: 105 stored, 0 steps since.
    gate.client.server_status.update(transitions=105)
    gate.steps = 60
    gate.follow()
    assert gate.waits == 1 and gate._stored_seen == 105 and gate._steps_at_status == 60


@pytest.mark.timeout(30)
def test_follow_the_learner_stops_waiting_on_a_stop_or_a_lost_link(sleeps):
    stopped = _Gate(status={"transitions": 500, "weights_version": 0})
    stopped.on_apply = lambda calls: calls == 2 and stopped.stop.set()
    stopped.follow()
    assert stopped.waits == 1 and stopped.applied == 2

    lost = _Gate(status={"transitions": 500, "weights_version": 0})

    def lose(calls):
        if calls == 4:
            lost.problem = "the replay server went silent"

    lost.on_apply = lose
    lost.follow()
    assert lost.waits == 1 and lost.applied == 4

    already = _Gate(status={"transitions": 500, "weights_version": 0})
    already.stop.set()
    already.follow()  # a stop under way: no wait at all
    assert already.waits == 0 and already.applied == 0


# -- 4. the inline runner through `run` ----------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_the_inline_runner_writes_eval_csv_and_best(tmp_path):
    cfg = train_config("runner=inline", "env.episode_seconds=2", "agent.hidden_dim=32", "batch_size=16", "seed_steps=20",
                       "utd=1", "eval.every=20", "eval.episodes=1", "eval.video=false", "progress=false", "demos.episodes=0",
                       "torch_threads=1", "replay.capacity=200", "total_steps=40", "save_every=1000")
    result = run(cfg, tmp_path)
    with open(tmp_path / "eval.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(EVAL_COLUMNS) == ["step", "success_rate", "mean_return", "mean_length", "updates", "train_min",
                                             "confirmed_success", "confirmed_return"]
    assert [r[0] for r in rows[1:]] == ["20", "40"], rows
    assert all(len(r) == 8 for r in rows[1:]), rows
    assert [float(r[3]) for r in rows[1:]] == [20.0, 20.0]  # one 20-step episode per eval
    assert int(rows[1][4]) < int(rows[2][4])  # updates began after the seed steps
    assert result["step"] == 40
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["eval"]["step"] in (20, 40)
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "replay.npz").exists()
    assert not (tmp_path / ROLES_FILE).exists() and not list(tmp_path.glob("*.log"))  # no roles were started


# -- 2 and 3. the async runner as a process -------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    """One demo file for the module's async runs: collected by the first, loaded by the others."""
    return tmp_path_factory.mktemp("demos") / "demo.npz"


def launch(run_dir: Path, demos: Path, log: Path, *overrides: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "robolearn.train", "--config-name", "train_state", *TINY_ASYNC, f"demos.path={demos}",
           f"hydra.run.dir={run_dir}", *overrides]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def role_pids(run_dir: Path, module: str | None = None) -> list[int]:
    """The processes started as `python -m <module> --config-dir <run_dir> ...` (one role of this run, or every one)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        at = [i for i, a in enumerate(args[:-1]) if a == "--config-dir" and args[i + 1] == str(run_dir)]
        if at and (module is None or module in args):
            pids.append(int(entry.name))
    return pids


def stop_everything(proc: subprocess.Popen, run_dir: Path) -> None:
    """After a failed test: the launcher and the roles it started, by pid."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in role_pids(run_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def status_step(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "status.json").read_text()).get("step") or 0)
    except (OSError, ValueError):
        return 0


def finished_lines(run_dir: Path, offsets: dict[str, int] | None = None) -> dict:
    """The numbers of each role's last line, from the part of its log after `offsets` (a resumed run's)."""
    texts = {}
    for name in ROLE_LOGS:
        data = (run_dir / f"{name}.log").read_bytes()
        texts[name] = data[(offsets or {}).get(name, 0):].decode(errors="replace")
    out = {"texts": texts}
    actor = re.findall(r"actor actor0 finished: \{'steps': (\d+),.*'transitions_sent': (\d+), 'all_acknowledged': (True|False)\}",
                       texts["actor0"])
    assert actor, texts["actor0"][-3000:]
    out["actor_steps"], out["sent"], out["acknowledged"] = int(actor[-1][0]), int(actor[-1][1]), actor[-1][2] == "True"
    server = re.findall(r"replay server stopped with (\d+) transitions stored \((\d+) accepted in all, (\d+) duplicates dropped, "
                        r"(\d+) messages rejected\)", texts["replay_server"])
    assert server, texts["replay_server"][-3000:]
    out["stored"], out["accepted"], out["duplicates"], out["rejected"] = map(int, server[-1])
    assert "learner finished: {" in texts["learner"], texts["learner"][-3000:]
    evaluator = re.findall(r"evaluator finished: \{.*'ended': 'final snapshot \(step (\d+)\) evaluated'", texts["evaluator"])
    assert evaluator, texts["evaluator"][-3000:]
    out["final_snapshot"] = int(evaluator[-1])
    return out


def eval_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "eval.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.timeout(480)
def test_a_group_stop_and_a_resume_keep_every_acknowledged_transition_exactly_once(tmp_path, demo_file):
    run_dir = tmp_path / "run"
    first_out = tmp_path / "first.out"
    proc = launch(run_dir, demo_file, first_out, "total_steps=100000")
    try:
        wait_for(lambda: proc.poll() is not None or status_step(run_dir) >= 150, timeout_s=180, what="150 env steps stored")
        assert proc.poll() is None, first_out.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)  # the launcher only: it stops the roles in order
        code = proc.wait(timeout=120)
    finally:
        stop_everything(proc, run_dir)
    out = first_out.read_text()
    assert code == 0, out[-3000:]
    assert "SIGTERM received" in out and "Traceback" not in out, out[-3000:]
    assert role_pids(run_dir) == []  # no role outlives its run
    first = finished_lines(run_dir)
    assert first["acknowledged"], first["texts"]["actor0"][-2000:]
    assert first["stored"] >= 150
    assert first["stored"] == first["sent"] == first["actor_steps"] == first["accepted"], first
    assert first["duplicates"] == 0 and first["rejected"] == 0
    assert first["final_snapshot"] == first["stored"]
    assert int(eval_rows(run_dir)[-1]["step"]) == first["stored"]
    assert load_checkpoint(run_dir / "checkpoint.pt")["counters"]["step"] == first["stored"]
    assert status_step(run_dir) == first["stored"]  # what the resumed run counts its steps left from

    # Resume: only the 100 steps left are made, on the same store.
    offsets = {name: (run_dir / f"{name}.log").stat().st_size for name in ROLE_LOGS}
    second_out = tmp_path / "second.out"
    proc = launch(run_dir, demo_file, second_out, f"total_steps={first['stored'] + 100}", f"resume={run_dir}")
    try:
        code = proc.wait(timeout=240)
    finally:
        stop_everything(proc, run_dir)
    out = second_out.read_text()
    assert code == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    second = finished_lines(run_dir, offsets)
    assert "resumed the learner from" in second["texts"]["learner"], second["texts"]["learner"][-3000:]
    assert "resumed the learner from" not in (run_dir / "learner.log").read_text()[:offsets["learner"]]
    assert second["acknowledged"]
    assert 100 <= second["sent"] < 120, second["sent"]  # the steps left, and the episode under way finished
    assert second["stored"] == first["stored"] + second["sent"], (first["stored"], second["sent"], second["stored"])
    assert second["accepted"] == second["stored"]  # nothing lost, nothing twice
    assert second["duplicates"] == 0 and second["rejected"] == 0
    assert second["final_snapshot"] == second["stored"]
    assert int(eval_rows(run_dir)[-1]["step"]) == second["stored"]
    assert load_checkpoint(run_dir / "checkpoint.pt")["counters"]["step"] == second["stored"]
    assert (run_dir / "starts").read_text() == "2"


@pytest.mark.timeout(300)
def test_a_role_that_dies_is_named_with_its_last_log_lines(tmp_path, demo_file):
    run_dir = tmp_path / "run"
    out_path = tmp_path / "launcher.out"
    proc = launch(run_dir, demo_file, out_path, "total_steps=100000")
    try:
        wait_for(lambda: proc.poll() is not None or (run_dir / "status.json").exists(), timeout_s=180, what="the learner training")
        assert proc.poll() is None, out_path.read_text()[-3000:]
        learners = role_pids(run_dir, "robolearn.roles.learner")
        assert len(learners) == 1, learners
        os.kill(learners[0], signal.SIGKILL)
        code = proc.wait(timeout=90)
    finally:
        stop_everything(proc, run_dir)
    out = out_path.read_text()
    assert code not in (0, None), out[-3000:]
    log_path = run_dir / "learner.log"
    message = f"error: the learner exited with code -9; the last lines of {log_path}:\n"
    assert message in out, out[-3000:]
    launcher_part, quoted = out.split(message, 1)
    assert "Traceback" not in launcher_part, launcher_part[-3000:]
    log_tail = log_path.read_text().rstrip().splitlines()
    assert log_tail and quoted.rstrip().splitlines()[-1] == log_tail[-1]  # the log's last lines, quoted
    assert eventually(lambda: role_pids(run_dir) == [], timeout_s=10)  # the other roles were stopped with it


@pytest.mark.timeout(120)
def test_a_corrupt_demo_file_fails_in_the_launcher_before_any_role_starts(tmp_path):
    demos = tmp_path / "demo.npz"
    demos.write_bytes(os.urandom(3000))
    run_dir = tmp_path / "run"
    out_path = tmp_path / "launcher.out"
    proc = launch(run_dir, demos, out_path, "total_steps=400")
    try:
        code = proc.wait(timeout=100)
    finally:
        stop_everything(proc, run_dir)
    out = out_path.read_text()
    assert code == 1, out[-3000:]
    assert f"error: replay file {demos} is corrupt or truncated" in out and "Traceback" not in out, out[-3000:]
    assert not (run_dir / ROLES_FILE).exists()
    assert sorted(p.name for p in run_dir.glob("*.log")) == ["train.log"]  # the launcher's own log only: no role started
