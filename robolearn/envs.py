"""Builds an env from a config node. The factory is named in the config, so the core never imports
`sim` or `hardware` directly; each factory validates the rest of the node against its own schema. An
`env.reward.source` other than `env` wraps the env in the success classifier's reward (robolearn/reward_source.py)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from hydra.utils import get_method

from robolearn.config import ConfigError, EnvConfig


def make_env(env_cfg: Any, render_mode: str | None = None) -> gym.Env:
    if isinstance(env_cfg, EnvConfig):
        path = env_cfg.factory
    else:
        path = (env_cfg or {}).get("factory", EnvConfig.factory)
    try:
        factory = get_method(path)
    except Exception as exc:  # hydra wraps import errors in several types
        raise ConfigError(f"env.factory: cannot import {path!r}: {exc}") from None
    env = factory(env_cfg, render_mode=render_mode)
    cfg = _classifier_reward_config(env_cfg)
    if cfg is not None:
        from robolearn.reward_source import ClassifierReward
        from robolearn.spec import EnvSpec

        env = ClassifierReward(env, cfg.reward, cfg.task, EnvSpec.from_config(cfg).robot)
    return env


def _classifier_reward_config(env_cfg: Any) -> EnvConfig | None:
    """The kettle env's config when its `env.reward.source` asks for the classifier (dm_control's have no `reward`)."""
    from robolearn.config import load_env_config

    if isinstance(env_cfg, EnvConfig):
        return env_cfg if env_cfg.reward.uses_classifier else None
    node = env_cfg.get("reward") if hasattr(env_cfg, "get") else None
    if not node or (node.get("source", "env") == "env"):
        return None
    return load_env_config(env_cfg)
