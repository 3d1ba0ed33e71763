"""`python -m hardware.deploy`: a trained policy on the real-robot env (episodes: hardware/deploy/episodes.py).

    python -m hardware.deploy checkpoint=outputs/train/<run> episodes=5                # fake arm
    python -m hardware.deploy checkpoint=... robot@env.hardware.driver=franka env.robot=fr3 \
        env.hardware.driver.host=172.16.0.2 safety@env.hardware.safety=conservative video=true

Runs the pre-flight check first (preflight.run=true), then N evaluation episodes through the same actor
path as training (robolearn.agents.policy.AgentPolicy), and reports success, returns and every safety event
(report.json in output_dir; the last stdout line is the summary as JSON).

`mode=online`: after the same pre-flight, the arm becomes an online-learning actor (robolearn.roles.actor)
that starts from the checkpoint's policy and streams to a replay server (`transport.*`), taking new
weights from the learner as they come; start the learner with `learner.init_from=<the same checkpoint>`
(docs/remote.md). Losing the learner holds the arm (actor.on_learner_loss=hold). It runs until
`actor.total_steps` or Ctrl-C and reports steps, episodes, success and the safety layer's counters.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import MISSING, DictConfig, OmegaConf

from hardware import preflight
from hardware.config import load_command_config, load_hardware_config
from hardware.deploy.episodes import DeployReport, run_deployment
from hardware.env import EStopLatched
from hardware.preflight.options import PreflightOptions
from hardware.resets import HumanResetPrompt, ResetRoutine
from hardware.teleop import InputUnavailable, InterventionPolicy, InterventionRecorder, KeyboardReader, TeleopCommander, terminal_problem
from hardware.teleop.keyboard import stdin_fd
from hardware.teleop.commands import MODES as TELEOP_MODES
from robolearn import envs
from hardware.tracking.calibration import CalibrationError
from robolearn.agents.policy import ActingConfig, LatencyMeter, TimedPolicy, load_checkpoint_policy, prepare_for_control, too_slow_message
from robolearn.checkpoint import checkpoint_agent_config, load_policy_checkpoint, load_policy_for
from robolearn.roles.config import AsyncConfig
from robolearn.config import check, load_env_config, load_typed, register_schema
from robolearn.display import DisplayConfig, open_view
from robolearn.paths import CONFIG_DIR
from robolearn.process import exits
from robolearn.replay.recording import EpisodeRecorder
from robolearn.spec import EnvSpec
from robolearn.transport.config import load_transport_config

MODES = ("eval", "online")


@dataclass
class DeployPreflight(PreflightOptions):
    run: bool = True  # run the pre-flight check first; a failure stops the deployment


@dataclass
class InterventionKeys:
    """Keys while intervening (hardware/teleop/commands.py)."""

    mode: str = "joint"  # joint | ee
    speed: float = 0.3  # share of the action limit
    ee_speed: float = 0.05  # m/s in ee mode
    hold_s: float = 0.6

    def __post_init__(self) -> None:
        check(self.mode in TELEOP_MODES, "teleop.mode", self.mode, f"one of {list(TELEOP_MODES)}")


@dataclass
class DeployConfig:
    env: Any = None  # the real-robot env config, validated when the env is built
    transport: Any = None  # mode=online: the transport group (configs/transport/)
    actor: Any = None  # mode=online: the actor's settings (robolearn/roles/actor.py validates them)
    mode: str = "eval"  # eval: `episodes` episodes. online: an actor of asynchronous training
    checkpoint: str = MISSING  # a run directory or checkpoint.pt, trained on the same observation/action spec
    deterministic: bool = True  # the policy's mean action (false: sample, as when collecting)
    device: str = "cpu"
    episodes: int = 5
    seed: int = 0  # episode i is reset with seed + i
    preflight: DeployPreflight = field(default_factory=DeployPreflight)
    video: bool = False  # an mp4 of the cameras for the first `video_episodes` episodes
    video_episodes: int = 1
    intervention: bool = False  # keyboard takeover during episodes: i toggles (joint_velocity policies only)
    teleop: InterventionKeys = field(default_factory=InterventionKeys)
    output_dir: str = "outputs/deploy"  # report.json, deploy.mp4, interventions.npz
    progress: bool = True
    display: DisplayConfig = field(default_factory=DisplayConfig)  # a live view, in both modes (docs/watching.md)
    # The policy on the arm: torch threads, warm-up calls, and the latency refused before anything moves.
    policy: ActingConfig = field(default_factory=ActingConfig)
    spill_dir: str = "outputs/deploy/spill"  # mode=online: chunks not yet acknowledged, per actor name, kept across restarts
    operator_prompt: bool = True  # mode=online: after a latched fault, ask at the terminal (when there is one) to clear it

    def __post_init__(self) -> None:
        check(self.mode in MODES, "mode", self.mode, f"one of {list(MODES)}")
        if self.mode == "eval":
            check(self.episodes >= 1, "episodes", self.episodes, "must be at least 1")
        check(self.video_episodes >= 0, "video_episodes", self.video_episodes, "must be >= 0")


register_schema("deploy_schema", DeployConfig)


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def run(cfg: DeployConfig | DictConfig, say=print, *, now=time.perf_counter) -> dict:
    """Deploy; returns the report (also written to output_dir/report.json once anything was tried) with
    `outcome`: done | preflight_failed | refused | fault | stopped (exit_code() maps it to the exit status).
    `now`: the clock that times the policy's start-up calls (tests pass a virtual clock's). torch's thread
    count is the policy's (`policy.threads`) while it runs, and the caller's again afterwards."""
    import torch

    threads = torch.get_num_threads()
    try:
        return _run(cfg, say, now)
    finally:
        torch.set_num_threads(threads)


def _run(cfg, say, now) -> dict:
    cfg = load_command_config(DeployConfig, cfg, "deploy")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    env_cfg = plain(cfg.env)
    result: dict = {"mode": cfg.mode, "checkpoint": str(cfg.checkpoint), "outcome": "", "stopped": ""}
    if cfg.mode == "online":
        load_transport_config(plain(cfg.transport))  # a remote host without keys, say: refused before anything connects
    check_checkpoint(cfg.checkpoint, env_cfg)  # before the pre-flight, whose self-test moves the wrist
    contract = EnvSpec.from_config(env_cfg)
    period = 1.0 / contract.control_hz
    policy = load_policy(cfg, contract)
    # One torch thread, warmed up, timed: a policy that cannot keep the rate is refused before anything moves.
    startup = prepare_for_control(policy, contract.observation_space(), period, cfg.policy, now=now, refuse=False)
    result["policy_latency"] = {"startup": startup}
    say(f"policy latency: p50 {startup['p50_ms']:.1f} ms, p99 {startup['p99_ms']:.1f} ms of the {period * 1000:.0f} ms period "
        f"({startup['threads']} torch thread(s))")
    if not startup["ok"]:
        return finish(result, out, "refused", too_slow_message(startup))
    if cfg.mode == "eval" and needs_keyboard(cfg, env_cfg):
        problem = terminal_problem(stdin_fd())
        if problem:  # interventions and the reset prompt read keys: nobody could answer
            raise InputUnavailable(f"deploy with intervention=true or a human reset prompt needs a person at a terminal: {problem}")
    if cfg.preflight.run:
        report = preflight.run_preflight(env_cfg, cfg.preflight, say=lambda msg: None, policy_latency=startup)
        say(report.render())
        result["preflight"] = report.as_dict()
        if not report.ok:
            return finish(result, out, "preflight_failed", "pre-flight check failed")
    try:
        if cfg.mode == "online":
            result.update(run_online(cfg, env_cfg, policy, say))
            outcome = "fault" if result.get("fault") else "done"
            return finish(result, out, outcome, f"safety e-stop latched: {result['fault']}" if result.get("fault") else "")
        report = run_eval(cfg, env_cfg, policy, period, out, result, say)
    except EStopLatched as exc:  # a fault the loop did not meet at a step (the arm is held by the safety layer)
        return finish(result, out, "fault", f"safety e-stop latched: {exc}")
    except KeyboardInterrupt:
        return finish(result, out, "stopped", "interrupted (Ctrl-C)")
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        finish(result, out, "error", result["error"])
        raise
    result.update(report.as_dict())
    return finish(result, out, report.outcome or "done", report.stopped)


def needs_keyboard(cfg: DeployConfig, env_cfg: dict) -> bool:
    """Someone must be able to type: interventions, or a reset prompt that can come (after a success
    needs a tracker to know of one)."""
    hw = load_hardware_config(load_env_config(env_cfg))
    human, tracked = hw.resets.human, getattr(hw.tracker.kind, "value", hw.tracker.kind) != "none"
    return bool(cfg.intervention or human == "every_episode" or (human == "after_success" and tracked))


def load_policy(cfg: DeployConfig, contract: EnvSpec):
    """The checkpoint's policy, built from the env's contract alone (no arm connected yet)."""
    return load_checkpoint_policy(None, cfg.checkpoint, deterministic=cfg.deterministic, device=cfg.device,
                                  spaces=(contract.observation_space(), contract.action_space()))


def run_eval(cfg: DeployConfig, env_cfg: dict, policy, period: float, out: Path, result: dict, say) -> DeployReport:
    keys = view = None
    meter = None
    env = envs.make_env(env_cfg)
    try:
        view = open_view(cfg.display, "deploy")
        plan = env.hw.resets
        needs_keys = cfg.intervention or plan.human != "never"
        if needs_keys:
            keys = KeyboardReader().start(require_terminal=needs_keyboard(cfg, env_cfg))
        prompt = HumanResetPrompt(keys, env.clock, plan.human_timeout_s, say=say) if keys is not None else None
        resets = ResetRoutine(env, plan, prompt)
        interventions = None
        if cfg.intervention:
            t = cfg.teleop
            commander = TeleopCommander(env.contract, t.mode, speed=t.speed, ee_speed=t.ee_speed, hold_s=t.hold_s)
            policy = InterventionPolicy(policy, keys, commander, env.clock, say=say)
            room = cfg.episodes * (env.cfg.max_episode_steps + 1) * 2
            interventions = InterventionRecorder(EpisodeRecorder.open(out / "interventions.npz", env.observation_space, env.action_space.shape, room))
        # Every step's policy time, on the env's clock (the loop's own): the report's latency during the run.
        meter = LatencyMeter(env.clock.now)
        report = run_deployment(
            env, TimedPolicy(policy, meter), episodes=cfg.episodes, seed=cfg.seed, resets=resets, interventions=interventions,
            video_path=out / "deploy.mp4" if cfg.video else None, video_episodes=cfg.video_episodes,
            say=say if cfg.progress else (lambda msg: None), view=view,
        )
        if interventions is not None and interventions.segments:
            report.interventions_file = str(interventions.recorder.save())
    finally:
        if meter is not None:
            result.setdefault("policy_latency", {})["episodes"] = meter.summary(period)
        if view is not None:
            result["display"] = view.close()
        if keys is not None:
            keys.close()
        env.close()
    return report


def finish(result: dict, out: Path, outcome: str, stopped: str = "") -> dict:
    """Name how the run ended and write report.json."""
    result["outcome"] = outcome
    if stopped:
        result["stopped"] = stopped
    result["exit_code"] = exit_code(result)
    (out / "report.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def exit_code(result: dict) -> int:
    """docs/deploy.md, "How a run ends": 0 done, 1 pre-flight failed, 2 refused, 3 a latched fault, 4 stopped early."""
    return {"done": exits.OK, "preflight_failed": exits.FAILED, "refused": exits.REFUSED, "fault": exits.FAULT,
            "stopped": exits.STOPPED}.get(result.get("outcome"), exits.FAILED)


def check_checkpoint(path, env_cfg: dict) -> None:
    """Refuse a checkpoint made for another observation/action spec from the env's contract alone,
    before any driver connects or anything moves (CheckpointError names both specs)."""
    contract = EnvSpec.from_config(env_cfg)
    load_policy_checkpoint(path, contract.observation_space(), contract.action_space())


def run_online(cfg: DeployConfig, env_cfg: dict, policy, say=print) -> dict:
    """The arm as an actor of asynchronous training, starting from the checkpoint's policy. A latched fault
    holds the arm and waits for a person (robolearn/roles/actor.py); the result names it (`fault`) if it stays."""
    from robolearn.roles.actor import Actor  # the actor command's module: only the online mode needs it

    env = envs.make_env(env_cfg)
    stop = threading.Event()
    # Ctrl-C and SIGTERM (a scheduler, `timeout`, a stopped service) finish the step, flush and write the report.
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    actor = None
    try:
        payload = load_policy_checkpoint(cfg.checkpoint, env.observation_space, env.action_space)
        actor_node = {"policy_threads": cfg.policy.threads, "warmup_calls": cfg.policy.warmup_calls, **(plain(cfg.actor) or {})}
        agent_cfg = checkpoint_agent_config(payload, cfg.checkpoint, env.observation_space)  # as the learner's init_from
        actor_cfg = load_typed(AsyncConfig, {"env": env_cfg, "agent": agent_cfg, "transport": plain(cfg.transport),
                                             "actor": actor_node, "display": cfg.display}, "deploy (mode=online)")
        actor = Actor(actor_cfg, env=env, stop=stop, spill_root=cfg.spill_dir, operator="auto" if cfg.operator_prompt else None)
        load_policy_for(actor.agent, payload)  # the policy's inputs in the order the checkpoint recorded
        actor.version = 0  # the checkpoint's policy acts from the first step (no random seed actions on an arm)
        actor.client.applied(0)
        actor.warm_up()  # again, with the checkpoint's weights
        say(f"online actor {actor.name}: streaming to {actor_cfg.transport.host}:{actor_cfg.transport.port} "
            f"(unacknowledged chunks in {actor.client.outbox.spill_dir}); Ctrl-C stops")
        try:
            result = actor.run()
        finally:
            acknowledged = actor.close()  # also closes the env (the arm is held)
    except BaseException:
        if actor is None:
            env.close()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return {**result, "name": actor.name, "spill_dir": str(actor.client.outbox.spill_dir), "transitions_sent": actor.client.stats["transitions"], "all_acknowledged": acknowledged,
            "link_events": actor.events, "safety_counters": dict(env.unwrapped.safety.counters)}


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends an evaluation as Ctrl-C does: the arm held, the report written, exit 4


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="deploy")
@exits.reported("deploy", known=(CalibrationError, EStopLatched, InputUnavailable))
def main(cfg: DictConfig) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    result = run(cfg)
    summary = {k: v for k, v in result.items() if k not in ("per_episode", "between_episode_events", "preflight")}
    if "preflight" in result:
        summary["preflight_ok"] = result["preflight"]["ok"]
    print(f"episodes={result.get('episodes', 0)} success_rate={result.get('success_rate', 0.0):.3f} "
          f"mean_return={result.get('mean_return', 0.0):.2f} safety_events={sum(result.get('safety_event_counts', {}).values())} "
          f"outcome={result['outcome']}" + (f" stopped: {result['stopped']}" if result.get("stopped") else ""))
    print(json.dumps(summary, default=str))
    if result["exit_code"] != exits.OK:
        print(f"deploy: {result['outcome']}: {result['stopped']} (report: {Path(cfg.output_dir) / 'report.json'})", file=sys.stderr)
        sys.exit(result["exit_code"])
