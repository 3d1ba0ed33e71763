"""Builds an env from a config node. The factory is named in the config, so the core never imports
`sim` or `hardware` directly; each factory validates the rest of the node against its own schema."""

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
    return factory(env_cfg, render_mode=render_mode)
