"""Interventions during online training (robolearn/interventions.py): the scripted intervener's triggers and
hand-back, segments sent as demo episodes, and the actor role end to end against a replay server: in sim with
the scripted intervener, and on the fake arm with a person's keys, whose commands pass the safety layer and
are stored as executed."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from robolearn.config import ConfigError, load_typed
from robolearn.interventions import DEMO_STREAM_SUFFIX, InterventionConfig, InterventionSegments, TakeoverCut
from sim.intervener import ScriptedIntervener, kettle_tilt_deg
from robolearn.paths import CONFIG_DIR
from robolearn.replay.codec import INTERVENTION_VERSION, SEED_ACTION_VERSION
from robolearn.replay.config import ServerConfig
from tests.transport_cases import running_server, transport

pytestmark = pytest.mark.timeout(180)


# -- the scripted intervener, on a stand-in scene --------------------------------------------------------
class Scene:
    """`privileged_state()` as the sim lays it out (kettle pos, quat w x y z, handle, sink); tilt settable."""

    def __init__(self):
        self.tilt_rad = 0.0

    @property
    def unwrapped(self):
        return self

    def privileged_state(self):
        half = self.tilt_rad / 2
        return np.array([0.5, 0, 0.1, math.cos(half), math.sin(half), 0, 0, 0.5, 0.1, 0.1, 0.5, 0.4, 0.0], np.float32)


class Script:
    """The expert's interface: take_over, act, phase."""

    def __init__(self):
        from sim.expert import Phase

        self.phase, self.takeovers = Phase.APPROACH, 0

    def take_over(self, obs):
        self.takeovers += 1

    def act(self, obs):
        return np.full(8, 0.5, np.float32)


def drive(intervener, rewards):
    """Who acted at each step, feeding the given rewards."""
    who = []
    for reward in rewards:
        who.append(intervener.act({}) is not None)
        intervener.observe(reward, {})
    return who


def test_the_scripted_intervener_takes_over_when_progress_stalls_and_hands_back_after_max_steps():
    cfg = InterventionConfig(by="scripted", stall_steps=3, progress=0.01, max_steps=2, max_per_episode=2)
    script = Script()
    intervener = ScriptedIntervener(Scene(), cfg, expert=script)
    # Rising reward for 3 steps (progress), then flat: after 3 steps without progress it takes over for 2 steps,
    # hands back, and the policy gets 4 steps (the first sets the reward to beat, 3 without progress) before the
    # second (last) takeover.
    rewards = [-1.0, -0.9, -0.8] + [-0.8] * 17
    who = drive(intervener, rewards)
    first = 3 + 3  # three steps of progress, three without
    assert who[:first] == [False] * first
    assert who[first:first + 2] == [True, True]
    assert who[first + 2:first + 2 + 4] == [False] * 4 and who[first + 6:first + 8] == [True, True]
    assert not any(who[first + 8:]) and script.takeovers == 2 and intervener.reason == "stall"
    intervener.reset()
    assert drive(intervener, [-0.5] * 5)[-1]  # a new episode: the takeovers count again


def test_progress_that_keeps_coming_is_never_interrupted_and_a_tilting_kettle_is_taken_over_at_once():
    cfg = InterventionConfig(by="scripted", stall_steps=3, progress=0.01, tilt_deg=25.0, max_steps=50)
    scene = Scene()
    intervener = ScriptedIntervener(scene, cfg, expert=Script())
    assert not any(drive(intervener, [-1.0 + 0.02 * i for i in range(30)]))
    scene.tilt_rad = math.radians(24.0)
    assert kettle_tilt_deg(scene.privileged_state()) == pytest.approx(24.0, abs=1e-3)
    assert not drive(intervener, [1.0])[0]
    scene.tilt_rad = math.radians(26.0)
    assert drive(intervener, [1.0])[0] and intervener.reason == "tilt"


