"""Env factories the conformance suite runs against. The hardware env (fake drivers) joins here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym

from robolearn.config import EnvConfig, load_env_config
from tests.hardware_cases import real_fake_config, real_fake_env, real_ur_config


@dataclass(frozen=True)
class EnvCase:
    name: str
    make: Callable[[EnvConfig], gym.Env]
    base: dict[str, Any]

    def build(self, **overrides: Any) -> tuple[gym.Env, EnvConfig]:
        cfg = load_env_config({**self.base, **overrides})
        return self.make(cfg), cfg


def _sim(cfg: EnvConfig) -> gym.Env:
    from sim import make_kettle_sink_env

    return make_kettle_sink_env(cfg)


ENV_CASES = [
    EnvCase("sim-joint_velocity", _sim, {"control_mode": "joint_velocity"}),
    EnvCase("sim-joint_torque", _sim, {"control_mode": "joint_torque"}),
    EnvCase("sim-privileged", _sim, {"privileged": True, "cameras": [{"name": "front", "width": 64, "height": 48}]}),
    EnvCase("sim-ur5e-joint_velocity", _sim, {"robot": "ur5e", "control_mode": "joint_velocity"}),
    EnvCase("sim-ur5e-joint_torque", _sim, {"robot": "ur5e", "control_mode": "joint_torque"}),
    EnvCase("real_fake-joint_velocity", real_fake_env, real_fake_config()),
    EnvCase("real_fake-joint_torque", real_fake_env, {**real_fake_config(), "control_mode": "joint_torque"}),
    EnvCase("real_ur5e-joint_velocity", real_fake_env, real_ur_config()),
    EnvCase("real_ur5e-joint_torque", real_fake_env, real_ur_config("env.control_mode=joint_torque", "env.hardware.driver.torque_control=true")),
]
