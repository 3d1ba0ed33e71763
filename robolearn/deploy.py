"""Deploy a trained policy on the real-robot env (implementation: hardware/deploy.py).

    python -m robolearn.deploy checkpoint=outputs/train/<run> episodes=5                # fake arm
    python -m robolearn.deploy checkpoint=... robot@env.hardware.driver=franka env.robot=fr3 \
        env.hardware.driver.host=172.16.0.2 safety@env.hardware.safety=conservative video=true

Runs the pre-flight check first (preflight.run=true), then N evaluation episodes through the same actor
path as training (robolearn.acting.AgentPolicy), and reports success, returns and every safety event
(report.json in output_dir; the last stdout line is the summary as JSON).

`mode=online`: after the same pre-flight, the arm becomes an online-learning actor (robolearn.actor)
that starts from the checkpoint's policy and streams to a replay server (`transport.*`), taking new
weights from the learner as they come; start the learner with `learner.init_from=<the same checkpoint>`
(docs/remote.md). Losing the learner holds the arm (actor.on_learner_loss=hold). It runs until
`actor.total_steps` or Ctrl-C and reports steps, episodes, success and the safety layer's counters.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from robolearn.config import ConfigError
from robolearn.paths import CONFIG_DIR

MODES = ("eval", "online")


def run(cfg: DictConfig, say=print) -> dict:
    # hardware is imported here, by the entry point, never by the core's modules at import time.
    from hardware.deploy import run_deployment
    from hardware.preflight import run_preflight
    from hardware.resets import HumanResetPrompt, ResetRoutine
    from robolearn.acting import load_checkpoint_policy
    from robolearn.envs import make_env
    from robolearn.preflight import options_from

    if cfg.mode not in MODES:
        raise ConfigError(f"invalid value for mode: {cfg.mode!r} (one of {list(MODES)})")
    if cfg.mode == "eval" and int(cfg.episodes) < 1:
        raise ConfigError(f"invalid value for episodes: {cfg.episodes!r} (must be at least 1)")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    result: dict = {"mode": cfg.mode, "checkpoint": str(cfg.checkpoint)}
    preflight_options = options_from(cfg.preflight)  # settings first, then the checkpoint, then anything that moves
    check_checkpoint(cfg.checkpoint, env_cfg)  # before the pre-flight, whose self-test moves the wrist
    if cfg.preflight.run:
        report = run_preflight(env_cfg, preflight_options, say=lambda msg: None)
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
    keys = None
    env = make_env(env_cfg)
    try:
        policy = load_checkpoint_policy(env, cfg.checkpoint, deterministic=cfg.deterministic, device=cfg.device)
        plan = env.hw.resets
        needs_keys = bool(cfg.intervention) or plan.human != "never"
        if needs_keys:
            from hardware.teleop import KeyboardReader

            keys = KeyboardReader().start()
        prompt = HumanResetPrompt(keys, env.clock, plan.human_timeout_s, say=say) if keys is not None else None
        resets = ResetRoutine(env, plan, prompt)
        interventions = None
        if cfg.intervention:
            from hardware.teleop import InterventionPolicy, InterventionRecorder, TeleopCommander
            from robolearn.replay.recording import EpisodeRecorder

            t = cfg.teleop
            commander = TeleopCommander(env.contract, t.mode, speed=t.speed, ee_speed=t.ee_speed, hold_s=t.hold_s)
            policy = InterventionPolicy(policy, keys, commander, env.clock, say=say)
            room = int(cfg.episodes) * (env.cfg.max_episode_steps + 1) * 2
            interventions = InterventionRecorder(EpisodeRecorder.open(out / "interventions.npz", env.observation_space, env.action_space.shape, room))
        report = run_deployment(
            env, policy, episodes=int(cfg.episodes), seed=int(cfg.seed), resets=resets, interventions=interventions,
            video_path=out / "deploy.mp4" if cfg.video else None, video_episodes=int(cfg.video_episodes),
            say=say if cfg.progress else (lambda msg: None),
        )
        if interventions is not None and interventions.segments:
            report.interventions_file = str(interventions.recorder.save())
    finally:
        if keys is not None:
            keys.close()
        env.close()
    result.update(report.as_dict())
    (out / "report.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def check_checkpoint(path, env_cfg: dict) -> None:
    """Refuse a checkpoint made for another observation/action spec from the env's contract alone,
    before any driver connects or anything moves (CheckpointError names both specs)."""
    from robolearn.checkpoint import load_policy_checkpoint
    from robolearn.spec import EnvSpec

    contract = EnvSpec.from_config(env_cfg)
    load_policy_checkpoint(path, contract.observation_space(), contract.action_space())


def run_online(cfg: DictConfig, env_cfg: dict, say=print) -> dict:
    """The arm as an actor of asynchronous training, starting from the checkpoint's policy."""
    import signal
    import threading

    from robolearn.actor import Actor
    from robolearn.acting import load_policy_weights
    from robolearn.checkpoint import load_policy_checkpoint
    from robolearn.envs import make_env

    env = make_env(env_cfg)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) if threading.current_thread() is threading.main_thread() else None
    try:
        payload = load_policy_checkpoint(cfg.checkpoint, env.observation_space, env.action_space)
        actor_cfg = OmegaConf.create({"env": env_cfg, "agent": payload["agent_config"], "transport": OmegaConf.to_container(cfg.transport, resolve=True),
                                     "actor": OmegaConf.to_container(cfg.actor, resolve=True)})
        actor = Actor(actor_cfg, env=env, stop=stop)
        load_policy_weights(actor.agent, payload["agent"]["model"])  # the actor acts: its critic (if any) is the learner's
        actor.version = 0  # the checkpoint's policy acts from the first step (no random seed actions on an arm)
        actor.client.applied(0)
        say(f"online actor {actor.name}: streaming to {cfg.transport.host}:{cfg.transport.port}; Ctrl-C stops")
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


if __name__ == "__main__":
    main()
