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


# -- every core command's config is a registered dataclass: a wrong key or value fails at start-up ----------
def _composed(config_name: str, *overrides: str):
    from hydra import compose, initialize_config_dir

    from robolearn.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def _schemas():
    from robolearn.roles.config import AsyncConfig
    from robolearn.eval import EvalConfig
    from robolearn.pretrain import PretrainConfig
    from robolearn.train import TrainConfig
    from robolearn.view import ViewConfig

    return {"train": TrainConfig, "train_state": TrainConfig, "train_drq": TrainConfig, "train_dmc": TrainConfig,
            "eval": EvalConfig, "pretrain": PretrainConfig, "view": ViewConfig, "async_sim": AsyncConfig,
            "async_state": AsyncConfig, "async_real_fake": AsyncConfig}


COMMAND_CONFIGS = ["train", "train_state", "train_drq", "train_dmc", "eval", "pretrain", "view", "async_sim",
                   "async_state", "async_real_fake"]


@pytest.mark.parametrize("name", COMMAND_CONFIGS)
def test_every_command_config_loads_into_its_schema(name):
    from robolearn.config import load_typed

    schema = _schemas()[name]
    assert isinstance(load_typed(schema, _composed(name), name), schema)


@pytest.mark.parametrize("name", COMMAND_CONFIGS)
def test_every_command_config_rejects_an_unknown_top_level_key(name):
    from hydra.errors import ConfigCompositionException

    _schemas()  # registers every schema
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        _composed(name, "no_such_key=1")


@pytest.mark.parametrize(
    "name, override, named",
    [
        ("train", "utd=0", "utd"),
        ("train_state", "replay.demo_ratio=2", "replay.demo_ratio"),
        ("train", "eval.episodes=-1", "eval.episodes"),
        ("eval", "episodes=-1", "episodes"),
        ("eval", "video_episodes=-2", "video_episodes"),
        ("pretrain", "val_fraction=1.5", "val_fraction"),
        ("pretrain", "epochs=0", "epochs"),
        ("view", "episodes=-1", "episodes"),
        ("async_sim", "actor.on_learner_loss=panic", "on_learner_loss"),
        ("async_state", "learner.publish_every=0", "learner.publish_every"),
        ("async_sim", "actors=-1", "actors"),
    ],
)
def test_a_bad_value_is_named_when_the_config_is_loaded(name, override, named):
    from robolearn.config import load_typed

    with pytest.raises(ConfigError, match=named):
        load_typed(_schemas()[name], _composed(name, override), name)


@pytest.mark.parametrize("override, named", [("agent.hiden_dim=3", "hiden_dim"), ("learner.batchsize=3", "batchsize"),
                                             ("server.capacityy=3", "capacityy"), ("env.gravity=0", "gravity")])
def test_sections_of_the_async_config_are_typed(override, named):
    from hydra.errors import ConfigCompositionException

    _schemas()
    with pytest.raises(ConfigCompositionException, match=named):
        _composed("async_sim", override)


def test_a_forced_unknown_env_key_reaches_the_env_schema():
    from robolearn.config import load_typed
    from robolearn.train import TrainConfig

    cfg = load_typed(TrainConfig, _composed("train_state", "+env.gravity=0"), "train")
    with pytest.raises(ConfigError, match="gravity"):
        load_env_config(cfg.env)


def test_the_kettle_env_groups_hold_the_schema_defaults_but_the_main_jobs_light_randomisation():
    """configs/env/kettle_sink_transfer.yaml restates nothing: composed, it is EnvConfig's defaults;
    configs/env/kettle_sink.yaml differs only in the randomisation (and the room it leaves out)."""
    from dataclasses import asdict, replace

    from robolearn.config import EnvConfig, load_typed
    from robolearn.eval import EvalConfig

    transfer = load_env_config(load_typed(EvalConfig, _composed("eval", "env=kettle_sink_transfer"), "eval").env)
    assert transfer == EnvConfig() and asdict(transfer) == asdict(EnvConfig())
    light = load_env_config(load_typed(EvalConfig, _composed("eval"), "eval").env)
    assert light.randomization != transfer.randomization and not light.room_walls
    assert replace(light, randomization=transfer.randomization, room_walls=True) == transfer


def test_control_mode_reads_as_its_name_in_interpolations():
    from robolearn.config import load_typed
    from robolearn.train import TrainConfig

    cfg = load_typed(TrainConfig, _composed("train_state", "env.control_mode=joint_torque"), "train")
    assert cfg.demos.path.startswith("demos/kettle_sink_panda_joint_torque_state_privileged_") and cfg.demos.path.endswith("_20.npz")


@pytest.mark.parametrize("module, overrides", [
    ("robolearn.train", ["--config-name", "train_state", "utd=0"]),
    ("robolearn.pretrain", ["epochs=0"]),
    ("robolearn.roles.learner", ["--config-name", "async_state", "actor.on_learner_loss=panic"]),
    ("robolearn.roles.actor", ["--config-name", "async_state", "learner.publish_every=0"]),
    ("robolearn.roles.launch", ["--config-name", "async_state", "actors=-1"]),
    ("robolearn.roles.replay_server", ["--config-name", "async_state", "server.capacityy=10"]),
    ("robolearn.view", ["episodes=-1"]),
])
def test_commands_fail_at_start_up_naming_a_bad_value(module, overrides, tmp_path):
    cmd = [sys.executable, "-m", module, *overrides, f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert overrides[-1].split("=")[0].split(".")[-1] in result.stderr


@pytest.mark.parametrize("name, override", [("eval", "episodes=x"), ("train", "total_steps=lots"), ("pretrain", "lr=fast"),
                                            ("async_sim", "learner.max_utd=high"), ("view", "seed=one")])
def test_a_badly_typed_value_fails_as_the_config_is_composed(name, override):
    from hydra.errors import ConfigCompositionException

    _schemas()
    with pytest.raises(ConfigCompositionException, match=override.split("=")[0].split(".")[-1]):
        _composed(name, override)


@pytest.mark.parametrize("camera, key", [
    ({"name": "front", "look_at": [0.4, 0.0, 0.0]}, "cameras.front.pos"),
    ({"name": "front", "pos": [1.0, 0.0, 1.0], "look_at": [1.0, 0.0, 1.0]}, "cameras.front.look_at"),
    ({"name": "front", "pos": [1.0, 0.0, 1.0], "look_at": [1.0, 0.0, 0.0]}, "cameras.front.up"),  # looking straight down, up = z
    ({"name": "front", "pos": [1.0, 0.0, 1.0], "quat": [0, 0, 0, 0]}, "cameras.front.quat"),
    ({"name": "front", "fovy": 2.0}, "randomization.camera.fovy"),
])
def test_a_camera_pose_that_cannot_be_built_is_refused_naming_the_key(camera, key):
    from robolearn.config import ConfigError, load_env_config

    with pytest.raises(ConfigError, match=f"env.{key}"):
        load_env_config({"cameras": [camera, {"name": "wrist"}]})