def test_a_fading_intervener_takes_over_less_as_its_steps_add_up_and_never_after_fade_steps():
    cfg = InterventionConfig(by="scripted", stall_steps=2, progress=0.01, max_steps=1, max_per_episode=1000, fade_steps=2000)
    script = Script()
    intervener = ScriptedIntervener(Scene(), cfg, expert=script)
    who = drive(intervener, [-1.0] * 3000)  # never any progress: a trigger every few steps
    early, late, after = sum(who[:500]), sum(who[1000:1500]), sum(who[2000:])
    assert early > 1.3 * late > 0 and after == 0, (early, late, after)
    assert intervener.steps_seen == 3000
    intervener.reset()  # a new episode does not reset the fading: it counts the actor's steps
    assert not any(drive(intervener, [-1.0] * 50))
    # Without fading the same stream is taken over every few steps to the end.
    always = ScriptedIntervener(Scene(), InterventionConfig(by="scripted", stall_steps=2, progress=0.01, max_steps=1,
                                                             max_per_episode=1000), expert=Script())
    assert sum(drive(always, [-1.0] * 3000)[2000:]) > 200
    with pytest.raises(ConfigError, match="intervention.fade_steps"):
        InterventionConfig(fade_steps=-1)


def test_the_expert_taking_over_mid_episode_finishes_the_task_from_any_phase():
    from robolearn.envs import make_env
    from robolearn.rollout import run_episode
    from sim.expert import KettleSinkExpert

    env = make_env({"privileged": True, "cameras": [], "randomization": {"enabled": False}})
    try:
        for switch in (30, 60):  # grasping, and carrying the kettle: a kettle in hand is carried on, not dropped
            first, second = KettleSinkExpert(env), KettleSinkExpert(env)
            steps = [0]

            def act(obs):
                steps[0] += 1
                if steps[0] == switch + 1:
                    second.take_over(obs)
                return (first if steps[0] <= switch else second).act(obs)

            assert run_episode(env, act, seed=3).success
    finally:
        env.close()


def test_intervention_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="intervention.by"):
        InterventionConfig(by="joystick")
    with pytest.raises(ConfigError, match="intervention.tilt_deg"):
        InterventionConfig(tilt_deg=0)
    from robolearn.training.config import TrainConfig

    with pytest.raises(ConfigError, match="runner=async"):
        TrainConfig(runner="inline", intervention=InterventionConfig(by="scripted"))


class Sink:
    def __init__(self):
        self.records = []

    def start_episode(self, obs):
        self.records.append(("start", obs["x"]))

    def add(self, action, reward, terminated, truncated, next_obs, version):
        self.records.append(("step", next_obs["x"], terminated, truncated, version))


def test_segments_are_sent_as_episodes_truncated_where_handed_back_and_terminated_where_the_env_ended():
    sink = Sink()
    segments = InterventionSegments(sink)
    obs = [{"x": i} for i in range(10)]
    for i, intervened in enumerate([False, True, True, False, True]):
        segments.step(intervened, obs[i], np.zeros(2), 0.0, False, False, obs[i + 1])
    segments.step(True, obs[5], np.zeros(2), 1.0, True, False, obs[6])  # the env ends the episode in the second segment
    assert sink.records == [("start", 1), ("step", 2, False, False, INTERVENTION_VERSION), ("step", 3, False, True, INTERVENTION_VERSION),
                            ("start", 4), ("step", 5, False, False, INTERVENTION_VERSION), ("step", 6, True, False, INTERVENTION_VERSION)]
    assert segments.segments == 2 and segments.steps == 4
    segments.step(True, obs[7], np.zeros(2), 0.0, False, False, obs[8])
    segments.end()  # the episode stopped (a stop request, a lost link): bootstrapped there
    assert sink.records[-1] == ("step", 8, False, True, INTERVENTION_VERSION)
    segments.end()
    assert segments.segments == 3


class RewardSink(Sink):
    def add(self, action, reward, terminated, truncated, next_obs, version):
        self.records.append(("step", next_obs["x"], reward, terminated, truncated, version))


