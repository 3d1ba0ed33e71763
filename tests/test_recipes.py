"""The documented recipes as written: demo and encoder files named by what they hold (made when missing),
the UR5e main job and the no-tracker recipe from their one command, and online fine-tuning (learner and
deploy's actor) starting from a main-job checkpoint with the agent config it carries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from robolearn.agents import AgentConfig
from robolearn.agents.policy import load_checkpoint_policy
from robolearn.agents.weights import acting_weights, load_acting_weights
from robolearn.agents.pretrained import EncoderFileError
from robolearn.roles.config import AsyncConfig
from robolearn.checkpoint import (actor_input_keys, checkpoint_agent_config, explicit_agent_overrides, load_checkpoint,
                                  replay_server_overrides, run_agent_config)
from robolearn.config import load_typed
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR, file_names
from robolearn.spec import demo_tag, encoder_tag, scene_record
from robolearn.train import TrainConfig, ensure_encoder, run

# Tiny budgets: 1 s episodes (10 steps), a 2-episode, 1-epoch pretraining with small networks, 1 demo episode.
TINY_PRETRAIN = "pretrain_overrides=['episodes=2','epochs=1','embed_dim=8','hidden_dim=16','batch_size=8']"
TINY_TRAIN = ["env.episode_seconds=1", "agent.hidden_dim=32", "batch_size=16", "seed_steps=10", "utd=1", "total_steps=20",
              "demos.episodes=1", "eval.every=1000000", "eval.first_min=null", "save_every_min=null", "eval.final=false",
              "progress=false", "torch_threads=1", "replay.capacity=500", TINY_PRETRAIN]


def train_config(*overrides: str, name: str = "train") -> TrainConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return load_typed(TrainConfig, compose(config_name=name, overrides=list(overrides)), "train")


# -- names --------------------------------------------------------------------------------------------------
def test_demo_and_encoder_names_differ_by_robot_cameras_and_privileged_state():
    main = file_names([])
    assert main["demos"].startswith("demos/kettle_sink_panda_joint_velocity_front84-wrist84_privileged_")
    assert main["encoder"].startswith("encoders/kettle_sink_panda_front84-wrist84_")
    ur5e, no_tracker = file_names(["env.robot=ur5e"]), file_names(["env.privileged=false"])
    fr3, one_camera = file_names(["env.robot=fr3"]), file_names(["env.cameras=[{name: front}]"])
    torque, bigger = file_names(["env.control_mode=joint_torque"]), file_names(["env.cameras=[{name: front, width: 96, height: 96}, {name: wrist}]"])
    demos = [x["demos"] for x in (main, ur5e, no_tracker, fr3, one_camera, torque, bigger)]
    assert len(set(demos)) == len(demos)
    assert "_ur5e_" in ur5e["demos"] and "privileged" not in no_tracker["demos"] and "front96-wrist84" in bigger["demos"]
    # One encoder per robot and camera set; the privileged state (the pretraining target) and the control mode
    # do not change what it reads, so the main job and the no-tracker recipe share it.
    assert no_tracker["encoder"] == torque["encoder"] == main["encoder"]
    encoders = [x["encoder"] for x in (main, ur5e, fr3, one_camera, bigger)]
    assert len(set(encoders)) == len(encoders)
    # The asynchronous configs name the files the training runs made.
    assert file_names([], "async_state")["demos"] == file_names([], "train_state")["demos"]
    assert file_names([], "async_sim")["demos"] == file_names([], "train_drq")["demos"]
    env = dict(train_config().env)  # configs/env/kettle_sink.yaml's scene
    assert demo_tag({**env, "privileged": True}) in main["demos"] and encoder_tag(env) in main["encoder"]


def test_an_encoder_file_made_for_another_robot_is_refused_not_used(tmp_path):
    # Panda and FR3 both have 7 joints: same input shapes, other images. The file says which robot it saw.
    path = tmp_path / "enc.pt"
    torch.save({"format": "robolearn-pretrained-encoder/1", "meta": {"robot": "panda"}}, path)
    with pytest.raises(EncoderFileError, match="made for the panda, not the fr3"):
        ensure_encoder(train_config("env.robot=fr3", f"agent.encoder_weights={path}"))
    ensure_encoder(train_config(f"agent.encoder_weights={path}"))  # the panda's: accepted


def test_an_encoder_file_made_with_other_pretraining_settings_than_asked_is_refused(tmp_path):
    # Its name covers the robot and cameras, not how it was pretrained: a run asking for 300 episodes with a
    # look per frame must not silently take the 150-episode encoder that sits under the same name.
    path = tmp_path / "enc.pt"
    torch.save({"format": "robolearn-pretrained-encoder/1",
                "meta": {"robot": "panda", "episodes": 150, "seed": 0, "embed_dim": 64, "hidden_dim": 256}}, path)
    asked = train_config(f"agent.encoder_weights={path}", "pretrain_overrides=['look_per_frame=true','episodes=300','epochs=15']")
    with pytest.raises(EncoderFileError, match=r"episodes: the file 150, asked 300; look_per_frame: the file False, asked True"):
        ensure_encoder(asked)
    with pytest.raises(EncoderFileError, match=r"warp: the file None, asked \{'degrees': 6.0"):
        ensure_encoder(train_config(f"agent.encoder_weights={path}", "pretrain_overrides=['warp_degrees=6']"))
    # What the file records and matches, or settings it does not record (epochs), are accepted; so is no override.
    ensure_encoder(train_config(f"agent.encoder_weights={path}", "pretrain_overrides=['episodes=150','epochs=15']"))
    ensure_encoder(train_config(f"agent.encoder_weights={path}"))
    assert torch.load(path, weights_only=False)["meta"]["episodes"] == 150  # nothing made again in its place
    checkpoint = tmp_path / "checkpoint.pt"  # a training checkpoint carries its encoder's meta under another key
    torch.save({"encoder_meta": {"robot": "panda", "episodes": 150}, "agent": {}}, checkpoint)
    with pytest.raises(EncoderFileError, match=r"episodes: the file 150, asked 300"):
        ensure_encoder(train_config(f"agent.encoder_weights={checkpoint}", "pretrain_overrides=['episodes=300']"))


# -- the recipes as written -----------------------------------------------------------------------------------
def test_the_ur5e_main_job_makes_its_own_encoder_and_demos_and_the_no_tracker_recipe_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default relative encoders/ and demos/ folders
    (tmp_path / "encoders").mkdir()
    # A Panda encoder under the old name is never picked up by the UR5e (nor by the Panda: its name changed).
    torch.save({"format": "robolearn-pretrained-encoder/1", "meta": {}}, tmp_path / "encoders" / "kettle_sink.pt")
    names = file_names(["env.robot=ur5e"])
    run(train_config("env.robot=ur5e", *TINY_TRAIN), tmp_path / "ur5e")
    encoder, demos = tmp_path / names["encoder"], tmp_path / names["demos"].replace("_20.npz", "_1.npz")
    assert encoder.is_file() and demos.is_file()
    meta = torch.load(encoder, weights_only=False)["meta"]
    assert meta["robot"] == "ur5e" and meta["inputs"]["joint_pos"] == [6]
    payload = load_checkpoint(tmp_path / "ur5e")
    assert payload["env_config"]["robot"] == "ur5e" and payload["agent_config"]["encoder_weights"] == names["encoder"]
    made = encoder.stat().st_mtime_ns
    # docs/learner.md's recipe for an arm without a tracker, in sim: the same encoder, its own demos.
    run(train_config("env.robot=ur5e", "env.privileged=false", "agent.critic_only_keys=[]", "agent.actor_only_keys=[]",
                     *TINY_TRAIN), tmp_path / "no_tracker")
    assert encoder.stat().st_mtime_ns == made
    no_tracker_demos = tmp_path / file_names(["env.robot=ur5e", "env.privileged=false"])["demos"].replace("_20.npz", "_1.npz")
    assert no_tracker_demos.is_file() and no_tracker_demos != demos
    assert (tmp_path / "no_tracker" / "checkpoint.pt").is_file()


# -- online fine-tuning from a main-job checkpoint --------------------------------------------------------------
@pytest.fixture(scope="module")
def main_job_checkpoint(tmp_path_factory) -> Path:
    """A tiny run of the main job's recipe (frozen encoder, privileged critic, features actor-only) in sim."""
    root = tmp_path_factory.mktemp("main_job")
    encoder = root / "encoder.pt"
    run(train_config(f"agent.encoder_weights={encoder}", *TINY_TRAIN, "total_steps=30", "demos.episodes=0"), root / "run")
    encoder.unlink()  # where the checkpoint goes (a learner box, a robot PC) the encoder file is not
    return root / "run" / "checkpoint.pt"


