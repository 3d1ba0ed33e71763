"""Deploy: a checkpoint trained for a few updates in sim runs on the real-robot env backed by franky-sim
(the libfranka protocol, in its own process) and fake cameras, through the same actor path as training,
with the pre-flight check first and every safety event reported. Plus the fake-arm paths: the command
line, a latched fault ending the run, and the online-mode hook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import hardware.deploy.command  # noqa: F401 - registers deploy_schema, which configs/deploy.yaml starts from
from robolearn.config import ConfigError
from robolearn.paths import CONFIG_DIR
from tests.hardware_franky_sim import SIM_STATE_AGE_S, FrankySim

# A few DrQ updates on the pixel sim (two 84x84 cameras + proprioception, as the real env), FR3 robot; inline, so the
# update count is exact (the async runner stops its learner wherever it is when the actors finish).
TINY_TRAIN = ["env=kettle_sink", "env.robot=fr3", "env.episode_seconds=1", "agent.hidden_dim=32", "agent.feature_dim=16",
              "batch_size=8", "seed_steps=10", "total_steps=20", "eval.every=1000000", "eval.final=false", "progress=false",
              "demos.episodes=0", "torch_threads=1", "replay.capacity=100", "save_every=1000", "runner=inline"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from robolearn.checkpoint import load_checkpoint
    from robolearn.train import run

    run_dir = tmp_path_factory.mktemp("train")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train_drq", overrides=TINY_TRAIN)
    run(cfg, run_dir)
    assert load_checkpoint(run_dir)["counters"]["updates"] == 11  # learning starts at step 10: steps 10..20 update once each
    return run_dir


def deploy_config(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="deploy", overrides=list(overrides))


@pytest.mark.timeout(180)
def test_a_sim_trained_checkpoint_deploys_on_franky_sim_with_safety_events_reported(checkpoint, tmp_path):
    pytest.importorskip("franky", reason="franky-control is not installed (pip install franky-control)")
    from hardware.deploy.command import run

    sim = FrankySim("127.0.0.8")
    try:
        sim.start()
    except RuntimeError as exc:
        pytest.skip(f"franky-sim cannot run here: {exc}")
    try:
        cfg = deploy_config(
            f"checkpoint={checkpoint}", "episodes=1", "resets@env.hardware.resets=unattended", f"output_dir={tmp_path}", "video=true", "progress=false",
            "robot@env.hardware.driver=franka_sim", "env.robot=fr3", f"env.hardware.driver.host={sim.host}", "env.episode_seconds=1",
            "env.hardware.resets.max_speed=0.6", "env.hardware.resets.joint_noise_rad=0.0",
            # franky-sim steps MuJoCo in Python and stalls on a loaded machine (tests/hardware_franky_sim.py)
            f"env.hardware.safety.max_state_age_s={SIM_STATE_AGE_S}", "preflight.camera_window_s=0.5", "preflight.vendor_stop_margin_s=0.6",
        )
        result = run(cfg, say=lambda m: None)
    finally:
        sim.stop()
    # Pre-flight ran against franky-sim first: reachable, no error, and both watchdogs tripped.
    checks = {c["name"]: c for c in result["preflight"]["checks"]}
    assert result["preflight"]["ok"], checks
    assert checks["robot"]["status"] == "pass" and checks["watchdog"]["status"] == "pass"
    assert checks["watchdog"]["data"]["vendor_watchdog_stop_ms"] < 200 + 600  # 250-290 ms measured here
    # One episode of 10 steps through the safety layer, reported with its events.
    assert result["episodes"] == 1 and not result["stopped"], result["stopped"]
    episode = result["per_episode"][0]
    assert episode["length"] == 10 and episode["ended_by"] == "truncated"
    counters = result["safety_counters"]
    assert counters["sent"] > 10 and counters["latched"] == 0
    events = episode["safety_events"] + result["between_episode_events"]
    assert sum(result["safety_event_counts"].values()) == len(events) > 0
    # A late command on a loaded machine is a counted, non-fatal deadline miss (hardware/safety/layer.py); nothing
    # else of the watchdog may fire.
    assert {e["layer"] for e in events} <= {"clamp", "rate_limit", "joint_limit", "workspace", "estop", "watchdog"}
    assert all(e["kind"] == "deadline_miss" and not e["fatal"] for e in events if e["layer"] == "watchdog")
    assert all({"time", "layer", "kind", "message", "fatal"} <= set(e) for e in events)
    # The report and the camera video are written.
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["per_episode"][0]["length"] == 10
    video = imageio.mimread(tmp_path / "deploy.mp4")
    assert len(video) == 11 and video[0].shape[0] == 240


def test_the_deploy_command_runs_a_checkpoint_on_the_fake_arm(checkpoint, tmp_path):
    cmd = [sys.executable, "-m", "hardware.deploy", f"checkpoint={checkpoint}", "episodes=2", "env.robot=fr3", "env.episode_seconds=0.5",
           "env.hardware.loop.clock=virtual", "preflight.run=false", "resets@env.hardware.resets=unattended", f"output_dir={tmp_path}", "progress=false"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 2 and summary["success_known"] is False and summary["stopped"] == ""
    assert summary["safety_counters"]["sent"] >= 10
    assert (tmp_path / "report.json").exists()


def test_a_latched_fault_ends_the_run_and_is_never_cleared(checkpoint, tmp_path):
    from hardware import make_real_robot_env
    from hardware.deploy import run_deployment
    from robolearn.agents.policy import load_checkpoint_policy
    from tests.hardware_cases import real_fake_config

    cfg = real_fake_config()
    cfg.update(robot="fr3", episode_seconds=1.0)
    env = make_real_robot_env(cfg)
    try:
        policy = load_checkpoint_policy(env, str(checkpoint))

        def reflex_at_step_3(obs, action, reward, terminated, truncated, next_obs, info):
            if env.driver.commands_received and info["timing"] and reflex_at_step_3.steps == 3:
                env.driver.inject_reflex("cartesian reflex: collision detected")
            reflex_at_step_3.steps += 1

        reflex_at_step_3.steps = 0
        report = run_deployment(env, policy, episodes=3, on_transition=reflex_at_step_3, say=lambda m: None)
        assert len(report.episodes) == 1 and report.episodes[0].ended_by == "safety"
        assert "safety e-stop latched: driver: fake: cartesian reflex" in report.stopped and "run deploy again" in report.stopped
        fatal = [e for e in report.events() if e["fatal"]]
        assert fatal and fatal[0]["layer"] == "driver"
        assert env.latched  # still latched: only an operator clears it
    finally:
        env.close()


@pytest.mark.timeout(120)
def test_online_mode_streams_the_arm_to_a_replay_server_starting_from_the_checkpoint(checkpoint, tmp_path):
    import numpy as np

    from hardware.deploy.command import run
    from robolearn.spec import EnvSpec
    from robolearn.replay.config import ServerConfig
    from robolearn.transport.learner_client import LearnerClient
    from tests.transport_cases import running_server, transport

    link = transport()
    cfg = deploy_config(
        f"checkpoint={checkpoint}", "mode=online", "env.robot=fr3", "env.episode_seconds=1", "env.hardware.loop.clock=virtual",
        "preflight.run=false", f"output_dir={tmp_path}", f"transport.port={link.port}", f"transport.weights_port={link.weights_port}",
        "transport.heartbeat_s=0.1", "transport.peer_timeout_s=1.0", "transport.insecure_no_keys=true", "actor.total_steps=25", "actor.name=arm")
    spec = EnvSpec.from_config(cfg.env)
    space, action_shape = spec.observation_space(), (spec.action_dim,)
    with running_server(tmp_path / "replay", link, ServerConfig(capacity=1000), space, action_shape) as server:
        # A learner that is present (the arm holds without one) but has nothing to publish yet.
        learner = LearnerClient(link, space, action_shape, batch_size=8, n_step=1, gamma=0.99, frame_stack=1, min_transitions=10**9)
        try:
            result = run(cfg, say=lambda m: None)
        finally:
            learner.close()
        store = server.storage
        rows = np.arange(store.total)
        versions = store.policy_version[rows][store.next[rows] >= 0]
    # total_steps=25 with 10-step episodes: the actor finishes the episode it is in, so three episodes.
    assert result["mode"] == "online" and result["steps"] == 30 and result["episodes"] == 3 and result["all_acknowledged"]
    assert store.transitions_added == 30 and set(versions.tolist()) == {0}  # the checkpoint's policy, from step one
    assert result["safety_counters"]["sent"] >= 30  # every step's command went through the safety layer
    assert json.loads((tmp_path / "report.json").read_text())["transitions_sent"] == 30


@pytest.mark.timeout(180)
def test_a_sigterm_to_the_online_arm_finishes_the_step_flushes_and_writes_the_report(checkpoint, tmp_path):
    import signal
    import subprocess
    import sys

    from robolearn.replay.config import ServerConfig
    from robolearn.spec import EnvSpec
    from robolearn.transport.learner_client import LearnerClient
    from tests.transport_cases import running_server, transport
    from tests.waiting import wait_for

    link = transport()
    overrides = [f"checkpoint={checkpoint}", "mode=online", "env.robot=fr3", "env.episode_seconds=1", "preflight.run=false",
                 f"output_dir={tmp_path / 'arm'}", f"transport.port={link.port}", f"transport.weights_port={link.weights_port}",
                 "transport.heartbeat_s=0.1", "transport.peer_timeout_s=1.0", "transport.insecure_no_keys=true", "actor.name=arm",
                 f"spill_dir={tmp_path / 'spill'}"]
    spec = EnvSpec.from_config(deploy_config(*overrides).env)
    space, action_shape = spec.observation_space(), (spec.action_dim,)
    with running_server(tmp_path / "replay", link, ServerConfig(capacity=1000), space, action_shape) as server:
        learner = LearnerClient(link, space, action_shape, batch_size=8, n_step=1, gamma=0.99, frame_stack=1, min_transitions=10**9)
        proc = subprocess.Popen([sys.executable, "-m", "hardware.deploy", *overrides], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: server.storage.transitions_added >= 15 or proc.poll() is not None, timeout_s=120, what="the arm streaming")
            proc.send_signal(signal.SIGTERM)  # a scheduler, `timeout`, a stopped service
            out = proc.communicate(timeout=60)[0].decode()
        finally:
            if proc.poll() is None:
                proc.kill()
            learner.close()
        stored = server.storage.transitions_added
    assert proc.returncode == 0, out[-2000:]
    report = json.loads((tmp_path / "arm" / "report.json").read_text())
    assert report["outcome"] == "done" and report["all_acknowledged"] and report["transitions_sent"] == stored


def test_bad_settings_are_refused_naming_them(tmp_path):
    from hardware.deploy.command import run

    with pytest.raises(ConfigError, match="mode: 'remote'"):
        run(deploy_config("checkpoint=x", "mode=remote", f"output_dir={tmp_path}"))
    with pytest.raises(ConfigError, match="episodes: 0"):
        run(deploy_config("checkpoint=x", "episodes=0", f"output_dir={tmp_path}"))
    # An unknown key: Hydra refuses it against the schema; one forced in (+) is refused at start-up.
    with pytest.raises(ConfigCompositionException, match="camera_windw_s"):
        deploy_config("checkpoint=x", "preflight.camera_windw_s=1", f"output_dir={tmp_path}")
    with pytest.raises(ConfigError, match=r"deploy config: .*camera_windw_s"):
        run(deploy_config("checkpoint=x", "+preflight.camera_windw_s=1", f"output_dir={tmp_path}"))


def test_a_checkpoint_for_another_spec_is_refused_before_anything_moves(checkpoint, tmp_path, monkeypatch):
    import hardware.preflight
    import robolearn.envs
    from robolearn.checkpoint import CheckpointError
    from hardware.deploy.command import run

    def must_not_run(*_a, **_kw):
        raise AssertionError("the pre-flight (which moves the wrist) or the env ran before the checkpoint was checked")

    monkeypatch.setattr(hardware.preflight, "run_preflight", must_not_run)
    monkeypatch.setattr(robolearn.envs, "make_env", must_not_run)
    cfg = deploy_config(f"checkpoint={checkpoint}", "env.robot=fr3", "env.cameras=[{name: front, width: 84, height: 84}]",
                        "env.hardware.loop.clock=virtual", "preflight.run=true", "resets@env.hardware.resets=unattended", f"output_dir={tmp_path}")
    with pytest.raises(CheckpointError, match="different observation/action spec"):
        run(cfg, say=lambda m: None)


@pytest.fixture(scope="module")
def ur5e_checkpoint(tmp_path_factory) -> Path:
    from robolearn.train import run

    run_dir = tmp_path_factory.mktemp("train_ur5e")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train_drq", overrides=[o for o in TINY_TRAIN if not o.startswith("env.robot=")] + ["env.robot=ur5e"])
    run(cfg, run_dir)
    return run_dir


@pytest.mark.timeout(180)
def test_a_ur5e_checkpoint_deploys_through_the_ur_driver_on_the_simulated_controller(ur5e_checkpoint, tmp_path):
    """The dry run docs/deploy.md describes for UR arms: pre-flight (controller status, both watchdogs),
    then an episode through the UR driver's speedJ path and the safety layer, on the wall clock."""
    from hardware.deploy.command import run

    cfg = deploy_config(
        f"checkpoint={ur5e_checkpoint}", "env=real_ur_simulated", "episodes=1", "resets@env.hardware.resets=unattended",
        f"output_dir={tmp_path}", "progress=false", "env.episode_seconds=1", "env.hardware.resets.joint_noise_rad=0.0",
        "preflight.camera_window_s=0.5",
    )
    result = run(cfg, say=lambda m: None)
    checks = {c["name"]: c for c in result["preflight"]["checks"]}
    assert result["preflight"]["ok"], checks
    assert checks["controller"]["status"] == "pass" and checks["controller"]["data"]["model"] == "UR5"
    assert checks["watchdog"]["status"] == "pass"  # the RTDE watchdog ended the script; the deploy's connect restarted it
    assert result["episodes"] == 1 and not result["stopped"], result["stopped"]
    assert result["per_episode"][0]["length"] == 10 and result["safety_counters"]["latched"] == 0


