"""Builds an env from a config node. The factory is named in the config, so the core never imports
`sim` or `hardware` directly."""

from __future__ import annotations

import gymnasium as gym
from hydra.utils import get_method

from robolearn.config import ConfigError, load_env_config


def make_env(env_cfg, render_mode: str | None = None) -> gym.Env:
    cfg = load_env_config(env_cfg)
    try:
        factory = get_method(cfg.factory)
    except Exception as exc:  # hydra wraps import errors in several types
        raise ConfigError(f"env.factory: cannot import {cfg.factory!r}: {exc}") from None
    return factory(cfg, render_mode=render_mode)
