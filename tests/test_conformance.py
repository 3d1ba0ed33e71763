"""The environment contract, checked the same way against every env implementation."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robolearn.config import load_env_config
from robolearn.spec import EnvSpec, InvalidActionError
from tests.env_cases import ENV_CASES


@pytest.fixture(params=ENV_CASES, ids=lambda c: c.name)
def case(request):
    return request.param


@pytest.fixture
def env_and_cfg(case):
    env, cfg = case.build()
    yield env, cfg
    env.close()


def assert_obs_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_spaces_match_spec_from_config(env_and_cfg):
    env, cfg = env_and_cfg
    spec = EnvSpec.from_config(cfg)
    assert env.observation_space == spec.observation_space()
    assert env.action_space == spec.action_space()
    assert env.action_space.shape == (spec.robot.n_joints + 1,)
    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    for name, h, w in spec.cameras:
        assert env.observation_space[name].shape == (h, w, 3)
        assert env.observation_space[name].dtype == np.uint8
    for key in ("joint_pos", "joint_vel"):
        assert env.observation_space[key].shape == (spec.robot.n_joints,)
    assert ("privileged" in env.observation_space.spaces) == cfg.privileged


# Joint positions and velocities are reported as measured, unclipped, so their Box is unbounded.
@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value is")
def test_gymnasium_env_checker(env_and_cfg):
    env, _ = env_and_cfg
    check_env(env.unwrapped, skip_render_check=True)


def test_observations_in_space_with_declared_dtypes(env_and_cfg):
    env, _ = env_and_cfg
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        for key, value in obs.items():
            assert value.dtype == env.observation_space[key].dtype, key
        assert isinstance(reward, float)
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        assert isinstance(info["success"], bool)
        assert set(info["reward_terms"]) >= {"kettle_to_sink", "success_bonus"}
        assert reward == pytest.approx(sum(info["reward_terms"].values()))


def action_size(case) -> int:
    return EnvSpec.from_config(load_env_config(case.base)).action_dim


def test_same_seed_same_rollout_and_different_seeds_differ(case):
    actions = np.random.default_rng(0).uniform(-1, 1, size=(4, action_size(case))).astype(np.float32)

    def rollout(seed):
        env, _ = case.build()
        try:
            frames = [env.reset(seed=seed)[0]]
            frames += [env.step(a)[0] for a in actions]
            return frames
        finally:
            env.close()

    first, again, other = rollout(7), rollout(7), rollout(8)
    for a, b in zip(first, again):
        assert_obs_equal(a, b)
    image_key = next(k for k, v in first[0].items() if v.ndim == 3)
    assert not np.array_equal(first[0][image_key], other[0][image_key])


@pytest.mark.parametrize(
    "bad",
    [
        lambda n: np.full(n, np.nan, dtype=np.float32),
        lambda n: np.array([0, 0, 0, np.inf] + [0] * (n - 4), dtype=np.float32),
        lambda n: np.array([0] * (n - 1) + [-np.inf]),
        lambda n: np.zeros(n - 1, dtype=np.float32),
        lambda n: np.zeros(n + 1, dtype=np.float32),
        lambda n: np.zeros((1, n), dtype=np.float32),
        lambda n: "forward",
        lambda n: None,
    ],
    ids=["nan", "inf", "-inf", "short", "long", "2d", "string", "none"],
)
def test_bad_action_is_a_clear_error_and_moves_nothing(case, bad):
    n = action_size(case)
    bad = bad(n)
    action = np.full(n, 0.5, dtype=np.float32)
    env, _ = case.build()
    reference, _ = case.build()
    try:
        env.reset(seed=3)
        with pytest.raises(InvalidActionError) as err:
            env.step(bad)
        assert "action" in str(err.value)
        # Had the bad action reached the physics, this step would start from a different state.
        reference.reset(seed=3)
        assert_obs_equal(env.step(action)[0], reference.step(action)[0])
    finally:
        env.close()
        reference.close()


def test_out_of_range_action_is_clipped_not_rejected(case):
    env, _ = case.build()
    reference, _ = case.build()
    try:
        env.reset(seed=0)
        reference.reset(seed=0)
        n = action_size(case)
        big = np.full(n, 5.0, dtype=np.float32)
        assert_obs_equal(env.step(big)[0], reference.step(np.ones(n, dtype=np.float32))[0])
    finally:
        env.close()
        reference.close()


def test_truncates_at_time_limit(case):
    env, cfg = case.build(episode_seconds=0.5)
    try:
        env.reset(seed=0)
        hold = np.zeros(action_size(case), dtype=np.float32)
        flags = [env.step(hold)[2:4] for _ in range(cfg.max_episode_steps)]
        assert flags[-1] == (False, True)
        assert all(f == (False, False) for f in flags[:-1])
    finally:
        env.close()
