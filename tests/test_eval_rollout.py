"""The one episode loop and its hooks, on a tiny counting env (no sim): what each hook sees and when."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robolearn.policies import SeedActions, ZeroPolicy
from robolearn.rollout import EpisodeResult, EvalSummary, evaluate, run_episode


class CountingEnv(gym.Env):
    """obs["t"] counts steps; reward 1 a step; terminates (success) after `length` steps."""

    metadata = {"render_fps": 10}

    def __init__(self, length: int = 5):
        self.length = length
        self.observation_space = spaces.Dict({"t": spaces.Box(0, 100, (1,), np.float32)})
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)
        self.seeds: list = []

    def reset(self, seed=None, options=None):
        self.t = 0
        self.seeds.append(seed)
        return {"t": np.array([0.0], np.float32)}, {"reset": True}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        return {"t": np.array([self.t], np.float32)}, 1.0, done, False, {"success": done}


def test_hooks_run_in_order_and_the_episode_ends_with_the_env():
    env, calls = CountingEnv(3), []
    episode = run_episode(
        env, lambda obs: (calls.append(("act", int(obs["t"][0]))), np.zeros(2, np.float32))[1], seed=7,
        observe=lambda obs: {"t": obs["t"] * 10},
        on_start=lambda obs, info: calls.append(("start", int(obs["t"][0]), info["reset"])),
        record=lambda step: calls.append(("record", int(step.obs["t"][0]), int(step.next_obs["t"][0]))),
        before_step=lambda: calls.append(("before",)) and None,
        on_step=lambda step: calls.append(("step", step.done)) and None,
        on_end=lambda ep: calls.append(("end", ep.length)))
    assert env.seeds == [7]
    assert calls[:5] == [("start", 0, True), ("before",), ("act", 0), ("record", 0, 10), ("step", False)]
    assert calls[-2:] == [("step", True), ("end", 3)]
    assert episode.finished and episode.ended_by == "terminated" and episode.success
    assert episode.length == 3 and episode.episode_return == 3.0 and int(episode.obs["t"][0]) == 30


def test_before_step_stops_the_episode_unfinished():
    steps = []
    episode = run_episode(CountingEnv(10), lambda obs: np.zeros(2, np.float32), record=steps.append,
                          before_step=lambda: "total_steps" if len(steps) >= 4 else None)
    assert episode.ended_by == "total_steps" and not episode.finished and episode.length == 4 and len(steps) == 4
    assert not episode.success


def test_on_step_ends_the_episode_after_that_step():
    episode = run_episode(CountingEnv(10), lambda obs: np.zeros(2, np.float32),
                          on_step=lambda step: "safety" if step.next_obs["t"][0] == 2 else None)
    assert episode.ended_by == "safety" and episode.length == 2


def test_the_env_ending_wins_over_a_hook_reason_on_the_same_step():
    episode = run_episode(CountingEnv(2), lambda obs: np.zeros(2, np.float32), on_step=lambda step: "quit")
    assert episode.length == 1 and episode.ended_by == "quit"
    episode = run_episode(CountingEnv(1), lambda obs: np.zeros(2, np.float32), on_step=lambda step: "quit")
    assert episode.ended_by == "terminated"


def test_evaluate_seeds_episodes_and_summarises():
    env = CountingEnv(4)
    summary = evaluate(env, ZeroPolicy(env), episodes=3, seed=100, progress=False)
    assert env.seeds == [100, 101, 102]
    assert summary.as_dict()["per_episode"][0] == {"seed": 100, "success": True, "episode_return": 4.0, "length": 4,
                                                  "outcome": ""}  # an env that says nothing of how it ended
    assert summary.outcomes == {}
    assert (summary.success_rate, summary.mean_return, summary.mean_length) == (1.0, 4.0, 4.0)


def test_a_summary_takes_extended_episode_records():
    """A deploy episode is an EpisodeResult with more fields; the summary's statistics read the shared ones."""

    @dataclass
    class ArmEpisode(EpisodeResult):
        ended_by: str = ""

    summary = EvalSummary([ArmEpisode(0, True, 2.0, 10, "terminated"), ArmEpisode(1, False, 0.0, 20, "safety")])
    assert (summary.success_rate, summary.mean_return, summary.mean_length) == (0.5, 1.0, 15.0)
    assert summary.as_dict()["per_episode"][1]["ended_by"] == "safety"


def test_seed_actions_act_randomly_while_asked_and_keep_the_policy_acting():
    env, acted = CountingEnv(), []

    class Recording(ZeroPolicy):
        def act(self, obs):
            acted.append(obs)
            return super().act(obs)

    random = {"on": True}
    policy = SeedActions(Recording(env), np.random.default_rng(0), lambda: random["on"])
    first = policy.act({"t": 0})
    random["on"] = False
    second = policy.act({"t": 1})
    assert len(acted) == 2  # the policy acted both times (its frame stack stays current)
    assert first.dtype == np.float32 and not np.array_equal(first, second)
    assert second.tolist() == [0.0, -1.0]