# -- the policy's latency, and how a run ends (exit codes, report.json) ---------------------------------------------
class FakePolicy:
    """Acts with zeros; records its calls; on the env's virtual clock, `stall` calls take `stall_s` (the watchdog
    counts the policy's time)."""

    def __init__(self, stall: tuple[int, ...] = (), stall_s: float = 0.0, seconds: float = 0.0, clock=None):
        self.calls: list[dict] = []
        self.resets = 0
        self.stall, self.stall_s, self.seconds, self.clock = stall, stall_s, seconds, clock

    def reset(self):
        self.resets += 1

    def act(self, obs):
        import torch

        self.calls.append(obs)
        self.threads_seen = torch.get_num_threads()
        if self.clock is not None:
            self.clock.advance(self.stall_s if len(self.calls) in self.stall else self.seconds)
        return np.zeros(8, np.float32)


def fake_policy_deploy(monkeypatch, policy: FakePolicy, *, on_env=None):
    """Deploy with `policy` instead of a checkpoint's (its spec check skipped); `on_env(env)` sees the env."""
    import hardware.deploy.command as command
    import robolearn.envs

    monkeypatch.setattr(command, "check_checkpoint", lambda path, env_cfg: None)
    monkeypatch.setattr(command, "load_policy", lambda cfg, contract: policy)
    real_make_env = robolearn.envs.make_env

    def make_env(cfg):
        env = real_make_env(cfg)
        if on_env is not None:
            on_env(env)
        return env

    monkeypatch.setattr(robolearn.envs, "make_env", make_env)
    return command