def async_config(*overrides: str, name: str = "async_real_fake"):
    from tests.transport_cases import free_port

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=[
            f"transport.port={free_port()}", f"transport.weights_port={free_port()}", "transport.insecure_no_keys=true", "server.capacity=100",
            "server.demo_capacity=100", "env.episode_seconds=1", "progress=false", *overrides])


def test_the_learner_starts_from_a_main_job_checkpoint_with_its_agent_config(main_job_checkpoint, tmp_path):
    from robolearn.roles.actor import Actor
    from robolearn.roles.learner import Learner
    from robolearn.roles.replay_server import build_server

    # The learner box's command: the arm's config (agent group: drq), init_from, and no agent key retyped.
    node = async_config(f"run_dir={tmp_path}", f"learner.init_from={main_job_checkpoint}",
                        *replay_server_overrides(main_job_checkpoint))
    cfg = load_typed(AsyncConfig, node, "async")
    assert cfg.agent.encoder == "pretrained"  # what launch/learner_box.sh gives the server
    server = build_server(cfg)
    learner = None
    actor = None
    try:
        learner = Learner(cfg, tmp_path / "learner", task_overrides=[])
        assert learner.agent.cfg.encoder == "pretrained" and learner.agent.cfg.hidden_dim == 32
        # No tracker on the arm: the critic reads the features (the actor's inputs), as docs/learner.md says.
        assert learner.agent.cfg.critic_only_keys == [] and learner.agent.cfg.actor_only_keys == []
        # deploy mode=online's actor builds its agent from the checkpoint's agent config as trained (the
        # features actor-only; its encoder file is where the run made it, here the checkpoint's copy).
        payload = load_checkpoint(main_job_checkpoint)
        env = make_env(cfg.env)
        as_trained = {**payload["agent_config"], "encoder_weights": str(main_job_checkpoint)}
        actor = Actor(load_typed(AsyncConfig, {**node_plain(node), "agent": as_trained}, "actor"), env=env)
        assert actor.client.spec == server.spec == learner.client.spec
        # The policy reads its inputs in one order whatever the critic's split: the learner's policy is the
        # checkpoint's, and its broadcasts fit that actor.
        assert learner.agent.actor_keys == actor.agent.actor_keys == actor_input_keys(learner.agent, payload) == payload["actor_keys"]
        policy = load_checkpoint_policy(env, str(main_job_checkpoint))
        obs, _ = env.reset(seed=3)
        expected = policy.act(obs)
        assert np.allclose(learner.agent.act(dict(obs), deterministic=True), expected, atol=1e-6)
        load_acting_weights(actor.agent, acting_weights(learner.agent))
        assert np.allclose(actor.agent.act(dict(obs), deterministic=True), expected, atol=1e-6)
        # The helper deploy can call instead (the encoder read from the checkpoint, the no-tracker split).
        hooked = load_typed(AsyncConfig, {**node_plain(node), "agent": checkpoint_agent_config(payload, main_job_checkpoint, env.observation_space)}, "actor")
        assert hooked.agent == learner.agent.cfg
        learner.save()
        saved = load_checkpoint(tmp_path / "learner")
        assert saved["agent_config"]["critic_only_keys"] == [] and saved["env_config"]["factory"].startswith("hardware.")
    finally:
        if actor is not None:
            actor.close()
        if learner is not None:
            learner.close()
        server.close()


