"""Training in sim: exact resume, demos switch, NaN stop, checkpoint and replay errors, checkpoint eval."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from hydra.errors import ConfigCompositionException

from robolearn.agents.divergence import TrainingDiverged
from robolearn.checkpoint import CheckpointError, load_checkpoint
from robolearn.config import load_typed
from robolearn.paths import CONFIG_DIR
from robolearn.replay import ReplayFormatError, ReplayStorage
from robolearn.train import TrainConfig, Workspace, run
from robolearn.training.evaluation import read_eval_csv, score

# A tiny, fast state-only run: 2 s episodes (20 steps), small networks, no evaluation.
TINY = [
    "env.episode_seconds=2", "agent.hidden_dim=32", "batch_size=16", "seed_steps=40", "utd=1",
    "eval.every=1000000", "eval.final=false", "progress=false", "demos.episodes=0", "torch_threads=1",
    "replay.capacity=2000", "runner=inline",
]


def config(*overrides: str) -> TrainConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return load_typed(TrainConfig, compose(config_name="train_state", overrides=[*TINY, *overrides]), "train")


def agent_state(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoint.pt")["agent"]["model"]


def test_resume_continues_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run(config("total_steps=120", "save_every=1000"), straight)
    run(config("total_steps=60", "save_every=1000"), split)  # stops at an episode end, saves
    run(config("total_steps=120", "save_every=1000", f"resume={split}"), split)
    a, b = agent_state(straight), agent_state(split)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    space_args = (load_checkpoint(straight)["counters"], load_checkpoint(split)["counters"])
    assert space_args[0] == space_args[1]


def test_demos_are_collected_once_then_loaded(tmp_path):
    demos = tmp_path / "demos.npz"
    cfg = config("total_steps=20", "demos.episodes=2", f"demos.path={demos}")
    workspace = Workspace(cfg, tmp_path / "a")
    try:
        assert demos.exists()
        assert workspace.demos.episodes_added == 2
        assert workspace.sampler.demo_ratio == 0.5
    finally:
        workspace.close()
    mtime = demos.stat().st_mtime_ns
    workspace = Workspace(cfg, tmp_path / "b")
    workspace.close()
    assert demos.stat().st_mtime_ns == mtime  # loaded, not collected again


def test_nan_loss_stops_with_step_and_metric_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    cfg = config("total_steps=200", "save_every=40")
    workspace = Workspace(cfg, tmp_path)
    real_update = workspace.agent.update
    calls = {"n": 0}

    def update(batch, noise=None):
        calls["n"] += 1
        metrics = real_update(batch, noise)
        if calls["n"] == 70:
            metrics["critic_loss"] = math.nan
        return metrics

    monkeypatch.setattr(workspace.agent, "update", update)
    try:
        with pytest.raises(TrainingDiverged, match=r"step \d+ .*critic_loss = nan"):
            workspace.train()
    finally:
        workspace.close()
    good = load_checkpoint(tmp_path / "checkpoint.pt")
    # Updates start at step 40, so update 70 runs at step 109; saves happened at steps 40 and 80.
    assert good["counters"]["step"] == 80
    assert all(torch.isfinite(v).all() for v in good["agent"]["model"].values() if v.is_floating_point())


def test_bad_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Workspace(config(f"resume={tmp_path / 'nowhere'}"), tmp_path / "x")
    run_dir = tmp_path / "run"
    run(config("total_steps=40"), run_dir)
    # A checkpoint trained on another observation spec (here: without privileged state).
    with pytest.raises(CheckpointError, match="different observation/action spec"):
        Workspace(config("env.privileged=false", f"resume={run_dir}"), tmp_path / "y")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(tmp_path / "junk")


def test_corrupt_replay_on_resume_fails_clearly(tmp_path):
    run_dir = tmp_path / "run"
    run(config("total_steps=40"), run_dir)
    replay = run_dir / "replay.npz"
    replay.write_bytes(replay.read_bytes()[:1000])
    with pytest.raises(ReplayFormatError, match="corrupt or truncated"):
        Workspace(config(f"resume={run_dir}"), run_dir)


def test_unknown_agent_key_and_bad_loop_values_are_named(tmp_path):
    # The agent's keys are AgentConfig's: a misspelt one fails as the config is composed, even when forced.
    with pytest.raises((ValueError, ConfigCompositionException), match="hiden_dim"):
        Workspace(config("+agent.hiden_dim=3"), tmp_path)
    with pytest.raises(ValueError, match="utd"):
        Workspace(config("utd=0"), tmp_path)


def test_trained_checkpoint_evaluates_through_the_eval_command(tmp_path):
    from robolearn.eval import run as eval_run

    run_dir = tmp_path / "run"
    run(config("total_steps=60"), run_dir)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=[
            "env=kettle_sink_state", "env.episode_seconds=2", "policy=checkpoint", f"policy.path={run_dir}",
            "episodes=2", "progress=false"])
    result = eval_run(cfg)
    assert result["episodes"] == 2 and result["mean_length"] == 20.0


def test_replay_saved_with_the_checkpoint_holds_every_transition(tmp_path):
    run(config("total_steps=60"), tmp_path)
    cfg = config()
    store = ReplayStorage.load(tmp_path / "replay.npz", *_spaces(cfg))
    assert store.transitions_added == 60 and store.episodes_added == 3


def _spaces(cfg):
    from robolearn.spec import EnvSpec

    spec = EnvSpec.from_config(cfg.env)
    return spec.observation_space(), spec.action_space().shape


def test_a_time_limit_ends_the_run_with_a_checkpoint_and_a_final_eval(tmp_path):
    # A 0.5 s budget ends a 100k-step run early; the run saves and evaluates as it would at total_steps.
    result = run(config("total_steps=100000", "save_every=1000000", "time_limit_min=0.0083", "eval.final=true",
                        "eval.episodes=1"), tmp_path)
    counters = load_checkpoint(tmp_path / "checkpoint.pt")["counters"]
    assert 0 < counters["step"] < 100000
    assert result["step"] == counters["step"]
    assert (tmp_path / "eval.csv").read_text().splitlines()[-1].startswith(f"{counters['step']},")


def test_a_time_limit_mid_episode_finishes_the_episode_and_resumes_bit_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run(config("total_steps=120", "save_every=1000"), straight)
    workspace = Workspace(config("total_steps=120", "save_every=1000", "time_limit_min=0.8333"), split)  # 50 "s"
    workspace.clock = lambda: float(workspace.step)  # one virtual second per env step: the limit falls at step 50
    try:
        workspace.train()
    finally:
        workspace.close()
    counters = load_checkpoint(split)["counters"]
    assert counters["step"] == 60 and counters["episode"] == 3  # the episode under way was finished
    assert not ReplayStorage.load(split / "replay.npz", workspace.replay.observation_space, (8,)).has_open_episode(0)
    run(config("total_steps=120", "save_every=1000", f"resume={split}"), split)
    a, b = agent_state(straight), agent_state(split)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert load_checkpoint(straight)["counters"] == load_checkpoint(split)["counters"]


def test_sigterm_saves_at_the_episode_end_and_the_run_resumes_bit_exactly(tmp_path, monkeypatch):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run(config("total_steps=120", "save_every=1000"), straight)
    workspace = Workspace(config("total_steps=120", "save_every=1000"), split)
    real_step = workspace.env.step

    def step(action):
        if workspace.step == 45:
            os.kill(os.getpid(), signal.SIGTERM)  # as `timeout` or a scheduler stops a run
        return real_step(action)

    monkeypatch.setattr(workspace.env, "step", step)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        workspace.train()
    finally:
        workspace.close()
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is the run's only while it runs
    assert "SIGTERM" in workspace.stop_reason
    assert load_checkpoint(split)["counters"]["step"] == 60
    run(config("total_steps=120", "save_every=1000", f"resume={split}"), split)
    a, b = agent_state(straight), agent_state(split)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_best_checkpoint_is_kept_by_evaluation_and_evaluates(tmp_path):
    run(config("total_steps=60", "eval.every=20", "eval.episodes=1", "eval.video=false"), tmp_path)
    best = load_checkpoint(tmp_path / "best.pt")
    rows = read_eval_csv(tmp_path / "eval.csv")
    assert [r["step"] for r in rows] == [20, 40, 60]  # the final eval is not repeated at the same step
    top = max(rows, key=lambda r: (score(r), r["step"]))  # by the confirmed score where there is one; ties: the newer
    assert best["eval"]["step"] == top["step"] and score(best["eval"]) == score(top)
