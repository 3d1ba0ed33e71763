"""Shared set-up for the hardware tests: the real-fake env config as Hydra composes it, and helpers."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@cache
def _composed(env: str, overrides: tuple[str, ...]) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose(config_name=None, overrides=[f"+env={env}", *overrides])
    return OmegaConf.to_container(cfg.env, resolve=True)


def real_fake_config(*overrides: str, virtual: bool = True, env: str = "real_fake") -> dict[str, Any]:
    """configs/env/real_fake.yaml (or another real-robot env file) composed with its Hydra defaults,
    a fresh copy.

    virtual: run on a virtual clock (deterministic and instant), as the conformance suite needs.
    """
    cfg = copy.deepcopy(_composed(env, tuple(overrides)))
    if virtual:
        cfg["hardware"]["loop"]["clock"] = "virtual"
    return cfg


def real_ur_config(*overrides: str, virtual: bool = True) -> dict[str, Any]:
    """configs/env/real_ur_simulated.yaml: a UR5e on the UR driver against the simulated controller."""
    return real_fake_config(*overrides, virtual=virtual, env="real_ur_simulated")


def real_fake_env(cfg):
    from hardware import make_real_robot_env

    return make_real_robot_env(cfg)