def test_on_an_arm_without_a_tracker_a_checkpoints_critic_can_read_the_encoders_estimate(main_job_checkpoint, tmp_path):
    # Fine-tuning the main job's policy on an arm with no tracker, the critic reading the encoder's estimate of
    # the state (docs/learner.md): named on the learner box's command, the policy stays the checkpoint's.
    import dataclasses

    from robolearn.roles.learner import Learner
    from robolearn.roles.replay_server import build_server

    keys = ["agent.estimated_state=true", "agent.critic_only_keys=[estimated_state]", "agent.actor_only_keys=[image_features]"]
    node = async_config(f"run_dir={tmp_path}", f"learner.init_from={main_job_checkpoint}", *replay_server_overrides(main_job_checkpoint), *keys)
    cfg = load_typed(AsyncConfig, node, "async")
    server = build_server(dataclasses.replace(cfg, agent=run_agent_config(cfg, make_env_space(cfg), keys)))
    learner = None
    env = make_env(cfg.env)
    try:
        learner = Learner(cfg, tmp_path / "learner", task_overrides=keys)
        assert learner.agent.critic_only_keys == ["estimated_state"] and "estimated_state" not in learner.agent.actor_keys
        assert learner.client.spec == server.spec  # the server stores the estimate the actors send
        payload = load_checkpoint(main_job_checkpoint)
        assert learner.agent.actor_keys == payload["actor_keys"]
        obs, _ = env.reset(seed=3)
        assert np.allclose(learner.agent.act(dict(obs), deterministic=True), load_checkpoint_policy(env, str(main_job_checkpoint)).act(obs), atol=1e-6)
    finally:
        env.close()
        if learner is not None:
            learner.close()
        server.close()


