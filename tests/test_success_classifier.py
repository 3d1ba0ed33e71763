"""The success classifier (robolearn/success_classifier.py): its threshold and error rates, its inputs, and the
command end to end on a tiny sim collection with a tiny encoder: the file records its held-out error rates, and
loading it checks the encoder it was made on and those rates."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from robolearn.paths import CONFIG_DIR
from robolearn.success_classifier import (ClassifierFileError, check_error_rates, choose_threshold, error_rates, load_classifier,
                                          stack_inputs, train_and_save)

pytestmark = pytest.mark.timeout(300)


def test_the_threshold_keeps_false_positives_within_the_limit_with_the_fewest_misses():
    rng = np.random.default_rng(0)
    label = rng.uniform(size=2000) < 0.3
    prob = np.clip(np.where(label, rng.normal(0.8, 0.15, 2000), rng.normal(0.2, 0.15, 2000)), 0, 1)
    for limit in (0.0, 0.01, 0.05):
        threshold = choose_threshold(prob, label, limit)
        assert error_rates(prob, label, threshold)["false_positive"] <= limit
        lower = np.nextafter(threshold, -np.inf)  # any lower threshold breaks the limit (the fewest misses)
        assert error_rates(prob, label, lower)["false_positive"] > limit or lower <= prob[~label].min()
    rates = error_rates(np.array([0.9, 0.1, 0.6, 0.4]), np.array([True, True, False, False]), 0.5)
    assert rates == {"false_positive": 0.5, "false_negative": 0.5, "positives": 2, "negatives": 2}


def test_two_frame_inputs_are_the_change_within_an_episode_never_across_episodes():
    features = np.arange(10, dtype=np.float32).reshape(5, 2)
    episode = np.array([0, 0, 0, 1, 1])
    x = stack_inputs(features, episode, 2)
    np.testing.assert_array_equal(x[:, :2], features)
    np.testing.assert_array_equal(x[:, 2:], [[0, 0], [2, 2], [2, 2], [0, 0], [2, 2]])
    np.testing.assert_array_equal(stack_inputs(features, episode, 1), features)


def test_a_classifier_over_its_limits_is_refused_naming_its_rates():
    meta = {"test": {"false_positive": 0.03, "false_negative": 0.01}}
    check_error_rates(meta, 0.05, 0.05, "c.pt")
    with pytest.raises(ClassifierFileError, match=r"3.0% of the failure frames a success.*limits are 1.0%"):
        check_error_rates(meta, 0.01, 0.05, "c.pt")


def test_the_command_writes_a_classifier_with_its_held_out_rates_bound_to_its_encoder(tmp_path):
    from robolearn.agents.pretrained import load_encoder
    from robolearn.envs import make_env
    from robolearn.pretrain import pretrain
    from tests.test_pretrain import pretrain_config

    encoder_path, other_path = tmp_path / "enc.pt", tmp_path / "other.pt"
    pretrain(pretrain_config(encoder_path))
    pretrain(pretrain_config(other_path, "seed=1"))
    out = tmp_path / "success.pt"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="success_classifier", overrides=[
            f"encoder={encoder_path}", f"out={out}", "episodes=7", "random_fraction=0", "epochs=5", "progress=false",
            "env.episode_seconds=14", "val_fraction=0.15", "test_fraction=0.15"])
    meta = train_and_save(cfg)
    assert meta["episodes"] == 7 and meta["frames_labelled"] == 7 * 141
    assert meta["test"]["episodes"] == 1 and meta["validation"]["episodes"] == 1
    assert meta["train"]["positives"] > 0 and meta["train"]["negatives"] > 0  # the expert ran on past its successes
    assert meta["validation"]["false_positive"] <= 0.01  # the threshold's own limit, where it was chosen
    assert (tmp_path / "success.data.npz").exists()
    # Episodes are seeded by index: fewer are the file's first ones (the file stays whole), more are collected on.
    before = dict(np.load(tmp_path / "success.data.npz"))
    assert train_and_save(OmegaConf.merge(cfg, {"episodes": 5}))["frames_labelled"] == 5 * 141
    assert int(np.load(tmp_path / "success.data.npz")["episodes"]) == 7
    assert train_and_save(OmegaConf.merge(cfg, {"episodes": 8}))["frames_labelled"] == 8 * 141
    after = dict(np.load(tmp_path / "success.data.npz"))
    assert int(after["episodes"]) == 8
    np.testing.assert_array_equal(after["features"][: 7 * 141], before["features"])
    env = make_env({"cameras": [{"name": "front"}, {"name": "wrist"}], "episode_seconds": 1})
    try:
        encoder = load_encoder(encoder_path, env.observation_space)
        other = load_encoder(other_path, env.observation_space)
    finally:
        env.close()
    classifier = load_classifier(out, encoder, max_false_positive=1.0, max_false_negative=1.0)
    assert 0.0 <= classifier.probability(np.zeros(encoder.out_dim, np.float32)) <= 1.0
    with pytest.raises(ClassifierFileError, match="another encoder"):
        load_classifier(out, other, max_false_positive=1.0, max_false_negative=1.0)
    with pytest.raises(ClassifierFileError, match="does not exist"):
        load_classifier(tmp_path / "missing.pt")


def test_the_classifier_reward_source_ends_episodes_by_its_success_and_shapes_on_the_encoders_estimates(tmp_path):
    from robolearn.config import ConfigError, load_env_config
    from robolearn.envs import make_env
    from robolearn.pretrain import pretrain
    from robolearn.reward_source import ClassifierReward
    from sim.expert import KettleSinkExpert
    from tests.test_pretrain import pretrain_config

    encoder_path, out = tmp_path / "enc.pt", tmp_path / "success.pt"
    pretrain(pretrain_config(encoder_path))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        train_and_save(compose(config_name="success_classifier", overrides=[
            f"encoder={encoder_path}", f"out={out}", "episodes=5", "random_fraction=0", "epochs=3", "progress=false",
            "env.episode_seconds=14", "val_fraction=0.2", "test_fraction=0.2"]))
    reward = {"source": "classifier", "classifier": str(out), "max_false_positive": 1.0, "max_false_negative": 1.0}
    with pytest.raises(ConfigError, match="env.terminate_on_success=false"):
        load_env_config({"reward": reward})
    base = {"privileged": True, "episode_seconds": 14, "terminate_on_success": False, "randomization": {"enabled": False}}
    env = make_env({**base, "reward": reward})
    assert isinstance(env, ClassifierReward)
    # The shaping on perfect estimates is the task's own (the simulator's terms), up to the hand's forward kinematics.
    obs, _ = env.reset(seed=5)
    expert = KettleSinkExpert(env)
    for _ in range(140):
        obs, r, terminated, truncated, info = env.step(expert.act(obs))
        truth = (obs["privileged"] - env._mean[:13]) / env._std[:13]
        features = np.concatenate([np.zeros(env.encoder.out_dim - env._target_dim, np.float32), truth,
                                   np.zeros(env._target_dim - 13, np.float32)])
        terms = info["reward_terms"]
        assert env.estimated_shaping(features, obs["joint_pos"]) == pytest.approx(terms["kettle_to_sink"] + terms["reach_handle"], abs=2e-3) \
            or info["success"]  # after the success the task stops shaping the reach
        assert "env_reward" in info and terminated == info["classified_success"]
        if info["classified_success"]:
            break
        assert r <= 0.0
    env.classifier.threshold = 0.0  # a classifier that says success: the episode ends there, with the bonus
    env.reset(seed=6)
    obs, r, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert terminated and info["classified_success"] and not info["success"] and r > 10.0 - 3.0
    assert info["success_at_end"] is False  # judged after the arm stopped too: the kettle is still at its start
    env.close()
    both = make_env({**base, "reward": {**reward, "source": "both"}})
    obs, _ = both.reset(seed=5)
    obs, r, terminated, truncated, info = both.step(np.zeros(both.action_space.shape, np.float32))
    bonus = 10.0 if info["classified_success"] else 0.0
    assert r == pytest.approx(info["env_reward"] - info["reward_terms"]["success_bonus"] + bonus)
    both.close()


def test_the_arms_recordings_are_labelled_by_where_their_frames_lie(tmp_path):
    from robolearn.agents.pretrained import load_encoder
    from robolearn.config import load_typed
    from robolearn.pretrain import pretrain
    from robolearn.replay import ReplayStorage
    from robolearn.spec import EnvSpec
    from robolearn.success_classifier import SuccessClassifierConfig, load_recordings
    from tests.test_pretrain import pretrain_config

    encoder_path = tmp_path / "enc.pt"
    pretrain(pretrain_config(encoder_path))
    space = EnvSpec.from_config({}).observation_space()
    space.seed(0)
    files = {}
    for name, episodes in (("teleop", 2), ("rollouts", 1)):
        store = ReplayStorage(space, (8,), 100)
        for _ in range(episodes):
            store.start_episode(space.sample())
            for t in range(20):
                store.add(np.zeros(8), 0.0, False, t == 19, space.sample())
        files[name] = tmp_path / f"{name}.npz"
        store.save(files[name])
    cfg = load_typed(SuccessClassifierConfig, {"env": {}, "episodes": 0, "recordings": [str(files["teleop"])],
                                               "negative_recordings": [str(files["rollouts"])], "positive_tail": 5,
                                               "negative_fraction": 0.5}, "test")
    data = load_recordings(cfg, load_encoder(encoder_path, space))
    episodes = np.unique(data["episode"])
    assert len(episodes) == 3  # the teleop file's two, the rollouts' one
    for e in episodes[:2]:  # 21 frames: the first 10 failures, the last 5 successes, the 6 between left out
        assert data["label"][data["episode"] == e].tolist() == [False] * 10 + [True] * 5
    assert not data["label"][data["episode"] == episodes[2]].any() and (data["episode"] == episodes[2]).sum() == 21
    assert data["features"].shape == (2 * 15 + 21, load_encoder(encoder_path, space).out_dim)

    # A person's marks (key m during teleop) label their episodes instead, and survive appending to the file.
    from robolearn.replay.recording import EpisodeRecorder

    marked = tmp_path / "marked.npz"
    for mark_at in (12, None):  # the second session's episode is not marked: labelled by position
        recorder = EpisodeRecorder.open(marked, space, (8,), room=50)
        recorder.begin(space.sample())
        for t in range(20):
            recorder.add(np.zeros(8), 0.0, False, False, space.sample())
            if t + 1 == mark_at:
                assert recorder.mark_success() == 12  # the latest observation: frame 12
        assert recorder.end() == 20
        recorder.save()
    cfg = load_typed(SuccessClassifierConfig, {"env": {}, "episodes": 0, "recordings": [str(marked)], "positive_tail": 5,
                                               "negative_fraction": 0.5, "mark_margin": 3}, "test")
    data = load_recordings(cfg, load_encoder(encoder_path, space))
    first, second = np.unique(data["episode"])
    # Frames 0-8 failures, 9-11 left out (the person's reaction), 12-20 successes.
    assert data["label"][data["episode"] == first].tolist() == [False] * 9 + [True] * 9
    assert data["label"][data["episode"] == second].tolist() == [False] * 10 + [True] * 5


def test_episode_outcomes_say_what_episodes_ended_by_the_classifier_would_see():
    from robolearn.success_classifier import episode_outcomes

    episode = np.repeat([0, 1, 2, 3], 6)
    label = np.array([0, 0, 0, 1, 1, 1,  # success from frame 3; fired at 4: a delay of 1
                      0, 0, 0, 1, 0, 1,  # flickering truth, fired at 1: ended early
                      0, 0, 0, 0, 0, 0,  # no success, never fired: fine
                      0, 0, 1, 1, 1, 1], bool)  # success from 2, never fired
    said = np.array([0, 0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    out = episode_outcomes(said, label, episode)
    assert out == {"ended_early": 0.25, "never_fired": pytest.approx(1 / 3), "median_delay_frames": 1.0}


def test_the_sims_judge_after_the_arm_stops_counts_a_kettle_that_settles_in_the_basin_and_nothing_short_of_it():
    # Where an arm's success classifier ends an episode, a person looks at the sink once the arm has stopped.
    from robolearn.envs import make_env
    from sim.expert import KettleSinkExpert

    cfg = {"episode_seconds": 20, "terminate_on_success": False, "randomization": {"enabled": False}, "cameras": []}

    def expert_steps(n: int):
        env = make_env(cfg)
        expert = KettleSinkExpert(env)
        obs, info = env.reset(seed=1)
        for _ in range(n):
            obs, _, _, _, info = env.step(expert.act(obs))
        return env, info

    env, _ = expert_steps(0)
    assert not env.unwrapped.success_after_stop(1.0)  # the kettle at its start stays there
    env.close()
    env, first = make_env(cfg), None
    expert = KettleSinkExpert(env)
    obs, _ = env.reset(seed=1)
    for t in range(200):
        obs, _, _, _, info = env.step(expert.act(obs))
        if info["success"]:
            first = t + 1
            break
    env.close()
    assert first is not None
    env, info = expert_steps(first - 1)  # lowered into the basin, still settling: not a success yet
    assert not info["success"] and env.unwrapped.success_after_stop(1.0)
    env.close()
    env, info = expert_steps(first - 8)  # still on its way down: held where the arm stopped, never in the basin
    assert not info["success"] and not env.unwrapped.success_after_stop(1.0)
    env.close()


def test_the_shapings_estimates_are_the_median_of_the_last_frames_so_one_frames_jump_moves_nothing():
    from robolearn.config import ConfigError, RewardSourceConfig
    from robolearn.reward_source import RecentEstimates

    def frame(x):
        return {"kettle_pos": np.array([x, 0.0, 0.1]), "handle_pos": np.array([x, 0.1, 0.2]), "sink_pos": np.zeros(3)}

    recent = RecentEstimates(3)
    assert recent.add(frame(0.50))["kettle_pos"][0] == pytest.approx(0.50)
    recent.add(frame(0.51))
    assert recent.add(frame(0.90))["kettle_pos"][0] == pytest.approx(0.51)  # a 40 cm jump in one frame: ignored
    assert recent.add(frame(0.52))["handle_pos"][0] == pytest.approx(0.52)  # the window moves on
    recent.clear()
    assert recent.add(frame(0.90))["kettle_pos"][0] == pytest.approx(0.90)  # a new episode starts afresh
    one = RecentEstimates(1)
    one.add(frame(0.5))
    assert one.add(frame(0.9))["kettle_pos"][0] == pytest.approx(0.9)  # window 1: this frame's
    with pytest.raises(ConfigError, match="env.reward.estimate_window"):
        RewardSourceConfig(estimate_window=0)
