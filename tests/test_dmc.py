"""dm_control suite tasks from pixels through the same contract, trained by the same learner."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robolearn.config import ConfigError
from robolearn.envs import make_env
from robolearn.spec import InvalidActionError

CARTPOLE = {"factory": "sim.make_dmc_env", "domain": "cartpole", "task": "swingup", "image_size": 64, "action_repeat": 8}


@pytest.fixture
def env():
    env = make_env(CARTPOLE)
    yield env
    env.close()


def test_pixels_contract_and_env_checker(env):
    obs, info = env.reset(seed=0)
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
    assert env.action_space.shape == (1,) and env.action_space.low[0] == -1
    assert "success" in info
    check_env(env.unwrapped, skip_render_check=True)


def test_seeded_and_truncated_not_terminated(env):
    a, _ = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    steps, done = 0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        assert not terminated
        steps += 1
        done = truncated
    assert steps == 1000 // 8  # the suite's 1000 control steps, 8 per env step


def test_bad_action_and_bad_config(env):
    env.reset(seed=0)
    with pytest.raises(InvalidActionError):
        env.step(np.array([np.nan], np.float32))
    with pytest.raises(ConfigError, match="nosuch"):
        make_env({**CARTPOLE, "task": "nosuch"})
    with pytest.raises(ConfigError, match="frameskip"):
        make_env({**CARTPOLE, "frameskip": 2})


def test_learner_trains_on_dmc_pixels(tmp_path):
    from hydra import compose, initialize_config_dir

    from robolearn.paths import CONFIG_DIR
    from robolearn.train import run

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train_dmc", overrides=[
            "env.image_size=48", "total_steps=140", "seed_steps=126", "batch_size=8", "agent.hidden_dim=32",
            "eval.every=1000000", "eval.final=false", "progress=false", "torch_threads=1"])
    run(cfg, tmp_path)
    assert (tmp_path / "checkpoint.pt").exists()


def test_demos_on_a_dmc_env_are_a_config_error_naming_the_key(tmp_path):
    from hydra import compose, initialize_config_dir

    from robolearn.paths import CONFIG_DIR
    from robolearn.train import run

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train_dmc", overrides=["env.image_size=48", "demos.episodes=2", "progress=false", "torch_threads=1"])
    with pytest.raises(ConfigError, match="demos.episodes=2"):
        run(cfg, tmp_path)
