"""`python -m hardware.deploy`: a trained policy on the real-robot env (episodes: hardware/deploy/episodes.py).

    python -m hardware.deploy checkpoint=outputs/train/<run> episodes=5                # fake arm
    python -m hardware.deploy checkpoint=... robot@env.hardware.driver=franka env.robot=fr3 \
        env.hardware.driver.host=172.16.0.2 safety@env.hardware.safety=conservative video=true

Runs the pre-flight check first (preflight.run=true), then N evaluation episodes through the same actor
path as training (robolearn.agents.policy.AgentPolicy), and reports success, returns and every safety event
(report.json in output_dir; the last stdout line is the summary as JSON).

`mode=online`: after the same pre-flight, the arm becomes an online-learning actor (robolearn.actor)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import MISSING, DictConfig, OmegaConf

from hardware import preflight
from hardware.config import load_command_config
from hardware.deploy.episodes import run_deployment
from hardware.preflight.options import PreflightOptions
from hardware.resets import HumanResetPrompt, ResetRoutine
from hardware.teleop import InterventionPolicy, InterventionRecorder, KeyboardReader, TeleopCommander
from hardware.teleop.commands import MODES as TELEOP_MODES
from robolearn import envs
from robolearn.agents.policy import load_checkpoint_policy
from robolearn.agents.weights import load_policy_weights
from robolearn.checkpoint import load_policy_checkpoint
from robolearn.async_config import AsyncConfig
from robolearn.config import check, load_typed, register_schema
from robolearn.display import DisplayConfig, open_view
from robolearn.paths import CONFIG_DIR
from robolearn.replay.recording import EpisodeRecorder
from robolearn.spec import EnvSpec

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
    actor: Any = None  # mode=online: the actor's settings (robolearn/actor.py validates them)
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

    def __post_init__(self) -> None:
        check(self.mode in MODES, "mode", self.mode, f"one of {list(MODES)}")
        if self.mode == "eval":
            check(self.episodes >= 1, "episodes", self.episodes, "must be at least 1")
        check(self.video_episodes >= 0, "video_episodes", self.video_episodes, "must be >= 0")


register_schema("deploy_schema", DeployConfig)


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def run(cfg: DeployConfig | DictConfig, say=print) -> dict:
    cfg = load_command_config(DeployConfig, cfg, "deploy")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    env_cfg = plain(cfg.env)
    result: dict = {"mode": cfg.mode, "checkpoint": str(cfg.checkpoint)}
    check_checkpoint(cfg.checkpoint, env_cfg)  # before the pre-flight, whose self-test moves the wrist
    if cfg.preflight.run:
        report = preflight.run_preflight(env_cfg, cfg.preflight, say=lambda msg: None)
        say(report.render())
        result["preflight"] = report.as_dict()
        if not report.ok:
            result["stopped"] = "pre-flight check failed"
            (out / "report.json").write_text(json.dumps(result, indent=1))
            return result
    if cfg.mode == "online":
        result.update(run_online(cfg, env_cfg, say))
        (out / "report.json").write_text(json.dumps(result, indent=1, default=str))
        return result
    keys = view = None
    env = envs.make_env(env_cfg)
    try:
        view = open_view(cfg.display, "deploy")
        policy = load_checkpoint_policy(env, cfg.checkpoint, deterministic=cfg.deterministic, device=cfg.device)
        plan = env.hw.resets
        needs_keys = cfg.intervention or plan.human != "never"
        if needs_keys:
            keys = KeyboardReader().start()
        prompt = HumanResetPrompt(keys, env.clock, plan.human_timeout_s, say=say) if keys is not None else None
        resets = ResetRoutine(env, plan, prompt)
        interventions = None
        if cfg.intervention:
            t = cfg.teleop
            commander = TeleopCommander(env.contract, t.mode, speed=t.speed, ee_speed=t.ee_speed, hold_s=t.hold_s)
            policy = InterventionPolicy(policy, keys, commander, env.clock, say=say)
            room = cfg.episodes * (env.cfg.max_episode_steps + 1) * 2
            interventions = InterventionRecorder(EpisodeRecorder.open(out / "interventions.npz", env.observation_space, env.action_space.shape, room))
        report = run_deployment(
            env, policy, episodes=cfg.episodes, seed=cfg.seed, resets=resets, interventions=interventions,
            video_path=out / "deploy.mp4" if cfg.video else None, video_episodes=cfg.video_episodes,
            say=say if cfg.progress else (lambda msg: None), view=view,
        )
        if interventions is not None and interventions.segments:
            report.interventions_file = str(interventions.recorder.save())
    finally:
        if view is not None:
            result["display"] = view.close()
        if keys is not None:
            keys.close()
        env.close()
    result.update(report.as_dict())
    (out / "report.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def check_checkpoint(path, env_cfg: dict) -> None:
    """Refuse a checkpoint made for another observation/action spec from the env's contract alone,
    before any driver connects or anything moves (CheckpointError names both specs)."""
    contract = EnvSpec.from_config(env_cfg)
    load_policy_checkpoint(path, contract.observation_space(), contract.action_space())


def run_online(cfg: DeployConfig, env_cfg: dict, say=print) -> dict:
    """The arm as an actor of asynchronous training, starting from the checkpoint's policy."""
    from robolearn.actor import Actor  # the actor command's module: only the online mode needs it

    env = envs.make_env(env_cfg)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) if threading.current_thread() is threading.main_thread() else None
    try:
        payload = load_policy_checkpoint(cfg.checkpoint, env.observation_space, env.action_space)
        actor_cfg = load_typed(AsyncConfig, {"env": env_cfg, "agent": payload["agent_config"], "transport": plain(cfg.transport),
                                             "actor": plain(cfg.actor), "display": cfg.display}, "deploy (mode=online)")
        actor = Actor(actor_cfg, env=env, stop=stop)
        load_policy_weights(actor.agent, payload["agent"]["model"])  # the actor acts: its critic (if any) is the learner's
        actor.version = 0  # the checkpoint's policy acts from the first step (no random seed actions on an arm)
        actor.client.applied(0)
        say(f"online actor {actor.name}: streaming to {actor_cfg.transport.host}:{actor_cfg.transport.port}; Ctrl-C stops")
        try:
            result = actor.run()
        finally:
            acknowledged = actor.close()  # also closes the env (the arm is held)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return {**result, "transitions_sent": actor.client.stats["transitions"], "all_acknowledged": acknowledged,
            "link_events": actor.events, "safety_counters": dict(env.unwrapped.safety.counters)}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="deploy")
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    summary = {k: v for k, v in result.items() if k not in ("per_episode", "between_episode_events", "preflight")}
    if "preflight" in result:
        summary["preflight_ok"] = result["preflight"]["ok"]
    print(f"episodes={result.get('episodes', 0)} success_rate={result.get('success_rate', 0.0):.3f} "
          f"mean_return={result.get('mean_return', 0.0):.2f} safety_events={sum(result.get('safety_event_counts', {}).values())}"
          + (f" stopped: {result['stopped']}" if result.get("stopped") else ""))
    print(json.dumps(summary, default=str))
    if result.get("stopped") == "pre-flight check failed":
        sys.exit(1)