def test_the_policys_stretch_ends_terminated_and_penalised_where_someone_takes_over():
    sink = RewardSink()
    cut = TakeoverCut(sink, penalty=100.0)
    sink.start_episode({"x": 0})
    obs = [{"x": i} for i in range(10)]
    # policy, policy, takeover, takeover, handed back, policy, and the env ends the episode.
    for i, intervened in enumerate([False, False, True, True, False, False]):
        cut.step(intervened, obs[i], np.zeros(2), -1.0, i == 5, False, obs[i + 1], INTERVENTION_VERSION if intervened else 7)
    assert sink.records == [
        ("start", 0), ("step", 1, -1.0, False, False, 7),
        ("step", 2, -101.0, True, False, 7),  # the policy's last step before the takeover: terminated, penalised
        ("start", 2),  # the intervention starts an episode of its own where it took over
        ("step", 3, -1.0, False, False, INTERVENTION_VERSION), ("step", 4, -1.0, False, False, INTERVENTION_VERSION),
        ("step", 5, -1.0, False, False, 7), ("step", 6, -1.0, True, False, 7)]
    assert cut.cuts == 1
    cut.step(False, obs[0], np.zeros(2), -1.0, False, False, obs[1], 7)
    assert sink.records[-1][1] == 6  # held back until the next step says who acts
    cut.flush()  # the episode stopped without an end: sent as it was
    assert sink.records[-1] == ("step", 1, -1.0, False, False, 7)
    straight = RewardSink()
    TakeoverCut(straight, penalty=0.0).step(False, obs[0], np.zeros(2), -1.0, False, False, obs[1], 7)
    assert straight.records == [("step", 1, -1.0, False, False, 7)]  # no penalty: nothing held, nothing cut


# -- the actor role, against a replay server ------------------------------------------------------------
def role_config(name: str, tmp_path, cfg, *overrides):
    from robolearn.roles.config import AsyncConfig

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        node = compose(config_name=name, overrides=[
            f"run_dir={tmp_path}", f"transport.port={cfg.port}", f"transport.weights_port={cfg.weights_port}",
            f"transport.heartbeat_s={cfg.heartbeat_s}", f"transport.peer_timeout_s={cfg.peer_timeout_s}",
            "transport.insecure_no_keys=true", "actor.flush_timeout_s=10", *overrides])
    return load_typed(AsyncConfig, node, name)


def stored(storage):
    n = storage.total
    return {"version": storage.policy_version[:n].copy(), "action": storage.action[:n].copy(),
            "terminated": storage.terminated[:n].copy(), "truncated": storage.truncated[:n].copy(), "reward": storage.reward[:n].copy()}


