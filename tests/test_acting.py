"""Acting on an arm: the policy's threads, warm-up and latency (robolearn/agents/policy.py), and the actor
role on the fake arm: it holds and waits for a person on a latched fault, and keeps its name and spill
folder across restarts. Time runs on virtual clocks: no wall-clock windows."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hydra import compose, initialize_config_dir

from hardware.timing import VirtualClock
from robolearn.agents.policy import ActingConfig, LatencyMeter, PolicyTooSlow, prepare_for_control
from robolearn.paths import CONFIG_DIR
from tests.transport_cases import free_port

SPACE = spaces.Dict({"front": spaces.Box(0, 255, (8, 8, 3), np.uint8), "joint_pos": spaces.Box(-4, 4, (7,), np.float32)})


class SlowPolicy:
    """A policy whose act() takes `seconds` on a virtual clock."""

    def __init__(self, clock: VirtualClock, seconds: float):
        self.clock, self.seconds = clock, seconds
        self.calls: list[dict] = []
        self.resets = 0

    def reset(self):
        self.resets += 1

    def act(self, obs):
        self.calls.append(obs)
        self.clock.advance(self.seconds)
        return np.zeros(8, np.float32)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_policy_is_given_its_threads_warmed_up_on_a_zero_observation_and_timed(restore_threads):
    torch.set_num_threads(2)
    clock = VirtualClock()
    policy = SlowPolicy(clock, 0.012)
    figures = prepare_for_control(policy, SPACE, 0.1, ActingConfig(threads=1, warmup_calls=3, latency_calls=10), now=clock.now)
    assert torch.get_num_threads() == 1 and figures["threads"] == 1
    assert len(policy.calls) == 3 + 10
    assert all(not obs["front"].any() and not obs["joint_pos"].any() for obs in policy.calls)  # zeros of the right shapes
    assert policy.calls[0]["front"].shape == (8, 8, 3) and policy.calls[0]["front"].dtype == np.uint8
    assert policy.resets == 2  # before, and after: the frame stack forgets the warm-up
    assert figures["calls"] == 10 and figures["p50_ms"] == pytest.approx(12.0) and figures["p99_ms"] == pytest.approx(12.0)
    assert figures["period_ms"] == 100.0 and figures["ok"] and figures["calls_over_period"] == 0


def test_a_policy_slower_than_its_share_of_the_period_is_refused_naming_the_figure(restore_threads):
    clock = VirtualClock()
    with pytest.raises(PolicyTooSlow, match=r"p99 latency 70\.0 ms .* above 0\.5 of the 100 ms control period \(50 ms\)"):
        prepare_for_control(SlowPolicy(clock, 0.07), SPACE, 0.1, ActingConfig(), now=clock.now)
    # Without refusing: the figures say so, for a report.
    figures = prepare_for_control(SlowPolicy(clock, 0.07), SPACE, 0.1, ActingConfig(max_period_fraction=0.8), now=clock.now)
    assert figures["ok"] and figures["p99_share_of_period"] == pytest.approx(0.7)


def test_the_latency_meter_counts_calls_over_the_period():
    clock = VirtualClock()
    meter = LatencyMeter(clock.now)
    for seconds in [0.01] * 98 + [0.2, 0.3]:
        meter.time(clock.advance, seconds)
    summary = meter.summary(0.1)
    assert summary["calls"] == 100 and summary["p50_ms"] == pytest.approx(10.0) and summary["max_ms"] == pytest.approx(300.0)
    assert summary["calls_over_period"] == 2


# -- the actor on the fake arm ------------------------------------------------------------------------------------
def actor_config(tmp_path, *overrides):
    from robolearn.roles.config import AsyncConfig
    from robolearn.config import load_typed

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="async_real_fake", overrides=[
            f"run_dir={tmp_path}", f"transport.port={free_port()}", f"transport.weights_port={free_port()}",
            "transport.insecure_no_keys=true", "env.hardware.loop.clock=virtual", "env.episode_seconds=1", "env.hardware.resets.joint_noise_rad=0.0",
            "actor.on_learner_loss=continue", "actor.flush_timeout_s=0.2", "agent.hidden_dim=32", "agent.feature_dim=16", *overrides])
    return load_typed(AsyncConfig, cfg, "async")


class ScriptedOperator:
    """Answers the fault prompt: `answers` in order, one per poll (None: nothing typed yet)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.said: list[str] = []

    def poll(self):
        return self.answers.pop(0) if self.answers else None

    def say(self, message):
        self.said.append(message)


def reflex_at_step(env, step: int):
    """The fake arm reports a collision reflex at the given step of each episode (latched by the safety layer)."""
    real = env.step
    count = {"n": 0}

    def stepped(action):
        count["n"] += 1
        if count["n"] == step:
            env.driver.inject_reflex("cartesian reflex: collision detected")
        return real(action)

    env.step = stepped
    return count


