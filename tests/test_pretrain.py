"""The pixel recipe's pieces: encoder pretraining (resumable), the file's checks, the frozen-feature agent
with its asymmetric critic, and training, checkpoints and exact resume on top of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from robolearn.agents.policy import load_checkpoint_policy
from robolearn.agents import AgentConfig, DrQAgent
from robolearn.agents.pretrained import FEATURE_KEY, EncoderFileError, load_encoder
from robolearn.checkpoint import CheckpointError, load_checkpoint
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR
from robolearn.pretrain import pretrain
from robolearn.train import run

TINY_ENV = ["env.episode_seconds=1"]  # 10 steps an episode


def pretrain_config(out: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="pretrain", overrides=[
            f"out={out}", "episodes=3", "epochs=2", "batch_size=8", "progress=false", "torch_threads=1",
            "save_every_episodes=1", "embed_dim=8", "hidden_dim=16", *TINY_ENV, *overrides])


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("encoder") / "enc.pt"
    metrics = pretrain(pretrain_config(out))
    assert np.isfinite(metrics["kettle_median_cm"]) and metrics["kettle_median_cm"] > 0
    return out


def train_config(encoder: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=[
            f"agent.encoder_weights={encoder}", "agent.hidden_dim=32", "batch_size=16", "seed_steps=20", "utd=1",
            "eval.every=1000000", "eval.first_min=null", "save_every_min=null", "eval.final=false", "progress=false",
            "demos.episodes=0", "replay.capacity=500", "runner=inline", *TINY_ENV, *overrides])


def env_of(cfg):
    return make_env(cfg.env)


# -- pretraining ----------------------------------------------------------------------------------------
def test_encoder_file_records_its_inputs_and_held_out_errors(encoder_file):
    payload = torch.load(encoder_file, map_location="cpu", weights_only=False)
    meta = payload["meta"]
    assert meta["image_keys"] == ["front", "wrist"]
    assert meta["inputs"]["front"] == [84, 84, 3] and meta["inputs"]["joint_pos"] == [7]
    assert meta["frames"] == 3 * 10
    assert set(meta["validation"]) >= {"kettle_median_cm", "handle_p90_cm", "training_kettle_median_cm", "training_handle_p90_cm"}
    assert "targets" not in meta and meta["target_dim"] == 13  # the default: files as before the `targets` key


def test_relative_targets_place_the_handle_in_the_grippers_frame_by_the_arms_kinematics():
    from robolearn.pretrain import regression_targets
    from robolearn.robots import PANDA

    rng = np.random.default_rng(0)
    joints = PANDA.home + rng.uniform(-0.3, 0.3, (4, 7))
    privileged = rng.uniform(-1, 1, (4, 13)).astype(np.float32)
    data = {"privileged": privileged, "joint_pos": joints.astype(np.float32)}
    assert np.array_equal(regression_targets(data, ["privileged"], PANDA), privileged)
    both = regression_targets(data, ["privileged", "relative"], PANDA)
    assert both.shape == (4, 19) and np.array_equal(both[:, :13], privileged)
    pose = PANDA.forward_kinematics(joints[2].astype(np.float32))
    handle_in_tcp = both[2, 13:16]
    np.testing.assert_allclose(pose[:3, :3] @ handle_in_tcp + pose[:3, 3], privileged[2, 7:10], atol=1e-5)  # the handle
    assert not np.allclose(handle_in_tcp, privileged[2, 7:10] - pose[:3, 3], atol=1e-3)  # in the gripper's axes
    np.testing.assert_allclose(both[2, 16:19], privileged[2, 0:3] - privileged[2, 10:13], atol=1e-6)  # kettle from the sink


def test_from_tcp_targets_are_the_kettle_and_handle_minus_the_grippers_position():
    from robolearn.pretrain import regression_targets, target_group_start, target_parts
    from robolearn.robots import PANDA

    rng = np.random.default_rng(1)
    joints = (PANDA.home + rng.uniform(-0.3, 0.3, (5, 7))).astype(np.float32)
    privileged = rng.uniform(-1, 1, (5, 13)).astype(np.float32)
    targets = regression_targets({"privileged": privileged, "joint_pos": joints}, ["privileged", "relative", "from_tcp"], PANDA)
    assert targets.shape == (5, 25) and target_group_start(["privileged", "relative", "from_tcp"], "from_tcp") == 19
    tcp = PANDA.forward_kinematics(joints[3])[:3, 3]
    np.testing.assert_allclose(targets[3, 19:22], privileged[3, 0:3] - tcp, atol=1e-5)  # the kettle from the gripper
    np.testing.assert_allclose(targets[3, 22:25], privileged[3, 7:10] - tcp, atol=1e-5)  # the handle from the gripper
    parts = target_parts(["privileged", "relative", "from_tcp"])
    assert parts["kettle_from_tcp"] == slice(19, 22) and parts["kettle_from_sink"] == slice(16, 19)
    assert target_group_start(["privileged"], "from_tcp") is None


def test_estimate_tcp_places_the_kettle_and_handle_from_the_arms_kinematics(tmp_path, encoder_file):
    from robolearn.agents.pretrained import proprio_tensor
    from robolearn.robots import PANDA

    out = tmp_path / "tcp.pt"
    metrics = pretrain(pretrain_config(out, "episodes=2", "epochs=1", "targets=[privileged,from_tcp]",
                                       f"data={Path(str(encoder_file)).with_suffix('.data.npz')}"))
    assert {"kettle_from_tcp_median_cm", "handle_from_tcp_p90_cm"} <= set(metrics)
    env = env_of(train_config(out))
    try:
        plain = load_encoder(out, env.observation_space, estimate=True, features="estimate")
        anchored = load_encoder(out, env.observation_space, estimate=True, features="estimate_tcp")
        assert anchored.out_dim == plain.out_dim == 19
        obs = env.reset(seed=2)[0]
        batch = {k: np.asarray(v)[None] for k, v in obs.items()}
        net = anchored.net
        images = {k: torch.as_tensor(batch[k]) for k in net.image_keys}
        state = net.predict_state(images, proprio_tensor(batch, net.proprio_keys, torch.device("cpu")))[0].numpy()
        tcp = PANDA.forward_kinematics(obs["joint_pos"])[:3, 3]
        got, before = anchored.featurize(obs, batched=False), plain.featurize(obs, batched=False)
        np.testing.assert_allclose(got["estimated_state"][0:3], tcp + state[13:16], atol=1e-5)  # kettle = gripper + vector
        np.testing.assert_allclose(got["estimated_state"][7:10], tcp + state[16:19], atol=1e-5)  # handle likewise
        np.testing.assert_allclose(got["estimated_state"][3:7], before["estimated_state"][3:7], atol=1e-6)  # the rest as read
        mean, std = net.target_mean.numpy(), net.target_std.numpy()
        np.testing.assert_allclose(got[FEATURE_KEY][0:3], (tcp + state[13:16] - mean[0:3]) / std[0:3], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[FEATURE_KEY][10:], before[FEATURE_KEY][10:], atol=1e-6)  # sink and vectors unchanged
        with pytest.raises(EncoderFileError, match="from_tcp"):
            load_encoder(encoder_file, env.observation_space, features="estimate_tcp")  # regresses no from-gripper vectors
    finally:
        env.close()
    run(train_config(out, "agent.encoder_features=estimate_tcp", "total_steps=30"), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run")["agent_config"]["encoder_features"] == "estimate_tcp"


def test_relative_targets_make_a_longer_prediction_and_report_its_errors(tmp_path, encoder_file):
    out = tmp_path / "rel.pt"
    metrics = pretrain(pretrain_config(out, "episodes=2", "epochs=1", "targets=[privileged,relative]",
                                       f"data={Path(str(encoder_file)).with_suffix('.data.npz')}"))
    assert {"handle_in_tcp_median_cm", "kettle_from_sink_p90_cm"} <= set(metrics)
    meta = torch.load(out, map_location="cpu", weights_only=False)["meta"]
    assert meta["targets"] == ["privileged", "relative"] and meta["target_dim"] == 19
    frozen = load_encoder(out, make_env(pretrain_config(out, "env.privileged=true").env).observation_space)
    assert frozen.out_dim == 8 + 19
    from robolearn.config import ConfigError

    with pytest.raises(ConfigError, match="targets"):
        pretrain(pretrain_config(out, "targets=[relative]"))  # the privileged state must come first


def test_warped_training_is_recorded_in_the_encoder_and_bad_warps_are_refused(tmp_path, encoder_file):
    out = tmp_path / "warp.pt"
    data = f"data={Path(str(encoder_file)).with_suffix('.data.npz')}"
    metrics = pretrain(pretrain_config(out, "epochs=1", "warp_degrees=6", "warp_translate=0.1", "warp_scale=0.05", data))
    assert np.isfinite(metrics["kettle_median_cm"])
    meta = torch.load(out, map_location="cpu", weights_only=False)["meta"]
    assert meta["warp"] == {"degrees": 6.0, "translate": 0.1, "scale": 0.05}
    assert "warp" not in torch.load(encoder_file, map_location="cpu", weights_only=False)["meta"]  # off: not recorded
    from robolearn.config import ConfigError

    for bad in ("warp_degrees=-1", "warp_translate=0.8", "warp_scale=-0.1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            pretrain(pretrain_config(out, bad))


def test_collection_resumes_where_it_stopped(tmp_path, encoder_file):
    # Episodes are seeded by index: collecting 2 then going on to 3 gives the same frames as 3 at once.
    data_dir = encoder_file.parent
    straight = dict(np.load(data_dir / "enc.data.npz"))
    out = tmp_path / "enc.pt"
    pretrain(pretrain_config(out, "episodes=2", "epochs=1"))
    pretrain(pretrain_config(out, "episodes=3", "epochs=1"))
    resumed = dict(np.load(tmp_path / "enc.data.npz"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        np.testing.assert_array_equal(straight[key], resumed[key], err_msg=key)


def test_a_look_per_frame_renders_every_frame_in_a_new_scene_and_the_data_file_says_so(tmp_path, encoder_file):
    out = tmp_path / "enc.pt"
    metrics = pretrain(pretrain_config(out, "look_per_frame=true", "epochs=1"))
    assert np.isfinite(metrics["kettle_median_cm"])
    per_frame = dict(np.load(tmp_path / "enc.data.npz"))
    per_episode = dict(np.load(encoder_file.parent / "enc.data.npz"))
    assert bool(per_frame["look_per_frame"]) and not bool(per_episode["look_per_frame"])
    # The same episodes: the states are those of one look per episode (the redraws use a stream of their own) ...
    for key in ("joint_pos", "privileged", "episode"):
        np.testing.assert_array_equal(per_frame[key], per_episode[key], err_msg=key)
    # ... the first frame of an episode is in the episode's look, every later one in another.
    same = [np.array_equal(per_frame["front"][i], per_episode["front"][i]) for i in range(len(per_frame["episode"]))]
    firsts = np.r_[True, per_frame["episode"][1:] != per_frame["episode"][:-1]]
    assert all(np.array(same)[firsts]) and not any(np.array(same)[~firsts])
    assert torch.load(out, weights_only=False)["meta"]["look_per_frame"] is True
    # A collection made the other way is not silently continued.
    with pytest.raises(ValueError, match="look_per_frame=True, this run asks for False"):
        pretrain(pretrain_config(out, "epochs=1"))


def test_training_resumes_from_its_last_epoch(tmp_path, encoder_file):
    # The state file of a finished run: a rerun trains no epoch again and writes the same weights.
    out = tmp_path / "enc.pt"
    for suffix in (".data.npz", ".state.pt"):
        (tmp_path / f"enc{suffix}").write_bytes((encoder_file.parent / f"enc{suffix}").read_bytes())
    pretrain(pretrain_config(out))
    a = torch.load(encoder_file, weights_only=False)["state_dict"]
    b = torch.load(out, weights_only=False)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


# -- the file's checks ----------------------------------------------------------------------------------
def test_missing_unreadable_and_foreign_encoder_files_fail_clearly(tmp_path, encoder_file):
    env = env_of(train_config(encoder_file))
    try:
        space = env.observation_space
        with pytest.raises(EncoderFileError, match="needs agent.encoder_weights"):
            load_encoder(None, space)
        with pytest.raises(EncoderFileError, match=r"does not exist; make it with `python -m robolearn.pretrain"):
            load_encoder(tmp_path / "nope.pt", space)
        (tmp_path / "junk.pt").write_bytes(b"not a torch file")
        with pytest.raises(EncoderFileError, match="unreadable"):
            load_encoder(tmp_path / "junk.pt", space)
        torch.save({"something": 1}, tmp_path / "other.pt")
        with pytest.raises(EncoderFileError, match="not a robolearn pretrained encoder"):
            load_encoder(tmp_path / "other.pt", space)
    finally:
        env.close()
    small = env_of(train_config(encoder_file, "env.cameras=[{name: front, width: 64, height: 64}, {name: wrist, width: 64, height: 64}]"))
    try:
        with pytest.raises(EncoderFileError, match="made for other observations"):
            load_encoder(encoder_file, small.observation_space)
    finally:
        small.close()
    for runner in ("inline", "async"):  # the async runner refuses it before any role starts
        with pytest.raises(EncoderFileError, match="does not exist"):
            run(train_config(tmp_path / "missing.pt", "pretrain_if_missing=false", "total_steps=10", f"runner={runner}"), tmp_path / runner)
        assert not (tmp_path / runner / "roles.yaml").exists()


# -- the frozen-feature agent ---------------------------------------------------------------------------
def test_frozen_agent_learns_from_features_and_acts_from_images(encoder_file):
    env = env_of(train_config(encoder_file))
    try:
        cfg = AgentConfig(encoder="pretrained", encoder_weights=str(encoder_file), critic_only_keys=["privileged"], hidden_dim=32)
        agent = DrQAgent(env.observation_space, env.action_space, cfg)
        assert agent.image_keys == [] and FEATURE_KEY in agent.learning_space.spaces
        assert "front" not in agent.learning_space.spaces
        assert agent.critic_only_keys == ["privileged"] and "privileged" not in agent.actor_keys
        assert agent.actor.net[0].in_features == agent.actor_vector_dim  # the actor never reads privileged
        obs, _ = env.reset(seed=0)
        features = agent.observe(obs)
        assert features[FEATURE_KEY].shape == (agent.frozen.out_dim,)
        # Acting from raw images equals acting from precomputed features, and needs no privileged state.
        np.testing.assert_array_equal(agent.act(obs, deterministic=True), agent.act(features, deterministic=True))
        without = {k: v for k, v in obs.items() if k != "privileged"}
        np.testing.assert_array_equal(agent.act(without, deterministic=True), agent.act(obs, deterministic=True))
        # The critic does read it: a different privileged state changes Q.
        batch_obs = {k: np.repeat(np.asarray(v)[None], 2, 0) for k, v in features.items()}
        batch_obs["privileged"][1] += 0.5
        _, vector = agent.to_tensors(batch_obs)
        q = agent.critic(None, vector, torch.zeros(2, 8))
        assert not torch.equal(q[:, 0], q[:, 1])
        frozen_before = {k: v.clone() for k, v in agent.frozen_encoder.state_dict().items()}
        from robolearn.replay import ReplayStorage

        store = ReplayStorage(agent.learning_space, (8,), 100)
        store.start_episode(features)
        for _ in range(9):  # one 10-step episode, left open
            o, r, term, trunc, _ = env.step(env.action_space.sample())
            store.add(env.action_space.sample(), r, term, trunc, agent.observe(o))
        metrics = agent.update(store.sample(8, np.random.default_rng(0), n_step=3))
        assert all(np.isfinite(v) for v in metrics.values())
        for key, value in agent.frozen_encoder.state_dict().items():
            assert torch.equal(value, frozen_before[key]), f"the frozen encoder moved: {key}"
    finally:
        env.close()


def test_demos_with_images_become_features_once(encoder_file, tmp_path):
    from robolearn.train import Workspace

    cfg = train_config(encoder_file, "demos.episodes=1", f"demos.path={tmp_path / 'demos.npz'}", "total_steps=10")
    workspace = Workspace(cfg, tmp_path / "run")
    try:
        assert "front" in ReplayStorageKeys.of(tmp_path / "demos.npz")  # the cache keeps the images
        assert workspace.demos.observation_space is workspace.agent.learning_space
        assert workspace.demos.num_transitions() == 10
        batch = workspace.sampler.sample(4, np.random.default_rng(0))
        assert batch.obs[FEATURE_KEY].shape == (4, workspace.agent.frozen.out_dim)
    finally:
        workspace.close()


class ReplayStorageKeys:
    @staticmethod
    def of(path: Path) -> set[str]:
        with np.load(path) as data:
            return {k.split("/", 1)[1] for k in data.files if k.startswith("obs/")}


# -- training, checkpoints, exact resume ----------------------------------------------------------------
def test_frozen_recipe_resumes_exactly_and_its_checkpoint_acts_without_privileged_state(encoder_file, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run(train_config(encoder_file, "total_steps=60"), straight)
    run(train_config(encoder_file, "total_steps=30"), split)
    run(train_config(encoder_file, "total_steps=60", f"resume={split}"), split)
    a, b = (load_checkpoint(d)["agent"]["model"] for d in (straight, split))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The checkpoint carries the encoder: it acts where the encoder file is gone and, in an env with no
    # privileged state (a real arm without a tracker), with the same actions.
    moved = tmp_path / "elsewhere.pt"
    encoder_copy = tmp_path / "enc_copy.pt"
    encoder_copy.write_bytes(encoder_file.read_bytes())
    (straight / "checkpoint.pt").rename(moved)
    with_priv = env_of(train_config(encoder_file))
    without_priv = env_of(train_config(encoder_file, "env.privileged=false"))
    try:
        p1 = load_checkpoint_policy(with_priv, str(moved))
        p2 = load_checkpoint_policy(without_priv, str(moved))
        obs, _ = with_priv.reset(seed=5)
        obs2, _ = without_priv.reset(seed=5)
        assert "privileged" not in obs2
        np.testing.assert_array_equal(p1.act(obs), p2.act(obs2))
    finally:
        with_priv.close()
        without_priv.close()
    no_cameras = env_of(train_config(encoder_file, "env.cameras=[]"))
    try:
        with pytest.raises(CheckpointError, match="different observation/action spec"):
            load_checkpoint_policy(no_cameras, str(moved))
    finally:
        no_cameras.close()


def test_fine_tuning_on_recorded_arm_episodes_needs_their_tracked_state(tmp_path, encoder_file):
    from robolearn.replay import ReplayStorage

    env = env_of(train_config(encoder_file))  # cameras + privileged: what a recording with the tracker holds
    try:
        store = ReplayStorage(env.observation_space, (8,), 50)
        obs, _ = env.reset(seed=1)
        store.start_episode(obs)
        for _ in range(10):
            obs, r, term, trunc, _ = env.step(env.action_space.sample())
            store.add(np.zeros(8, np.float32), r, term, trunc, obs)
        store.save(tmp_path / "arm.npz")
    finally:
        env.close()
    out = tmp_path / "arm_enc.pt"
    metrics = pretrain(pretrain_config(out, "episodes=0", f"recordings=[{tmp_path / 'arm.npz'}]", f"init_from={encoder_file}",
                                       "epochs=1"))
    assert np.isfinite(metrics["kettle_median_cm"])
    assert torch.load(out, weights_only=False)["meta"]["recorded_frames"] == 11
    # A recording without the tracker's state cannot label anything: said, with the fix.
    no_tracker = env_of(train_config(encoder_file, "env.privileged=false"))
    try:
        store = ReplayStorage(no_tracker.observation_space, (8,), 5)
        store.start_episode(no_tracker.reset(seed=0)[0])
        store.save(tmp_path / "blind.npz")
    finally:
        no_tracker.close()
    with pytest.raises(ValueError, match=r"blind.npz has no \['privileged'\].*ArUco tracker"):
        pretrain(pretrain_config(tmp_path / "x.pt", "episodes=0", f"recordings=[{tmp_path / 'blind.npz'}]"))


def test_frozen_recipe_checkpoint_runs_on_the_real_robot_env_with_the_fake_arm(encoder_file, tmp_path):
    # Trained in sim with the privileged critic; the real-robot env has no privileged state (no tracker):
    # the policy reads only the cameras and joints, so the eval command runs it through the safety layer.
    from robolearn.eval import run as eval_run

    run(train_config(encoder_file, "total_steps=30"), tmp_path / "run")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=[
            "env=real_fake", "env.episode_seconds=1", "policy=checkpoint", f"policy.path={tmp_path / 'run'}",
            "episodes=1", "progress=false"])
    assert not cfg.env.get("privileged")
    result = eval_run(cfg)
    assert result["episodes"] == 1 and result["mean_length"] == 10.0


def test_the_main_job_makes_a_missing_encoder_first(tmp_path):
    encoder = tmp_path / "made" / "enc.pt"
    cfg = train_config(encoder, "total_steps=10", "pretrain_overrides=['episodes=2','epochs=1','embed_dim=8','hidden_dim=16','batch_size=8']")
    run(cfg, tmp_path / "run")
    assert encoder.is_file() and (tmp_path / "run" / "checkpoint.pt").is_file()
    assert torch.load(encoder, weights_only=False)["meta"]["episodes"] == 2


# -- the asynchronous roles ----------------------------------------------------------------------------
def test_async_roles_agree_on_features_server_featurizes_its_demos(encoder_file, tmp_path):
    from robolearn.roles.actor import Actor
    from robolearn.roles.config import AsyncConfig
    from robolearn.config import load_typed
    from robolearn.replay import ReplayStorage
    from robolearn.roles.replay_server import build_server
    from tests.transport_cases import free_port

    # A demo file as python -m robolearn.train caches it: images and the privileged state.
    env = env_of(train_config(encoder_file))
    try:
        demos = ReplayStorage(env.observation_space, (8,), 20)
        demos.start_episode(env.reset(seed=0)[0])
        for _ in range(5):
            obs, r, term, trunc, _ = env.step(np.zeros(8, np.float32))
            demos.add(np.zeros(8, np.float32), r, term, trunc, obs)
        demos.save(tmp_path / "demos.npz")
    finally:
        env.close()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="async_sim", overrides=[  # the main job's pixel recipe as role config
            "agent=sac_pretrained", "env.privileged=true", "torch_threads=1", f"run_dir={tmp_path}", f"agent.encoder_weights={encoder_file}", f"server.demos={tmp_path / 'demos.npz'}",
            "server.capacity=100", "server.demo_capacity=100", f"transport.port={free_port()}",
            f"transport.weights_port={free_port()}", "transport.insecure_no_keys=true", *TINY_ENV])
    server = build_server(cfg)
    try:
        assert FEATURE_KEY in server.observation_space.spaces and "front" not in server.observation_space.spaces
        assert server.demos.num_transitions() == 5 and FEATURE_KEY in server.demos.obs
        actor = Actor(load_typed(AsyncConfig, cfg, "async"))
        try:
            # The actor's wire spec is the server's: it sends features, not images.
            assert actor.client.spec == server.spec
        finally:
            actor.close()
    finally:
        server.close()


def test_actor_only_features_make_the_critic_the_state_critic(encoder_file):
    env = env_of(train_config(encoder_file))
    try:
        cfg = AgentConfig(encoder="pretrained", encoder_weights=str(encoder_file), critic_only_keys=["privileged"],
                          actor_only_keys=[FEATURE_KEY], hidden_dim=32)
        agent = DrQAgent(env.observation_space, env.action_space, cfg)
        proprio = 7 + 7 + 1
        assert agent.actor.net[0].in_features == agent.frozen.out_dim + proprio  # features + joints, no privileged
        assert agent.critic.heads[0].weight.shape[1] == proprio + 13 + 8  # joints + privileged + action, no features
        features = agent.observe(env.reset(seed=0)[0])
        batch = {k: np.repeat(np.asarray(v)[None], 2, 0) for k, v in features.items()}
        batch[FEATURE_KEY][1] += 1.0
        _, vector = agent.to_tensors(batch)
        q = agent.critic(None, agent._critic_view(vector), torch.zeros(2, 8))
        assert torch.equal(q[:, 0], q[:, 1])  # the critic never reads the features
        mean0, _ = agent.actor(None, agent._actor_view(vector))
        assert not torch.equal(mean0[0], mean0[1])  # the actor does
        with pytest.raises(ValueError, match="share"):
            DrQAgent(env.observation_space, env.action_space, AgentConfig(
                encoder="pretrained", encoder_weights=str(encoder_file), critic_only_keys=["privileged"], actor_only_keys=["privileged"]))
    finally:
        env.close()


def test_a_critic_on_the_encoders_estimate_of_the_state_needs_no_privileged_state(encoder_file, tmp_path):
    from robolearn.agents.pretrained import ESTIMATE_KEY, proprio_tensor

    env = env_of(train_config(encoder_file, "env.privileged=false"))
    try:
        cfg = AgentConfig(encoder="pretrained", encoder_weights=str(encoder_file), estimated_state=True,
                          critic_only_keys=[ESTIMATE_KEY], actor_only_keys=[FEATURE_KEY], hidden_dim=32)
        agent = DrQAgent(env.observation_space, env.action_space, cfg)
        assert "privileged" not in env.observation_space.spaces
        proprio = 7 + 7 + 1
        assert agent.critic.heads[0].weight.shape[1] == proprio + 13 + 8  # joints + the estimate + action
        assert agent.actor.net[0].in_features == agent.frozen.out_dim + proprio  # the actor never reads the estimate
        obs = env.reset(seed=0)[0]
        features = agent.observe(obs)
        net = agent.frozen.net
        batch = {k: torch.as_tensor(np.asarray(obs[k])[None]) for k in net.image_keys}
        state = net.predict_state(batch, proprio_tensor({k: np.asarray(obs[k])[None] for k in net.proprio_keys},
                                                        net.proprio_keys, torch.device("cpu")))
        np.testing.assert_allclose(features[ESTIMATE_KEY], state[0, :13].numpy(), rtol=1e-5, atol=1e-6)  # metres, quaternion
        twin = {k: np.repeat(np.asarray(v)[None], 2, 0) for k, v in features.items()}
        twin[ESTIMATE_KEY][1] += 0.5
        _, vector = agent.to_tensors(twin)
        q = agent.critic(None, agent._critic_view(vector), torch.zeros(2, 8))
        assert not torch.equal(q[:, 0], q[:, 1])  # the critic reads it
        with pytest.raises(ValueError, match="estimated_state needs agent.encoder=pretrained"):
            DrQAgent(env.observation_space, env.action_space, AgentConfig(estimated_state=True))
    finally:
        env.close()
    # Both runners train on it end to end (the async replay server stores the estimate the actors send).
    for runner in ("inline", "async"):
        run(train_config(encoder_file, "env.privileged=false", "agent.estimated_state=true",
                         f"agent.critic_only_keys=[{ESTIMATE_KEY}]", "total_steps=30", f"runner={runner}"), tmp_path / runner)


def test_training_refuses_a_critic_left_with_the_joints_only(encoder_file, tmp_path):
    # The default hides the features from the critic, which reads the privileged state instead; in an env
    # without it (an arm with no tracker) the critic would be blind to the task: refused, naming the fix.
    for runner in ("inline", "async"):
        with pytest.raises(ValueError, match=r"actor_only_keys=\[\]"):
            run(train_config(encoder_file, "env.privileged=false", "total_steps=10", f"runner={runner}"), tmp_path / runner)
    run(train_config(encoder_file, "env.privileged=false", "agent.critic_only_keys=[]", "agent.actor_only_keys=[]",
                     "total_steps=10"), tmp_path / "ok")


def test_an_actor_on_the_encoders_estimate_alone_reads_no_embedding(encoder_file, tmp_path):
    # agent.encoder_features=estimate: `image_features` is the encoder's normalised estimate of the state, not its
    # embedding, so a moved camera reaches the policy only through the positions the encoder reads.
    from robolearn.agents.pretrained import proprio_tensor

    env = env_of(train_config(encoder_file))
    try:
        cfg = AgentConfig(encoder="pretrained", encoder_weights=str(encoder_file), critic_only_keys=["privileged"],
                          actor_only_keys=[FEATURE_KEY], encoder_features="estimate", hidden_dim=32)
        agent = DrQAgent(env.observation_space, env.action_space, cfg)
        net = agent.frozen.net
        assert agent.frozen.out_dim == 13 and agent.learning_space[FEATURE_KEY].shape == (13,)
        assert agent.actor.net[0].in_features == 13 + 7 + 7 + 1  # the estimate + joints, no embedding
        obs = env.reset(seed=0)[0]
        images = {k: torch.as_tensor(np.asarray(obs[k])[None]) for k in net.image_keys}
        proprio = proprio_tensor({k: np.asarray(obs[k])[None] for k in net.proprio_keys}, net.proprio_keys, torch.device("cpu"))
        embedding, prediction = net.embed_and_predict(images, proprio)
        features = agent.observe(obs)[FEATURE_KEY]
        np.testing.assert_allclose(features, prediction[0].numpy(), rtol=1e-5, atol=1e-6)
        full = load_encoder(encoder_file, env.observation_space).featurize(obs, batched=False)[FEATURE_KEY]
        np.testing.assert_allclose(full, torch.cat([embedding, prediction], -1)[0].numpy(), rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="encoder_features must be one of"):
            DrQAgent(env.observation_space, env.action_space, AgentConfig(encoder="pretrained", encoder_weights=str(encoder_file),
                                                                          encoder_features="embedding"))
    finally:
        env.close()
    # Both runners train on it; the checkpoint remembers it and acts with the estimate where its encoder file is gone.
    for runner in ("inline", "async"):
        run(train_config(encoder_file, "agent.encoder_features=estimate", "total_steps=30", f"runner={runner}"), tmp_path / runner)
    payload = load_checkpoint(tmp_path / "inline")
    assert payload["agent_config"]["encoder_features"] == "estimate"
    env = env_of(train_config(encoder_file, "env.privileged=false"))
    try:
        policy = load_checkpoint_policy(env, str(tmp_path / "inline"))
        assert policy.agent.frozen.out_dim == 13
        assert np.isfinite(policy.act(env.reset(seed=1)[0])).all()
    finally:
        env.close()


def test_feature_noise_perturbs_the_features_in_updates_only(encoder_file, tmp_path):
    # agent.feature_noise: the learner's batches get noise on `image_features` (obs and next obs), nowhere else;
    # acting reads the features as they are.
    from robolearn.replay.batch import Batch

    env = env_of(train_config(encoder_file))
    try:
        cfg = AgentConfig(encoder="pretrained", encoder_weights=str(encoder_file), critic_only_keys=["privileged"],
                          actor_only_keys=[FEATURE_KEY], encoder_features="estimate", hidden_dim=32, feature_noise=0.5)
        agent = DrQAgent(env.observation_space, env.action_space, cfg)
        obs = agent.observe(env.reset(seed=0)[0])
        batch = {k: np.repeat(np.asarray(v)[None], 4, axis=0) for k, v in obs.items()}
        _, vector = agent.to_tensors(batch)
        draw = torch.ones(4, 13)
        noisy = agent.with_feature_noise(vector, draw)
        assert agent.vector_keys[0] == FEATURE_KEY
        np.testing.assert_allclose((noisy - vector)[:, :13].numpy(), 0.5, atol=1e-6)  # the estimate moved by std x draw
        assert torch.equal(noisy[:, 13:], vector[:, 13:])  # joints and the critic's privileged state untouched
        assert not torch.equal(agent.with_feature_noise(vector), agent.with_feature_noise(vector))  # fresh draws
        # An update runs with it; acting is the same with and without the noise setting.
        b = Batch(obs=batch, action=np.zeros((4, 8), np.float32), reward=np.zeros(4, np.float32),
                  discount=np.full(4, 0.99, np.float32), next_obs=batch)
        assert np.isfinite(list(agent.update(b).values())).all()
        quiet = DrQAgent(env.observation_space, env.action_space, AgentConfig(**{**cfg.__dict__, "feature_noise": 0.0}))
        quiet.load_state_dict(agent.state_dict())
        raw = env.reset(seed=3)[0]
        np.testing.assert_array_equal(agent.act(raw, deterministic=True), quiet.act(raw, deterministic=True))
        with pytest.raises(ValueError, match="agent.feature_noise"):
            DrQAgent(env.observation_space, env.action_space, AgentConfig(feature_noise=0.1))
    finally:
        env.close()