def test_deploy_warms_the_policy_up_with_one_thread_and_reports_its_latency(monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    policy = FakePolicy()
    command = fake_policy_deploy(monkeypatch, policy, on_env=lambda env: setattr(policy, "clock", env.clock))
    try:
        from hardware.timing import VirtualClock

        startup_clock = VirtualClock()
        policy.clock, policy.seconds = startup_clock, 0.004
        result = command.run(deploy_config("checkpoint=x", "episodes=1", "env.episode_seconds=0.5", "env.hardware.loop.clock=virtual",
                                           "preflight.run=false", "resets@env.hardware.resets=unattended", f"output_dir={tmp_path}",
                                           "progress=false"), say=lambda m: None, now=startup_clock.now)
        threads, after = policy.threads_seen, torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert threads == 1 and after == 2  # the policy's while it acted, the caller's again after
    # 3 warm-up and 20 timed calls on a zero observation before the first step, then the 5 steps.
    assert len(policy.calls) == 3 + 20 + 5 and all(not o["front"].any() and not o["joint_pos"].any() for o in policy.calls[:23])
    assert result["outcome"] == "done" and result["exit_code"] == 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["policy_latency"]["startup"]["p99_ms"] == pytest.approx(4.0) and saved["policy_latency"]["startup"]["threads"] == 1
    assert saved["policy_latency"]["episodes"]["calls"] == 5 and saved["policy_latency"]["episodes"]["p50_ms"] == pytest.approx(4.0)


def test_a_policy_too_slow_for_the_control_rate_is_refused_before_anything_moves(monkeypatch, tmp_path):
    import hardware.preflight
    import robolearn.envs
    from hardware.timing import VirtualClock

    clock = VirtualClock()
    command = fake_policy_deploy(monkeypatch, FakePolicy(seconds=0.07, clock=clock))

    def must_not_run(*_a, **_kw):
        raise AssertionError("the pre-flight (which moves the wrist) or the env ran under a policy too slow for the rate")

    monkeypatch.setattr(hardware.preflight, "run_preflight", must_not_run)
    monkeypatch.setattr(robolearn.envs, "make_env", must_not_run)
    result = command.run(deploy_config("checkpoint=x", "preflight.run=true", f"output_dir={tmp_path}"), say=lambda m: None, now=clock.now)
    assert result["outcome"] == "refused" and result["exit_code"] == 2
    assert "p99 latency 70.0 ms" in result["stopped"] and "0.5 of the 100 ms control period (50 ms)" in result["stopped"]
    assert json.loads((tmp_path / "report.json").read_text())["policy_latency"]["startup"]["ok"] is False


def test_a_policy_stall_trips_the_watchdog_and_the_run_ends_non_zero_with_the_fault_in_the_report(monkeypatch, tmp_path):
    """The issue's e-stop: one act() longer than the watchdog allows. The run ends with exit code 3 and a report."""
    policy = FakePolicy(stall=(3 + 20 + 4,), stall_s=0.25)  # the 4th step of the first episode takes 250 ms
    command = fake_policy_deploy(monkeypatch, policy, on_env=lambda env: setattr(policy, "clock", env.clock))
    result = command.run(deploy_config("checkpoint=x", "episodes=2", "env.episode_seconds=1", "env.hardware.loop.clock=virtual",
                                       "preflight.run=false", "resets@env.hardware.resets=unattended", f"output_dir={tmp_path}",
                                       "progress=false"), say=lambda m: None)
    assert result["outcome"] == "fault" and result["exit_code"] == 3
    assert result["episodes"] == 1 and result["per_episode"][0]["ended_by"] == "safety"
    assert "watchdog: no command for" in result["stopped"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["exit_code"] == 3 and saved["safety_event_counts"].get("watchdog/tripped") == 1
    assert saved["policy_latency"]["episodes"]["calls_over_period"] == 1 and saved["policy_latency"]["episodes"]["max_ms"] == pytest.approx(250.0)


def test_known_errors_are_one_line_on_stderr_and_exit_2(tmp_path):
    cmd = [sys.executable, "-m", "hardware.deploy", f"checkpoint={tmp_path / 'missing'}", f"output_dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploy: CheckpointError: ") and "missing" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(120)
def test_online_mode_ends_on_a_latched_fault_with_a_report_and_exit_code_3(checkpoint, tmp_path, monkeypatch):
    import robolearn.envs
    from hardware.deploy.command import run
    from robolearn.replay.config import ServerConfig
    from robolearn.spec import EnvSpec
    from robolearn.transport.learner_client import LearnerClient
    from tests.transport_cases import running_server, transport

    real_make_env = robolearn.envs.make_env
    steps = {"n": 0}

    def make_env(cfg):  # the arm's workspace check (here: a reflex) latches at the 6th step
        env = real_make_env(cfg)
        real_step = env.step

        def step(action):
            steps["n"] += 1
            if steps["n"] == 6:
                env.driver.inject_reflex("cartesian reflex: workspace")
            return real_step(action)

        env.step = step
        return env

    monkeypatch.setattr(robolearn.envs, "make_env", make_env)
    link = transport()
    cfg = deploy_config(
        f"checkpoint={checkpoint}", "mode=online", "env.robot=fr3", "env.episode_seconds=1", "env.hardware.loop.clock=virtual",
        "preflight.run=false", f"output_dir={tmp_path}", f"transport.port={link.port}", f"transport.weights_port={link.weights_port}",
        "transport.heartbeat_s=0.1", "transport.peer_timeout_s=1.0", "transport.insecure_no_keys=true", "actor.total_steps=25", "actor.name=arm", "actor.fault_wait_s=5",
        "operator_prompt=false", f"spill_dir={tmp_path / 'spill'}")
    spec = EnvSpec.from_config(cfg.env)
    space, action_shape = spec.observation_space(), (spec.action_dim,)
    with running_server(tmp_path / "replay", link, ServerConfig(capacity=1000), space, action_shape):
        learner = LearnerClient(link, space, action_shape, batch_size=8, n_step=1, gamma=0.99, frame_stack=1, min_transitions=10**9)
        try:
            result = run(cfg, say=lambda m: None)
        finally:
            learner.close()
    assert result["outcome"] == "fault" and result["exit_code"] == 3 and result["steps"] == 6
    assert result["fault"] == "driver: fake: cartesian reflex: workspace" and "fault: nobody cleared it" in result["link_events"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["outcome"] == "fault" and saved["stopped"].startswith("safety e-stop latched: driver: fake: cartesian reflex")
    assert saved["spill_dir"] == str(tmp_path / "spill" / "arm")  # the configured folder, under the actor's name


def test_the_launcher_passes_the_commands_defaults_through():
    script = (Path(__file__).resolve().parent.parent / "launch" / "deploy.sh").read_text()
    assert "EPISODES:-5" not in script and "VIDEO:-true" not in script
    from hardware.deploy.command import DeployConfig

    assert DeployConfig.episodes == 5 and DeployConfig.video is False  # what docs/deploy.md and the launcher say


def test_deploy_that_reads_keys_is_refused_without_a_terminal_before_anything_moves(monkeypatch, tmp_path):
    import hardware.preflight
    import robolearn.envs
    from hardware.teleop import InputUnavailable

    command = fake_policy_deploy(monkeypatch, FakePolicy())

    def must_not_run(*_a, **_kw):
        raise AssertionError("the pre-flight or the env ran with nobody able to answer")

    monkeypatch.setattr(hardware.preflight, "run_preflight", must_not_run)
    monkeypatch.setattr(robolearn.envs, "make_env", must_not_run)
    with pytest.raises(InputUnavailable, match="intervention=true or a human reset prompt needs a person at a terminal"):
        command.run(deploy_config("checkpoint=x", "intervention=true", f"output_dir={tmp_path}"), say=lambda m: None)