def test_an_arm_actor_holds_on_a_fault_and_goes_on_once_a_person_clears_it(tmp_path, restore_threads):
    from robolearn.roles.actor import Actor

    torch.set_num_threads(2)
    cfg = actor_config(tmp_path, "actor.total_steps=15")
    operator = ScriptedOperator([None, None, "\n"])
    actor = Actor(cfg, operator=operator)
    try:
        env = actor.env.unwrapped
        assert torch.get_num_threads() == 1 and actor.warmup["calls"] == 5  # threads and warm-up before the first step
        holds = env.safety.counters["holds"]
        reflex_at_step(env, 3)
        result = actor.run()
    finally:
        actor.close()
    assert result["outcome"] == "done" and result["faults"] == 1 and result["fault"] is None
    assert actor.events[0] == "fault: driver: fake: cartesian reflex: collision detected"
    assert actor.events[1] == "fault: cleared by the operator"
    assert "Check the arm" in operator.said[0]
    assert env.safety.counters["holds"] > holds and not env.latched
    assert result["steps"] >= 15  # it acted on after the fault: a new episode from a reset
    assert result["policy_latency"]["steps"]["calls"] == result["steps"]


def test_an_arm_actor_without_a_terminal_holds_then_exits_with_the_fault_named(tmp_path):
    from robolearn.roles.actor import Actor

    actor = Actor(actor_config(tmp_path, "actor.fault_wait_s=30"), operator=None)
    try:
        env = actor.env.unwrapped
        reflex_at_step(env, 4)
        result = actor.run()
        waited = env.clock.now()
    finally:
        actor.close()
    assert result["outcome"] == "fault" and result["fault"] == "driver: fake: cartesian reflex: collision detected"
    assert actor.events == ["fault: driver: fake: cartesian reflex: collision detected", "fault: nobody cleared it"]
    assert result["steps"] == 4 and waited >= 30.0  # held (virtual) 30 s, no step after the fault
    assert env.latched  # never cleared by the actor itself


def test_an_operator_who_answers_q_stops_the_actor_and_a_stop_request_ends_the_wait(tmp_path):
    from robolearn.roles.actor import Actor

    actor = Actor(actor_config(tmp_path), operator=ScriptedOperator(["q\n"]))
    try:
        reflex_at_step(actor.env.unwrapped, 2)
        assert actor.run()["outcome"] == "fault" and actor.events[-1] == "fault: the operator stopped"
    finally:
        actor.close()
    stop = threading.Event()
    actor = Actor(actor_config(tmp_path), operator=ScriptedOperator([]), stop=stop)
    try:
        env = actor.env.unwrapped
        reflex_at_step(env, 2)
        real_sleep = actor._sleep

        def sleep(seconds):
            if env.clock.now() > 100:
                stop.set()  # what SIGTERM does
            real_sleep(seconds)

        actor._sleep = sleep
        assert actor.run()["outcome"] == "fault"  # nobody answered; SIGTERM (the stop event) ends the wait
    finally:
        actor.close()


def test_an_actor_keeps_its_name_and_spill_folder_across_restarts(tmp_path):
    from robolearn.roles.actor import Actor, default_actor_name

    cfg = actor_config(tmp_path, "actor.total_steps=12")
    name = default_actor_name(cfg.env)
    assert name == default_actor_name(cfg.env) == f"{socket.gethostname().split('.')[0]}-panda-fake"
    first = Actor(cfg)
    try:
        first.run()
    finally:
        assert not first.close()  # no server: nothing acknowledged; kept in the spill folder
    second = Actor(actor_config(tmp_path, "actor.total_steps=12"))
    try:
        assert second.name == first.name == name
        assert second.client.outbox.spill_dir == first.client.outbox.spill_dir == tmp_path / "spill" / name
        assert second.client.restored > 0  # what the first start left unacknowledged is sent first by the next
    finally:
        second.close()
    sim = default_actor_name({"factory": "sim.make_env"}, seed=3)
    assert sim.endswith("-sim-seed3") and default_actor_name({"factory": "sim.make_env"}, seed=3) == sim


def test_a_refused_reset_keeps_the_arm_held_and_asks_again(tmp_path):
    from robolearn.roles.actor import Actor

    operator = ScriptedOperator(["\n", None, "\n"])
    operator.discarded = 0
    operator.discard_typed = lambda: setattr(operator, "discarded", operator.discarded + 1)
    actor = Actor(actor_config(tmp_path, "actor.total_steps=12"), operator=operator)
    try:
        env = actor.env.unwrapped
        reflex_at_step(env, 2)
        real_clear = env.clear_fault
        tries = []

        def clear_fault(**kwargs):
            tries.append(kwargs)
            if len(tries) == 1:
                raise RuntimeError("robot reports: reflex; guide the arm back by hand first")
            real_clear(**kwargs)

        env.clear_fault = clear_fault
        result = actor.run()
    finally:
        actor.close()
    assert operator.discarded == 1  # what was typed before the fault does not answer the prompt
    assert len(tries) == 2 and tries[0] == {"recover_robot_errors": True, "reconnect": True}
    assert "reset refused: robot reports: reflex" in operator.said[1] and result["outcome"] == "done"
