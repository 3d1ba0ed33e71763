"""How an episode ended (the sim's info["outcome"]), as evaluations and the transfer benchmark count it."""

from __future__ import annotations

import numpy as np
import pytest

from robolearn.rollout import EvalSummary, EvaluatedEpisode, evaluate, run_episode
from sim import make_kettle_sink_env
from sim.expert import KettleSinkExpert


def small_env(**overrides):
    return make_kettle_sink_env(cameras=[{"name": "front", "width": 16, "height": 16}], **overrides)


@pytest.fixture
def env():
    env = small_env()
    yield env
    env.close()


class Still:
    def reset(self):
        pass

    def act(self, obs):
        return np.zeros(8, np.float32)


def test_the_expert_lifts_then_places_and_an_arm_held_still_never_lifts(env):
    seen = []
    episode = run_episode(env, KettleSinkExpert(env).act, seed=3, on_start=lambda obs, info: seen.append(info["outcome"]),
                          record=lambda step: seen.append(step.info["outcome"]))
    assert episode.success and seen[0] == "not_lifted" and seen[-1] == "success"
    # picked up on the way: not_lifted, then lifted until it rests in the sink
    changes = [o for i, o in enumerate(seen) if i == 0 or o != seen[i - 1]]
    assert changes == ["not_lifted", "lifted", "success"], changes

    short = small_env(episode_seconds=3.0)
    try:
        summary = evaluate(short, Still(), episodes=2, seed=5, progress=False)
    finally:
        short.close()
    assert summary.outcomes == {"not_lifted": 2}
    assert summary.as_dict()["per_episode"][0]["outcome"] == "not_lifted"


def test_a_kettle_off_the_counter_ends_as_fell(env):
    env.reset(seed=1)
    sim = env.unwrapped
    sim.data.qpos[sim.scene.kettle_qpos : sim.scene.kettle_qpos + 3] = [2.0, 2.0, 0.5]  # far off the counter
    _, _, terminated, _, info = env.step(np.zeros(8, np.float32))
    assert terminated and info["kettle_fell"] and info["outcome"] == "fell"
    # picked up (it was 0.5 m up) but off the counter: a fall is what it ended as
    assert sim.outcome(success=False) == "fell"


def test_a_summary_counts_only_the_outcomes_an_env_reported():
    summary = EvalSummary([EvaluatedEpisode(0, True, 1.0, 5, "success"), EvaluatedEpisode(1, False, 0.0, 9, "lifted"),
                           EvaluatedEpisode(2, False, 0.0, 9, "lifted"), EvaluatedEpisode(3, False, 0.0, 9, "")])
    assert summary.outcomes == {"lifted": 2, "success": 1}