def test_a_sim_actor_with_the_scripted_intervener_stores_its_steps_flagged_online_and_as_demos(tmp_path):
    from robolearn.roles.actor import Actor

    net = transport()
    cfg = role_config("async_state", tmp_path, net, "actor.total_steps=150", "actor.name=sim0", "env.episode_seconds=5",
                      "actor.intervention.by=scripted", "actor.intervention.stall_steps=5", "actor.intervention.max_steps=12",
                      "actor.intervention.max_per_episode=2")
    actor = Actor(cfg)
    try:
        assert actor.segments.sink.name == "sim0" + DEMO_STREAM_SUFFIX
        with running_server(tmp_path / "replay", net, ServerConfig(capacity=1000, demo_capacity=1000),
                            actor.agent.learning_space, actor.env.action_space.shape) as server:
            result = actor.run()
            alive = server._status()["actors_alive"]  # both streams still heartbeating
            assert actor.close()  # both streams acknowledged
            status = server._status()
            online, demos = stored(server.storage), stored(server.demos)
    finally:
        actor.env.close()
    steps = result["intervention_steps"]
    # Random seed actions (no learner) make no progress: the expert takes over twice an episode, 12 steps each.
    assert result["steps"] >= 150 and 0 < steps < result["steps"] and result["intervention_segments"] >= 2
    assert result["intervention_share"] == pytest.approx(steps / result["steps"])
    flagged = online["version"] == INTERVENTION_VERSION
    assert flagged.sum() == steps == status["intervention_transitions"]
    assert alive == 1  # its intervention stream is not another actor
    assert set(online["version"][~flagged].tolist()) == {SEED_ACTION_VERSION}
    # The same steps again in the demo store, each segment an episode ending truncated (or where the env ended it).
    assert status["demo_transitions"] == steps == server.demos.num_transitions()
    demo_steps = demos["version"] == INTERVENTION_VERSION
    np.testing.assert_array_equal(demos["action"][demo_steps], online["action"][flagged])
    np.testing.assert_array_equal(demos["reward"][demo_steps], online["reward"][flagged])
    ends = demos["terminated"][demo_steps] | demos["truncated"][demo_steps]
    assert ends.sum() == result["intervention_segments"] and ends[-1]
    # Online, the policy's stretch before each takeover ends terminated with the penalty (a kettle knocked off
    # the counter would add one more such row).
    penalised = (online["version"] == SEED_ACTION_VERSION) & online["terminated"] & (online["reward"] < -90)
    assert penalised.sum() >= result["takeover_cuts"] == result["intervention_segments"]


def test_a_person_intervening_on_an_arm_actor_drives_through_the_safety_layer_and_is_stored_as_executed(tmp_path):
    from hardware.teleop import ScriptedKeys, TeleopCommander
    from hardware.teleop.session import HumanIntervener
    from robolearn.envs import make_env
    from robolearn.roles.actor import Actor
    from tests.test_teleop import spy_on_driver

    net = transport()
    cfg = role_config("async_real_fake", tmp_path, net, "env.hardware.loop.clock=virtual", "env.episode_seconds=2",
                      "env.hardware.resets.joint_noise_rad=0.0", "actor.total_steps=20", "actor.name=arm", "actor.on_learner_loss=continue",
                      "agent.hidden_dim=32", "agent.feature_dim=16")
    said = []
    arm = make_env(cfg.env)
    env = arm.unwrapped
    # Poll i is made at step i: take over at step 3, drive joint 1 down at full speed, close, hand back at step 9.
    keys = ScriptedKeys({3: ["i", "a"], 4: ["a"], 5: ["a"], 6: ["a", "c"], 7: ["a"], 9: ["i"]})
    human = HumanIntervener(keys, TeleopCommander(env.contract, "joint", speed=1.0), env.clock, say=said.append)
    actor = Actor(cfg, env=arm, operator=None, intervener=human)
    sent = spy_on_driver(env)
    try:
        with running_server(tmp_path / "replay", net, ServerConfig(capacity=1000, demo_capacity=1000),
                            actor.agent.learning_space, actor.env.action_space.shape) as server:
            result = actor.run()
            assert actor.close()
            online, demos = stored(server.storage), stored(server.demos)
    finally:
        actor.env.close()
    assert said == ["human has control", "policy has control"] and result["intervention_steps"] == 6
    flagged = np.flatnonzero(online["version"] == INTERVENTION_VERSION)
    # A row per step, its action and reward: steps 3-8. The policy's step 2 ends its stretch, terminated and
    # penalised; the takeover starts an episode of its own (one more row: its first observation).
    assert flagged.tolist() == [4, 5, 6, 7, 8, 9]
    assert online["terminated"][2] and online["reward"][2] < -90 and online["version"][2] == SEED_ACTION_VERSION
    assert not online["terminated"][:2].any() and not online["terminated"][4:].any()
    # Stored as executed: what the driver received after the safety layer, in the policy's action space.
    executed = np.stack(sent[-20:][3:9]) / env.contract.command_limits
    np.testing.assert_allclose(online["action"][flagged][:, :7], executed, atol=1e-6)
    assert online["action"][flagged][0, 0] > -1.0  # the human's full speed arrives ramped by the rate limiter
    assert online["action"][flagged][3:, 7].tolist() == [1.0, 1.0, 1.0]  # gripper closed at step 6
    assert not env.latched
    demo_steps = demos["version"] == INTERVENTION_VERSION
    np.testing.assert_array_equal(demos["action"][demo_steps], online["action"][flagged])
    assert demos["truncated"][demo_steps].tolist() == [False] * 5 + [True]  # handed back: bootstrapped


