"""`gymnasium.make("robolearn/KettleSink-v0", **env keys)`: what another framework sees after `import robolearn`."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robolearn  # noqa: F401  (registers the id)
from robolearn.config import ConfigError
from robolearn.registration import KETTLE_SINK_ID


def first_frame(seed: int, **keys) -> np.ndarray:
    env = gym.make(KETTLE_SINK_ID, **keys)
    try:
        obs, _ = env.reset(seed=seed)
        return obs["front"]
    finally:
        env.close()


def test_importing_robolearn_registers_the_id_without_importing_sim():
    code = ("import sys, gymnasium, robolearn; assert 'robolearn/KettleSink-v0' in gymnasium.registry; "
            "assert 'sim' not in sys.modules and 'hardware' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value is")
def test_made_env_passes_gymnasiums_checker():
    env = gym.make(KETTLE_SINK_ID)
    try:
        check_env(env.unwrapped, skip_render_check=True)
        assert set(env.observation_space.spaces) >= {"front", "wrist", "joint_pos", "joint_vel", "gripper"}
    finally:
        env.close()


def test_randomization_keys_reach_the_env():
    off = {"randomization": {"enabled": False}}
    assert np.array_equal(first_frame(1, **off), first_frame(2, **off))
    # The same key by its dotted name; and on (the default), two seeds draw different scenes.
    assert np.array_equal(first_frame(1, **{"randomization.enabled": False}), first_frame(1, **off))
    assert not np.array_equal(first_frame(1), first_frame(2))


def test_control_mode_and_episode_length_reach_the_env_without_a_second_time_limit():
    env = gym.make(KETTLE_SINK_ID, control_mode="joint_torque", episode_seconds=0.3, cameras=[])
    try:
        assert str(env.unwrapped.cfg.control_mode) == "joint_torque"
        wrapper, chain = env, []
        while isinstance(wrapper, gym.Wrapper):
            chain.append(type(wrapper).__name__)
            wrapper = wrapper.env
        assert "TimeLimit" not in chain
        env.reset(seed=0)
        truncated = [env.step(np.zeros(env.action_space.shape, np.float32))[3] for _ in range(3)]
        assert truncated == [False, False, True]  # 0.3 s at 10 Hz: the env's own limit
    finally:
        env.close()


@pytest.mark.parametrize("keys, named", [({"colour": True}, "colour"),
                                         ({"randomization.camera.jitter": 0.1}, "jitter"),
                                         ({"control_hz": -1.0}, "control_hz")])
def test_a_bad_key_is_a_clear_error(keys, named):
    with pytest.raises(ConfigError, match=named):
        gym.make(KETTLE_SINK_ID, **keys)
