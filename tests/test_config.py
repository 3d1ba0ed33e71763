"""Wrong configs fail at start-up with a message naming the key or value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from robolearn.config import ConfigError, ControlMode, load_env_config
from robolearn.envs import make_env
from robolearn.spec import EnvSpec


def test_defaults_are_valid():
    cfg = load_env_config()
    assert cfg.control_mode is ControlMode.joint_velocity
    assert cfg.substeps == 50
    assert cfg.max_episode_steps == 200


@pytest.mark.parametrize(
    "node, named",
    [
        ({"bogus_key": 1}, "bogus_key"),
        ({"render": {"shadowz": True}}, "shadowz"),
        ({"cameras": [{"name": "front", "widht": 84}]}, "widht"),
        ({"control_mode": "joint_position"}, "joint_position"),
        ({"control_hz": "fast"}, "control_hz"),
        ({"physics_hz": 333}, "physics_hz"),
        ({"velocity_limit_fraction": 1.5}, "velocity_limit_fraction"),
        ({"robot": "kuka"}, "kuka"),
        ({"cameras": [{"name": "front"}, {"name": "front"}]}, "unique"),
    ],
)
def test_invalid_env_config_names_the_problem(node, named):
    with pytest.raises(ConfigError, match=named):
        load_env_config(node)


def test_spec_from_config_alone_scales_actions_by_configured_limits():
    spec = EnvSpec.from_config({"control_mode": "joint_torque", "torque_limit_fraction": 0.25})
    joints, gripper = spec.scale_action([1, -1, 0.5, 0, 0, 0, 1, 0.3])
    assert joints[0] == pytest.approx(87 * 0.25)
    assert joints[1] == pytest.approx(-87 * 0.25)
    assert joints[6] == pytest.approx(12 * 0.25)
    assert gripper == pytest.approx(0.3)
    assert spec.command_unit == "N·m"
    back = spec.normalise_command(joints, gripper)
    assert back[:3].tolist() == pytest.approx([1, -1, 0.5])


def test_unknown_factory_is_a_config_error():
    with pytest.raises(ConfigError, match="no_such_module"):
        make_env({"factory": "no_such_module.make"})


def _eval(*overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "robolearn.eval", "episodes=0", "progress=false", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_eval_command_rejects_unknown_top_level_key():
    result = _eval("episodez=3")
    assert result.returncode != 0
    assert "episodez" in result.stderr


def test_eval_command_rejects_unknown_env_key_even_when_forced():
    result = _eval("+env.gravity=0")
    assert result.returncode != 0
    assert "gravity" in result.stderr