def test_a_replay_file_with_intervention_rows_exports_them_flagged(tmp_path):
    from gymnasium import spaces

    from robolearn.dataset.export import open_source
    from robolearn.replay import ReplayStorage

    space = spaces.Dict({"joint_pos": spaces.Box(-4, 4, (7,), np.float32)})
    store = ReplayStorage(space, (8,), 20)
    store.start_episode({"joint_pos": np.zeros(7, np.float32)})
    for i, version in enumerate([SEED_ACTION_VERSION, 3, INTERVENTION_VERSION, INTERVENTION_VERSION, 4]):
        store.add(np.zeros(8), 0.0, False, i == 4, {"joint_pos": np.full(7, i, np.float32)}, policy_version=version)
    store.save(tmp_path / "replay.npz")
    source = open_source(tmp_path / "replay.npz")
    assert source.intervention.tolist() == [False, False, True, True, False, False]  # a row: an observation and the action taken on it
    assert open_source(tmp_path / "replay.npz", intervention="false").intervention.sum() == 0


def test_the_person_intervening_answers_a_fault_prompt_with_the_same_keys():
    from hardware.teleop import ScriptedKeys
    from robolearn.roles.actor import KeysOperator

    operator = KeysOperator(ScriptedKeys({0: ["a"], 1: ["enter"], 2: ["x", "q"]}))
    assert [operator.poll(), operator.poll(), operator.poll(), operator.poll()] == [None, "\n", "q", None]


class FakeSpaceMouse:
    """pyspacemouse's device: read() -> a state with x, y, z and buttons; `states` one per read, the last repeated."""

    def __init__(self, states):
        self.states, self.connected, self.closed = list(states), True, False

    def read(self):
        if len(self.states) > 1:
            return self.states.pop(0)
        if self.states[0] == "unplugged":
            raise OSError("read error")
        return self.states[0]

    def close(self):
        self.closed = True


def test_a_spacemouse_moves_the_hand_along_the_base_axes_and_its_buttons_toggle_the_takeover_and_the_gripper():
    from types import SimpleNamespace

    from hardware.teleop.spacemouse import SpaceMouseReader

    def state(x=0.0, y=0.0, z=0.0, buttons=(0, 0)):
        return SimpleNamespace(x=x, y=y, z=z, buttons=list(buttons))

    held_at_start = state(buttons=(1, 0))
    script = [held_at_start, state(y=0.5, buttons=(1, 0)), state(x=-0.6, z=0.1, buttons=(0, 1)), state(buttons=(1, 0)),
              state(buttons=(0, 1)), state(z=-0.9)]
    reader = SpaceMouseReader(FakeSpaceMouse(script), dead_zone=0.2, reads_per_poll=1).start()
    polls = [reader.poll() for _ in range(5)]
    # A button held at start is no press; pushed away: -x; left: -y, right button: close; left button: take over;
    # right button again: open; pressed down: -z (repeated while held).
    assert polls == [["s"], ["c", "d"], ["i"], ["o"], ["f"]]
    assert reader.poll() == ["f"]
    reader.device.states = ["unplugged"]
    assert reader.poll() == [] and "read error" in reader.fault and reader.poll() == []
    reader.close()
    assert reader.device.closed


def test_a_spacemouse_needs_the_end_effector_mode():
    with pytest.raises(ConfigError, match="teleop_mode"):
        InterventionConfig(by="spacemouse", teleop_mode="joint")