def test_a_policy_saved_with_its_inputs_in_the_old_order_loads_reordered(main_job_checkpoint, tmp_path):
    # Checkpoints made before the features came first in the learning space, with the features shared
    # (actor_only_keys=[]), had the actor read [gripper, image_features, joint_pos, joint_vel].
    from robolearn.agents import DrQAgent
    from robolearn.checkpoint import load_policy_for

    payload = load_checkpoint(main_job_checkpoint)
    env = make_env(load_typed(AsyncConfig, async_config("run_dir=/tmp/x"), "async").env)
    try:
        policy = load_checkpoint_policy(env, str(main_job_checkpoint))
        widths = {k: int(np.prod(policy.agent.learning_space[k].shape)) for k in policy.agent.actor_keys}
        new_cols, start = {}, 0
        for k in policy.agent.actor_keys:
            new_cols[k], start = list(range(start, start + widths[k])), start + widths[k]
        old_order = ["gripper", "image_features", "joint_pos", "joint_vel"]
        legacy = {k: v for k, v in payload.items() if k != "actor_keys"}
        legacy["agent_config"] = {**payload["agent_config"], "critic_only_keys": [], "actor_only_keys": []}
        model = dict(payload["agent"]["model"])
        for name in ("actor.net.0.weight", "actor_average.net.0.weight"):  # the weight average acts: both in the old order
            model[name] = model[name][:, [c for k in old_order for c in new_cols[k]]]
        legacy["agent"] = {**payload["agent"], "model": model}
        agent_cfg = load_typed(AgentConfig, checkpoint_agent_config(legacy, main_job_checkpoint, env.observation_space), "agent")
        agent = DrQAgent(env.observation_space, env.action_space, agent_cfg, encoder_meta=payload["encoder_meta"])
        assert actor_input_keys(agent, legacy) == old_order != agent.actor_keys
        load_policy_for(agent, legacy)
        obs, _ = env.reset(seed=4)
        assert np.allclose(agent.act(dict(obs), deterministic=True), policy.act(obs), atol=1e-6)
    finally:
        env.close()


def node_plain(node) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


