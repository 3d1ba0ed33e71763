"""Evaluation shared by both runners: the recorder (eval.csv, tensorboard, best.pt) and the asynchronous
evaluator role (the newest snapshot evaluated, older ones skipped, the final one awaited, a restart)."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir

from robolearn import rollout
from robolearn.agents import DrQAgent
from robolearn.roles.config import AsyncConfig
from robolearn.checkpoint import acting_signature, load_checkpoint, save_checkpoint
from robolearn.config import load_typed
from robolearn.roles.evaluator import Evaluator
from robolearn.training.snapshots import SNAPSHOTS, list_snapshots, snapshot_path
from robolearn.paths import CONFIG_DIR
from robolearn.rollout import EpisodeResult, EvalSummary
from robolearn.spec import EnvSpec
from robolearn.training.evaluation import EVAL_COLUMNS, EvalRecorder, EvalSettings, best_and_last, read_eval_csv
from robolearn.training.payload import agent_payload

pytestmark = pytest.mark.timeout(120)

# State only, 1 s episodes (10 steps), a small network, two episodes an evaluation, no video.
TINY = ["env.episode_seconds=1", "agent.hidden_dim=32", "eval.episodes=2", "eval.video=false", "progress=false",
        "torch_threads=1"]


def config(*overrides: str) -> AsyncConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return load_typed(AsyncConfig, compose(config_name="async_state", overrides=[*TINY, *overrides]), "async")


@pytest.fixture(scope="module")
def cfg() -> AsyncConfig:
    return config()


def make_agent(cfg: AsyncConfig, seed: int = 0) -> DrQAgent:
    torch.manual_seed(seed)
    spec = EnvSpec.from_config(cfg.env)
    return DrQAgent(spec.observation_space(), spec.action_space(), cfg.agent)


def payload_of(cfg: AsyncConfig, agent: DrQAgent, step: int, **extra) -> dict:
    spec = EnvSpec.from_config(cfg.env)
    signature = acting_signature(spec.observation_space(), spec.action_space(), agent.critic_only_keys)
    return agent_payload(agent, cfg.agent, cfg.env, signature, {"step": step, "updates": step // 10}, **extra)


def write_snapshot(cfg, run_dir, step: int, agent: DrQAgent, final: bool = False, train_min: float = 1.234):
    """What the learner writes (its side of the protocol)."""
    save_checkpoint(snapshot_path(run_dir, step), payload_of(cfg, agent, step, train_min=train_min, final=final))


class ScriptedEvaluate:
    """rollout.evaluate with chosen results: (successes of 2 episodes, mean return) per call."""

    def __init__(self, *scores):
        self.scores, self.calls = list(scores), []

    def __call__(self, env, policy, episodes, seed=0, video_path=None, progress=True, view=None, **_):
        self.calls.append({"video_path": video_path, "episodes": episodes, "seed": seed, "deterministic": policy.deterministic})
        successes, ret = self.scores.pop(0)
        return EvalSummary([EpisodeResult(seed + i, i < successes, ret, 10 + i) for i in range(2)])


class Scalars:
    def __init__(self):
        self.added = []

    def add_scalar(self, name, value, step):
        self.added.append((name, value, step))


def rows(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


# -- the recorder ------------------------------------------------------------------------------------------
def test_the_recorder_writes_eval_csv_rows_scalars_and_the_video_path(tmp_path, cfg, monkeypatch):
    scripted = ScriptedEvaluate((1, 4.0), (2, 6.0))
    monkeypatch.setattr(rollout, "evaluate", scripted)
    writer = Scalars()
    recorder = EvalRecorder(tmp_path, EvalSettings(episodes=2, seed=77, video=True, confirm_ratio=0), env=None, writer=writer)
    agent = make_agent(cfg)
    first = recorder.evaluate(agent, 100, {"spec": {}}, updates=40, train_min=1.23456)
    recorder.evaluate(agent, 250, {"spec": {}})
    assert first == {"step": 100, "success_rate": 0.5, "mean_return": 4.0, "mean_length": 10.5, "updates": 40, "train_min": 1.23,
                     "confirmed_success": "", "confirmed_return": ""}
    assert rows(tmp_path / "eval.csv") == [list(EVAL_COLUMNS), ["100", "0.5", "4.0", "10.5", "40", "1.23", "", ""],
                                           ["250", "1.0", "6.0", "10.5", "0", "", "", ""]]
    assert [c["video_path"] for c in scripted.calls] == [tmp_path / "videos" / "eval_00000100.mp4",
                                                         tmp_path / "videos" / "eval_00000250.mp4"]
    assert all(c["episodes"] == 2 and c["seed"] == 77 and c["deterministic"] for c in scripted.calls)
    # Every column but the step, at the step; an unknown training time is not a scalar.
    assert writer.added[:5] == [("eval/success_rate", 0.5, 100), ("eval/mean_return", 4.0, 100), ("eval/mean_length", 10.5, 100),
                                ("eval/updates", 40, 100), ("eval/train_min", 1.23, 100)]
    assert {name for name, _, step in writer.added if step == 250} == {"eval/success_rate", "eval/mean_return",
                                                                       "eval/mean_length", "eval/updates"}
    assert recorder.last["step"] == 250


def test_best_pt_is_replaced_only_by_a_policy_at_least_as_good(tmp_path, cfg, monkeypatch):
    monkeypatch.setattr(rollout, "evaluate", ScriptedEvaluate((1, 5.0), (1, 4.0), (0, 99.0), (1, 5.0), (2, 0.0)))
    recorder = EvalRecorder(tmp_path, EvalSettings(video=False, confirm_ratio=0), env=None)
    agent, built = make_agent(cfg), []

    def payload():  # the inline runner's form: made only when best.pt is written
        built.append(True)
        return payload_of(cfg, agent, 0)

    best = tmp_path / "best.pt"
    recorder.evaluate(agent, 10, payload)
    assert load_checkpoint(best)["eval"]["step"] == 10
    written = best.read_bytes()
    recorder.evaluate(agent, 20, payload)  # same success, lower return
    recorder.evaluate(agent, 30, payload)  # lower success, higher return
    assert best.read_bytes() == written and len(built) == 1
    assert recorder.best["step"] == 10 and recorder.last["step"] == 30
    recorder.evaluate(agent, 40, payload)  # a tie goes to the newer policy
    assert load_checkpoint(best)["eval"]["step"] == 40
    recorder.evaluate(agent, 50, payload)
    saved = load_checkpoint(best)
    assert saved["eval"] == recorder.best == {"step": 50, "success_rate": 1.0, "mean_return": 0.0, "mean_length": 10.5,
                                              "updates": 0, "train_min": "", "confirmed_success": "", "confirmed_return": ""}
    assert set(saved) >= {"spec", "agent", "agent_config", "actor_keys", "env_config", "counters"} and len(built) == 3


def test_a_resumed_recorder_keeps_best_pt_unless_it_beats_the_restored_best(tmp_path, cfg, monkeypatch):
    monkeypatch.setattr(rollout, "evaluate", ScriptedEvaluate((1, 9.0)))
    best = {"step": 10, "success_rate": 1.0, "mean_return": 1.0}
    recorder = EvalRecorder(tmp_path, EvalSettings(video=False, confirm_ratio=0), env=None, best=best, last=best)
    recorder.evaluate(make_agent(cfg), 20, {"spec": {}})
    assert not (tmp_path / "best.pt").exists() and recorder.best == best


def test_an_older_eval_csv_keeps_its_own_columns(tmp_path, cfg, monkeypatch):
    monkeypatch.setattr(rollout, "evaluate", ScriptedEvaluate((2, 3.0)))
    path = tmp_path / "eval.csv"
    path.write_text("step,success_rate,mean_return,mean_length\r\n100,0.0,1.5,20.0\r\n")
    EvalRecorder(tmp_path, EvalSettings(video=False, confirm_ratio=0), env=None).evaluate(make_agent(cfg), 200, {"spec": {}}, updates=5, train_min=2.0)
    assert rows(path) == [["step", "success_rate", "mean_return", "mean_length"], ["100", "0.0", "1.5", "20.0"],
                          ["200", "1.0", "3.0", "10.5"]]
    best, last = best_and_last(read_eval_csv(path))
    assert best == last == {"step": 200, "success_rate": 1.0, "mean_return": 3.0, "mean_length": 10.5}


def test_a_would_be_best_is_confirmed_on_more_seeds_and_best_pt_goes_by_the_pooled_score(tmp_path, cfg, monkeypatch):
    scripted = ScriptedEvaluate((2, 5.0), (0, 1.0),  # step 10: 2 of 2, then 0 of 2 more: pooled 0.5
                                (2, 4.0), (2, 4.0),  # step 20: 1.0 >= 0.5, confirmed 1.0: best
                                (1, 9.0),            # step 30: 0.5 < 1.0: neither confirmed nor best
                                (2, 10.0), (0, 0.0))  # step 40: a lucky 2 of 2, pooled 0.5: not best
    monkeypatch.setattr(rollout, "evaluate", scripted)
    recorder = EvalRecorder(tmp_path, EvalSettings(episodes=2, seed=77, video=False, confirm_ratio=1.0), env=None)
    agent = make_agent(cfg)
    first = recorder.evaluate(agent, 10, {"spec": {}, "n": 10})
    assert (first["success_rate"], first["confirmed_success"], first["confirmed_return"]) == (1.0, 0.5, 3.0)
    assert [(c["episodes"], c["seed"], c["video_path"]) for c in scripted.calls] == [(2, 77, None), (2, 79, None)]
    for step in (20, 30, 40):
        recorder.evaluate(agent, step, {"spec": {}, "n": step})
    assert len(scripted.calls) == 7  # step 30 was not confirmed
    assert load_checkpoint(tmp_path / "best.pt")["n"] == 20 and recorder.best["step"] == 20
    written = {row["step"]: row for row in read_eval_csv(tmp_path / "eval.csv")}
    assert written[30]["confirmed_success"] == "" and written[40]["success_rate"] == 1.0 and written[40]["confirmed_success"] == 0.5
    # A restarted evaluator picks the same best from eval.csv, not the lucky step 40.
    assert best_and_last(read_eval_csv(tmp_path / "eval.csv"))[0]["step"] == 20


def test_a_policy_without_a_success_is_not_confirmed(tmp_path, cfg, monkeypatch):
    scripted = ScriptedEvaluate((0, 5.0), (0, 6.0))
    monkeypatch.setattr(rollout, "evaluate", scripted)
    recorder = EvalRecorder(tmp_path, EvalSettings(episodes=2, video=False, confirm_ratio=1.0), env=None)
    for step in (10, 20):
        recorder.evaluate(make_agent(cfg), step, {"spec": {}, "n": step})
    assert len(scripted.calls) == 2 and recorder.best["step"] == 20 and recorder.best["confirmed_success"] == ""
    assert load_checkpoint(tmp_path / "best.pt")["n"] == 20  # the first best.pt exists unconfirmed


def test_best_and_last_from_eval_csv_skip_a_line_cut_short(tmp_path):
    path = tmp_path / "eval.csv"
    path.write_text(",".join(EVAL_COLUMNS) + "\n100,0.5,3.0,10,7,1.0\n200,1.0,2.0,10,9,\n300,0.5,9.0,10,11,2.5\n400,1.0\n")
    best, last = best_and_last(read_eval_csv(path))
    assert (best["step"], best["updates"], best["train_min"]) == (200, 9, "")
    assert (last["step"], last["train_min"]) == (300, 2.5)
    assert best_and_last(read_eval_csv(tmp_path / "none.csv")) == ({}, {})


# -- the evaluator role ------------------------------------------------------------------------------------
def test_the_evaluator_takes_the_newest_snapshot_skips_the_older_and_ends_after_the_final(tmp_path, cfg):
    agents = [make_agent(cfg, seed) for seed in range(3)]
    for step, agent in zip((100, 200, 300), agents):
        write_snapshot(cfg, tmp_path, step, agent, final=step == 300, train_min=step / 100)
    (tmp_path / SNAPSHOTS / "step_000000400.pt.tmp").write_bytes(b"a save under way")
    evaluator = Evaluator(cfg, tmp_path, sleep=lambda s: pytest.fail("no wait: every snapshot was there"))
    try:
        result = evaluator.run()
        evaluated = evaluator.agent.state_dict()
    finally:
        evaluator.close()
    assert (result["evaluations"], result["skipped"]) == (1, 2) and "final snapshot (step 300)" in result["ended"]
    assert sorted(p.name for p in (tmp_path / SNAPSHOTS).iterdir()) == ["step_000000400.pt.tmp"]  # all evaluated ones deleted
    table = read_eval_csv(tmp_path / "eval.csv")
    assert [(r["step"], r["updates"], r["train_min"]) for r in table] == [(300, 30, 3.0)]
    assert table[0]["mean_length"] == 10  # real episodes of 1 s at 10 Hz (the untrained policy never succeeds sooner)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["eval"]["step"] == 300 and best["counters"]["step"] == 300
    for key, value in agents[2].state_dict().items():  # the snapshot's own weights were evaluated
        assert torch.equal(evaluated[key], value), key
    assert not torch.equal(agents[1].state_dict()["actor.net.0.weight"], agents[2].state_dict()["actor.net.0.weight"])


def test_the_evaluator_waits_for_snapshots_as_the_learner_writes_them(tmp_path, cfg):
    agent = make_agent(cfg)
    arriving = [(100, False), (200, True)]
    naps = []

    def sleep(seconds):  # nothing there yet: the learner writes the next snapshot meanwhile
        naps.append(seconds)
        step, final = arriving.pop(0)
        write_snapshot(cfg, tmp_path, step, agent, final=final)

    evaluator = Evaluator(cfg, tmp_path, sleep=sleep)
    try:
        result = evaluator.run()
    finally:
        evaluator.close()
    assert naps == [0.5, 0.5] and result["evaluations"] == 2 and result["skipped"] == 0
    assert [r["step"] for r in read_eval_csv(tmp_path / "eval.csv")] == [100, 200]
    assert list_snapshots(tmp_path / SNAPSHOTS) == []


@pytest.mark.parametrize("final", [True, False])
def test_a_stop_during_an_evaluation_finishes_it_then_waits_for_the_final_snapshot_only_with_eval_final(tmp_path, final):
    cfg = config(f"eval.final={str(final).lower()}")
    agent = make_agent(cfg)
    write_snapshot(cfg, tmp_path, 100, agent)
    evaluator = Evaluator(cfg, tmp_path, sleep=lambda s: pytest.fail("the final snapshot was there"))
    evaluate = evaluator.recorder.evaluate

    def stopped_midway(*args, **kwargs):  # SIGTERM arrives while the learner saves its final snapshot
        if kwargs.get("updates") == 10:
            evaluator.request_stop("SIGTERM")
            write_snapshot(cfg, tmp_path, 200, agent, final=True)
        return evaluate(*args, **kwargs)

    evaluator.recorder.evaluate = stopped_midway
    try:
        result = evaluator.run()
    finally:
        evaluator.close()
    steps = [r["step"] for r in read_eval_csv(tmp_path / "eval.csv")]
    if final:
        assert steps == [100, 200] and "final snapshot (step 200)" in result["ended"]
        assert list_snapshots(tmp_path / SNAPSHOTS) == []
    else:
        assert steps == [100] and "eval.final=false" in result["ended"]
        assert [s for s, _ in list_snapshots(tmp_path / SNAPSHOTS)] == [200]  # not evaluated: the stop came first


def test_without_a_final_snapshot_the_evaluator_gives_up_after_the_wait(tmp_path, cfg, caplog):
    now = {"t": 0.0}

    def sleep(seconds):
        now["t"] += seconds

    evaluator = Evaluator(cfg, tmp_path, final_wait_s=30.0, clock=lambda: now["t"], sleep=sleep)
    try:
        sleep(7.0)
        evaluator.request_stop("SIGTERM")
        result = evaluator.run()
    finally:
        evaluator.close()
    assert now["t"] == pytest.approx(37.0) and result["evaluations"] == 0
    assert "no final snapshot came within 30 s" in result["ended"] and "no final snapshot came within 30 s" in caplog.text
    assert not (tmp_path / "eval.csv").exists()


def test_a_restarted_evaluator_restores_best_from_eval_csv_and_keeps_best_pt(tmp_path, cfg, monkeypatch):
    path = tmp_path / "eval.csv"
    path.write_text(",".join(EVAL_COLUMNS) + "\n100,0.5,3.0,10,10,1.0\n200,1.0,2.0,10,20,2.0\n300,0.5,9.0,10,30,3.0\n")
    (tmp_path / "best.pt").write_bytes(b"the best of the first start")
    # Step 400: 0.5; step 500: 1.0, then confirmed on more seeds (1.0 again).
    monkeypatch.setattr(rollout, "evaluate", ScriptedEvaluate((1, 50.0), (2, 2.5), (2, 2.5)))
    agent = make_agent(cfg)
    write_snapshot(cfg, tmp_path, 400, agent)
    evaluator = Evaluator(cfg, tmp_path)
    try:
        assert evaluator.recorder.best["step"] == 200 and evaluator.recorder.last["step"] == 300
        assert evaluator.evaluate_snapshot(*evaluator.take_newest()) is False
        assert (tmp_path / "best.pt").read_bytes() == b"the best of the first start"  # 0.5 < 1.0: not better
        write_snapshot(cfg, tmp_path, 500, agent, final=True)
        assert evaluator.evaluate_snapshot(*evaluator.take_newest()) is True
    finally:
        evaluator.close()
    assert load_checkpoint(tmp_path / "best.pt")["eval"]["step"] == 500
    assert [r["step"] for r in read_eval_csv(path)] == [100, 200, 300, 400, 500]


def test_the_evaluator_process_evaluates_the_final_snapshot_and_exits_cleanly(tmp_path, cfg):
    write_snapshot(cfg, tmp_path, 100, make_agent(cfg), final=True)
    cmd = [sys.executable, "-m", "robolearn.roles.evaluator", "--config-name", "async_state", f"run_dir={tmp_path}", *TINY,
           "eval.episodes=1", "hydra/job_logging=stdout"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "evaluator finished: {'evaluations': 1, 'skipped': 0" in done.stdout, done.stdout[-3000:]
    assert [(r["step"], r["mean_length"]) for r in read_eval_csv(tmp_path / "eval.csv")] == [(100, 10)]
    assert list_snapshots(tmp_path / SNAPSHOTS) == [] and (tmp_path / "best.pt").is_file()
    assert any((tmp_path / "tb").iterdir())  # its tensorboard events


def test_the_runs_summary_reports_the_row_best_pt_holds(tmp_path):
    from robolearn.bench.runs_summary import summarise

    (tmp_path / "eval.csv").write_text(",".join(EVAL_COLUMNS) + "\n100,0.5,3.0,10,7,1.0,,\n200,0.9,2.0,10,9,2.0,0.7,1.5\n"
                                       "300,0.85,1.0,10,11,3.0,0.8,1.0\n400,0.6,9.0,10,13,4.0,,\n")
    summary = summarise(tmp_path)
    assert (summary["first_step"], summary["first_min"]) == (200, 2.0)  # the curve: success on `episodes`
    assert (summary["best_step"], summary["best"], summary["best_confirmed"]) == (300, 0.85, 0.8)
    assert summary["last"] == 0.6 and summary["evaluations"] == 4