def test_agent_keys_given_by_name_override_the_checkpoint_and_nothing_else(main_job_checkpoint):
    cfg = load_typed(AsyncConfig, async_config("run_dir=/tmp/x", "agent.actor_lr=0.001"), "async")
    explicit = explicit_agent_overrides(["agent.actor_lr=0.001", "run_dir=/tmp/x", "env=real_fake"], cfg.agent)
    assert explicit == {"actor_lr": 0.001}
    payload = load_checkpoint(main_job_checkpoint)
    space = make_env_space(cfg)
    agent = checkpoint_agent_config(payload, main_job_checkpoint, space, explicit)
    assert agent["actor_lr"] == 0.001 and agent["hidden_dim"] == 32 and agent["encoder_weights"] == str(main_job_checkpoint)
    # In sim, with the privileged state, the recipe's key split is kept as trained.
    sim = checkpoint_agent_config(payload, main_job_checkpoint, make_env_space(load_typed(AsyncConfig, async_config(
        "run_dir=/tmp/x", "agent=sac_pretrained", "env.privileged=true", name="async_sim"), "async")))
    assert sim["critic_only_keys"] == ["privileged"] and sim["actor_only_keys"] == ["image_features"]
    assert explicit_agent_overrides(["agent=sac_pretrained"], cfg.agent)["encoder"] == cfg.agent.encoder
    # What every asynchronous role can call (the learner does): the checkpoint's config, named keys on top.
    init = load_typed(AsyncConfig, async_config("run_dir=/tmp/x", f"learner.init_from={main_job_checkpoint}", "agent.actor_lr=0.001"), "async")
    agent_cfg = run_agent_config(init, space, ["agent.actor_lr=0.001"])
    assert agent_cfg.actor_lr == 0.001 and agent_cfg.encoder == "pretrained" and agent_cfg.critic_lr == payload["agent_config"]["critic_lr"]
    assert run_agent_config(cfg, space, []) is cfg.agent  # no init_from: the config's own


def test_a_replay_server_given_the_run_agent_config_agrees_with_the_learner_without_extra_overrides(main_job_checkpoint, tmp_path):
    # The hook robolearn/roles/replay_server.py's build_server needs (so launch/learner_box.sh's server-overrides become unnecessary).
    import dataclasses

    from robolearn.roles.learner import Learner
    from robolearn.roles.replay_server import build_server

    cfg = load_typed(AsyncConfig, async_config(f"run_dir={tmp_path}", f"learner.init_from={main_job_checkpoint}"), "async")
    server = build_server(dataclasses.replace(cfg, agent=run_agent_config(cfg, make_env_space(cfg), [])))
    try:
        learner = Learner(cfg, tmp_path / "learner", task_overrides=[])
        try:
            assert learner.client.spec == server.spec
        finally:
            learner.close()
    finally:
        server.close()


def make_env_space(cfg: AsyncConfig):
    from robolearn.spec import EnvSpec

    return EnvSpec.from_config(cfg.env).observation_space()


def test_demo_and_encoder_files_are_named_by_the_scene_they_were_made_in():
    # A file made under another randomisation or camera pose must never be reused silently.
    moved = {"cameras": [{"name": "front", "pos": [1.1, 0.0, 0.8], "look_at": [0.4, 0.0, 0.0]}, {"name": "wrist"}]}
    for tag in (demo_tag, encoder_tag):
        base = tag({"privileged": True})
        assert tag({"privileged": True}) == base
        assert tag({"privileged": True, "randomization": {"camera": {"pos": 0.0}}}) != base
        assert tag({"privileged": True, "randomization": {"enabled": False}}) != base
        assert tag({"privileged": True, **moved}) != base
        assert tag({"privileged": True, "room_walls": False}) != base
        assert tag({"privileged": True, "randomization": {"camera": {"only": ["front"]}}}) != base
    # A key added with a default that changes nothing leaves the names of the files made before it alone.
    assert "only" not in scene_record({"privileged": True})["randomization"]["camera"]


def test_an_encoder_is_not_made_again_for_a_change_it_cannot_see():
    base = {"privileged": True}
    latency = {"privileged": True, "randomization": {"latency_ms": [0.0, 50.0], "joint_vel_noise": 0.0}}
    assert encoder_tag(latency) == encoder_tag(base)  # frames unchanged: the same encoder
    assert demo_tag(latency) != demo_tag(base)  # the demos' trajectories are not
