"""An asynchronous actor: runs the policy in an env (sim or real) and streams its steps to the replay server.

    python -m robolearn.roles.actor --config-name async_sim run_dir=outputs/async/run1 actor.name=sim0

The control loop never waits on the network (robolearn.transport.actor_client). New weights are applied
between steps, whenever they arrive. Every transition carries the version of the policy that chose it
(-1: a uniformly random seed action).

When the learner (or the replay server) is lost, `actor.on_learner_loss` decides: `continue` acting with
the last weights (sim), or `hold`: the arm is stopped and held through the safety layer and the actor
waits, reporting it, until the link is back; then it starts a new episode (a real arm needs a reset).

On an arm (an env with a safety layer) the actor acts with `actor.policy_threads` torch threads and warms
the policy up before its first step, so its first steps meet the watchdog; every step's policy time is in
the result. A latched safety fault does not end the process: the arm is held, the fault logged, and a
person is asked at the terminal to check the arm and clear it (Enter; q stops); with no terminal the
actor holds and logs for `actor.fault_wait_s`, then exits with code 3 (robolearn/process/exits.py).

Interventions (`actor.intervention`, robolearn/interventions.py): a person (keyboard, gamepad) or, in sim, the
scripted intervener may take over from the policy between two steps. Their steps go through the same
`env.step` (the safety layer on an arm), are sent with the policy version INTERVENTION_VERSION and the executed
action, and each stretch of their control is also sent as a demo episode, on a second stream named
`<name>.interventions` (`intervention.to_demos`). The actor reports the share of its steps they took.

Its name (default: from the host and the env, the same on every start) and its spill folder (default:
`<run_dir>/spill/<name>`) survive a restart, so what was not acknowledged is sent by the next start.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the heavy imports: a SIGTERM while starting ends cleanly
    from robolearn.process.signals import exit_cleanly_on_early_stop

    exit_cleanly_on_early_stop()

import dataclasses
import logging
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from robolearn.agents import DrQAgent
from robolearn.agents.policy import AgentPolicy, ActingConfig, LatencyMeter, prepare_for_control, set_acting_threads
from robolearn.agents.weights import load_acting_weights
from robolearn.roles.config import AsyncConfig
from robolearn.checkpoint import run_agent_config
from robolearn.config import load_typed
from robolearn.display import open_view
from robolearn.envs import make_env
from robolearn.interventions import DEMO_STREAM_SUFFIX, InterventionSegments, TakeoverCut, make_intervener, stored_action
from robolearn.paths import CONFIG_DIR
from robolearn.policies import SeedActions
from robolearn.process import exits
from robolearn.process.allocator import keep_freed_memory
from robolearn.process.signals import ignore_late_stop_signals
from robolearn.replay.codec import INTERVENTION_VERSION, SEED_ACTION_VERSION
from robolearn.rollout import Step, run_episode
from robolearn.transport.actor_client import ActorClient
from robolearn.transport.client import TransportFatal
from robolearn.transport.config import load_transport_config

log = logging.getLogger(__name__)


class Actor:
    """`spill_root`: where the spill folder `<spill_root>/<name>` goes when transport.spill_dir is not set
    (default `<run_dir>/spill`). `operator`: who is asked to clear a latched fault on an arm: "auto" (the
    terminal, when this process has one in the foreground), None (nobody: hold for actor.fault_wait_s), or
    an object with `poll() -> str | None` (a line typed, or nothing yet) and `say(message)`. `intervener`: who may
    take over from the policy: "auto" (the one actor.intervention names) or an Intervener (robolearn/interventions.py)."""

    def __init__(self, cfg: AsyncConfig, env=None, stop: threading.Event | None = None, spill_root: str | Path | None = None,
                 operator="auto", intervener="auto"):
        self.cfg, self.acfg = cfg, cfg.actor
        self.env = env if env is not None else make_env(cfg.env)
        self.on_arm = hasattr(self.env.unwrapped, "clear_fault") and safe_hold_of(self.env) is not None
        if self.on_arm:
            set_acting_threads(self.acfg.policy_threads)
        # With learner.init_from, the checkpoint's agent config (and its encoder), as the learner and server use.
        self.agent = DrQAgent(self.env.observation_space, self.env.action_space, run_agent_config(cfg, self.env.observation_space), device="cpu")
        self.agent.eval()
        self.name = self.acfg.name or default_actor_name(cfg.env, self.acfg.seed)
        transport = load_transport_config(cfg.transport)
        if not transport.spill_dir:  # in the run, under the actor's name: a restart finds what it left
            root = Path(spill_root) if spill_root else Path(cfg.run_dir or "outputs/actor") / "spill"
            transport = dataclasses.replace(transport, spill_dir=str(root / self.name))
        # With a frozen encoder the actor sends features (computed once per step, as it acts on them).
        self.client = ActorClient(transport, self.agent.learning_space, self.env.action_space.shape, name=self.name)
        self.version = SEED_ACTION_VERSION  # no weights yet
        self.intervener = make_intervener(self.acfg.intervention, self.env) if intervener == "auto" else intervener
        self.intervened = False  # who chose the action of the step under way
        self.intervention_steps = self.episode_interventions = 0
        self.segments = None
        penalty = self.acfg.intervention.takeover_penalty if self.intervener is not None else 0.0
        self.online = TakeoverCut(self.client, penalty)  # the online stream, cut where someone takes over
        if self.intervener is not None and self.acfg.intervention.to_demos:
            demo_transport = dataclasses.replace(transport, spill_dir=str(Path(transport.spill_dir).with_name(self.name + DEMO_STREAM_SUFFIX)))
            self.segments = InterventionSegments(ActorClient(demo_transport, self.agent.learning_space, self.env.action_space.shape,
                                                             name=self.name + DEMO_STREAM_SUFFIX, demo=True))
        self.rng = np.random.default_rng(self.acfg.seed)
        # Random actions until the first weights and for the actor's seed steps; the policy still acts on
        # every step, so its frame stack stays current.
        self.policy = SeedActions(AgentPolicy(self.agent, deterministic=self.acfg.deterministic), self.rng,
                                  lambda: self.version < 0 or self.steps < self.acfg.seed_steps)
        self.stop = stop or threading.Event()
        self.steps = self.episodes = self.holds = self.waits = 0
        self._stored_seen, self._steps_at_status = None, 0
        self.writer = None
        if self.acfg.tensorboard and cfg.run_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(cfg.run_dir) / "tb" / self.name))
        self.events: list[str] = []  # what happened to the link and the arm, for the operator and for tests
        self.view = open_view(cfg.display, f"actor {self.name}")
        if operator == "auto":  # a person's intervention keys read the terminal already: the fault prompt reads them too
            keys = getattr(self.intervener, "keys", None)
            operator = KeysOperator(keys) if keys is not None else TerminalOperator.if_available()
        self.operator = operator
        self.fault: str | None = None  # a latched fault nobody cleared: the run ended on it
        self.faults = 0
        self.latency = LatencyMeter()  # the policy's time per step (features + action)
        self._observe_s = 0.0
        fps = getattr(self.env.unwrapped, "metadata", {}).get("render_fps")
        self.period = 1.0 / float(fps) if fps else None
        self.warmup: dict = {}
        if self.on_arm:
            self.warm_up()

    def warm_up(self) -> dict:
        """Warm the policy up on a zero observation (features and action, as a step computes them) and time it."""
        policy = self.policy.policy
        acting = ActingConfig(threads=self.acfg.policy_threads, warmup_calls=self.acfg.warmup_calls, latency_calls=5)
        self.warmup = prepare_for_control(policy, self.env.observation_space, self.period or 0.1, acting,
                                          act=lambda obs: policy.act(self.agent.observe(obs)), refuse=False)
        log.info("actor %s: policy warmed up: p50 %.1f ms, p99 %.1f ms (%d torch thread(s))", self.name, self.warmup["p50_ms"],
                 self.warmup["p99_ms"], self.warmup["threads"])
        return self.warmup

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> dict:
        acfg = self.acfg
        successes = []
        while not self.stop.is_set() and (acfg.total_steps is None or self.steps < acfg.total_steps):
            fault = self._latched_fault()
            if fault is not None:
                if self._wait_for_person(fault):
                    continue
                self.fault = fault
                break
            if acfg.on_learner_loss == "hold" and self.client.link_problem():
                self._hold()
                continue
            self.policy.reset()
            if self.intervener is not None:
                self.intervener.reset()
            self.episode_interventions = 0
            try:
                episode = run_episode(self.env, self._act, seed=int(self.rng.integers(2**31)), observe=self._observe,
                                      on_start=lambda obs, _: self.client.start_episode(obs), record=self._send,
                                      before_step=self._before_step, view=self.view)
            except Exception:
                if self._latched_fault() is None:
                    raise
                continue  # the reset met a latched fault (EStopLatched): held and asked at the top of the loop
            finally:
                self.online.flush()  # a step held back by an episode that stopped without an end
                if self.segments is not None:
                    self.segments.end()  # a segment the episode's end did not close (a stop, a lost link)
            if episode.ended_by == "link":
                self._hold()
                continue
            if episode.finished:
                self.episodes += 1
                successes.append(episode.success)
                if self.writer is not None:
                    for key, value in {"return": episode.episode_return, "length": episode.length, "success": float(episode.success),
                                       "policy_version": self.version, "intervention_steps": self.episode_interventions,
                                       "intervention_share": self.intervention_share()}.items():
                        self.writer.add_scalar(f"episode/{key}", value, self.steps)
                if self.episodes % acfg.log_every_episodes == 0:
                    recent = successes[-20:]
                    log.info("actor %s: episode %d, %d steps, return %.1f, success %.2f (last %d), policy v%d, link: %s%s",
                             self.name, self.episodes, self.steps, episode.episode_return, np.mean(recent), len(recent), self.version,
                             self.client.link_problem() or "ok",
                             f", interventions {self.intervention_share():.0%} of steps" if self.intervener is not None else "")
        return {"steps": self.steps, "episodes": self.episodes, "holds": self.holds, "waits": self.waits, "version": self.version,
                "success_rate": float(np.mean(successes)) if successes else 0.0, "faults": self.faults, "fault": self.fault,
                "outcome": "fault" if self.fault else "done", "intervention_steps": self.intervention_steps,
                "intervention_share": self.intervention_share(),
                "intervention_segments": self.segments.segments if self.segments is not None else 0, "takeover_cuts": self.online.cuts,
                "policy_latency": {"startup": self.warmup, "steps": self.latency.summary(self.period)}}

    def _observe(self, obs):
        start = time.perf_counter()
        out = self.agent.observe(obs)
        self._observe_s = time.perf_counter() - start
        return out

    def intervention_share(self) -> float:
        return self.intervention_steps / self.steps if self.steps else 0.0

    def _act(self, obs):
        start = time.perf_counter()
        action = self.policy.act(obs)  # every step, so the policy's frame stack stays current
        self.intervened = False
        if self.intervener is not None:
            taken = self.intervener.act(obs)
            if taken is not None:
                action, self.intervened = taken, True
        self.latency.samples.append(self._observe_s + time.perf_counter() - start)  # the features are part of the step
        self._observe_s = 0.0
        return action

    # -- faults on an arm ----------------------------------------------------------------------------
    def _latched_fault(self) -> str | None:
        safety = getattr(self.env.unwrapped, "safety", None) if self.on_arm else None
        fault = getattr(safety, "fault", None)
        return None if fault is None else f"{fault.layer}: {fault.message}"

    def _wait_for_person(self, fault: str) -> bool:
        """The arm is held (the latch stopped it; hold again, it is allowed when latched) until a person
        clears the fault: True. False: nobody did (no terminal and actor.fault_wait_s passed, q, or a stop)."""
        safe_hold_of(self.env)()
        self.faults += 1
        self.client.state = "holding"
        self.events.append(f"fault: {fault}")
        log.error("actor %s: safety e-stop latched: %s; the arm is held", self.name, fault)
        try:
            if self.operator is None:
                return self._hold_unattended(fault)
            return self._ask_operator(fault)
        finally:
            self.client.state = "acting"

    def _sleep(self, seconds: float) -> None:
        clock = getattr(self.env.unwrapped, "clock", None)
        if clock is not None:
            clock.sleep_until(clock.now() + seconds)  # a virtual clock: at once
        else:
            time.sleep(seconds)

    def _now(self) -> float:
        clock = getattr(self.env.unwrapped, "clock", None)
        return clock.now() if clock is not None else time.monotonic()

    def _hold_unattended(self, fault: str) -> bool:
        wait = float(self.acfg.fault_wait_s)
        log.error("actor %s: no terminal to ask a person: holding the arm for %.0f s (actor.fault_wait_s), then exiting (code 3). "
                  "Check the arm, remove the cause, then start the actor again (same name and spill folder: nothing is lost)",
                  self.name, wait)
        deadline = self._now() + wait
        last_log = self._now()
        while not self.stop.is_set() and self._now() < deadline:
            self._sleep(min(0.5, max(0.0, deadline - self._now())))
            if self._now() - last_log >= 60.0:
                log.error("actor %s: still holding after a safety fault (%s); exiting in %.0f s", self.name, fault, deadline - self._now())
                last_log = self._now()
        self.events.append("fault: nobody cleared it")
        return False

    def _ask_operator(self, fault: str) -> bool:
        op = self.operator
        getattr(op, "discard_typed", lambda: None)()  # an Enter typed before the fault must not clear it
        op.say(f"SAFETY E-STOP LATCHED: {fault}. The arm is held. Check the arm and remove the cause, then press Enter to "
               "clear the fault (robot errors included) and go on with a new episode; type q and Enter to stop.")
        while not self.stop.is_set():
            answer = op.poll()
            if answer is None:
                self._sleep(0.1)
                continue
            if answer.strip().lower() in ("q", "quit", "stop"):
                self.events.append("fault: the operator stopped")
                return False
            try:
                self.env.unwrapped.clear_fault(recover_robot_errors=True, reconnect=True)
            except Exception as exc:  # noqa: BLE001 - ResetRefused (the cause is still there), a failed reconnect
                op.say(f"reset refused: {exc}. Still holding: fix it, then press Enter again (q: stop).")
                continue
            self.events.append("fault: cleared by the operator")
            log.warning("actor %s: the operator cleared the fault (%s); a new episode starts with a reset", self.name, fault)
            return True
        return False

    def _before_step(self) -> str | None:
        """New weights between steps; a lost link ends the episode unfinished when the arm must hold."""
        if getattr(self.intervener, "quit", False):
            self.stop.set()  # the person intervening pressed esc (the gamepad's GUIDE): stop as Ctrl-C does
        stopping = self.stop.is_set()
        if stopping and not self.acfg.finish_episode_on_stop:
            return "stop"
        self._apply_weights()
        problem = self.client.link_problem()
        if problem and self.client.fatal:
            raise TransportFatal(problem)
        if problem and self.acfg.on_learner_loss == "hold":
            return "link"
        self._pace()
        if not stopping:
            self._follow_learner()
        return None

    def _follow_learner(self) -> None:
        """`actor.follow_utd`: wait while the transitions stored (the server's count, plus this actor's steps
        since it was reported) run more than `ahead_steps` ahead of the learner's updates / follow_utd, so the run
        keeps the update-to-data ratio its recipe was tuned for however fast the sim is. Only for sims: the
        episode pauses between two steps."""
        utd = self.acfg.follow_utd
        if not utd:
            return
        first_update_at = self.cfg.learner.min_transitions - 1
        waited = False
        while not self.stop.is_set():
            status = self.client.server_status
            stored = status.get("transitions")
            if stored is None:
                return  # no status yet: nothing to follow
            if stored != self._stored_seen:
                self._stored_seen, self._steps_at_status = stored, self.steps
            stored += self.steps - self._steps_at_status
            updates = max(self.version, int(status.get("weights_version") or 0), 0)
            if stored < max(first_update_at, 0) + updates / utd + self.acfg.ahead_steps:
                break
            if not waited:
                self.waits += 1
                waited = True
            time.sleep(0.002)
            self._apply_weights()
            if self.client.link_problem():
                return  # a lost learner: on_learner_loss decides, not this wait

    def _send(self, step: Step) -> None:
        intervened = self.intervened
        action = stored_action(intervened, step.action, step.info)
        if intervened:
            version = INTERVENTION_VERSION
        else:
            version = self.version if self.steps >= self.acfg.seed_steps else SEED_ACTION_VERSION
        self.online.step(intervened, step.obs, action, step.reward, step.terminated, step.truncated, step.next_obs, version)
        self.steps += 1
        if self.intervener is not None:
            self.intervener.observe(step.reward, step.info)
            self.intervention_steps += intervened
            self.episode_interventions += intervened
        if self.segments is not None:
            self.segments.step(intervened, step.obs, action, step.reward, step.terminated, step.truncated, step.next_obs)

    def _pace(self) -> None:
        """`actor.max_steps_per_s`: a sim actor outruns the learner on a CPU (cheap frozen features: ~45 steps/s
        each against ~10 updates/s); pacing it keeps the update-to-data ratio the recipe was tuned for.
        A real arm is paced by its control rate already."""
        rate = self.acfg.max_steps_per_s
        if not rate:
            return
        now = time.monotonic()
        self._next_step_at = max(getattr(self, "_next_step_at", now), now)  # late: go now, no burst to catch up
        if self._next_step_at > now:
            time.sleep(self._next_step_at - now)
        self._next_step_at += 1.0 / float(rate)

    def _apply_weights(self) -> None:
        weights = self.client.take_weights()
        if weights is not None:
            version, arrays = weights
            load_acting_weights(self.agent, arrays)
            self.version = version
            self.client.applied(version)

    def _hold(self) -> None:
        """Stop the arm through the safety layer and wait for the link; nothing moves until it is back."""
        problem = self.client.link_problem()
        hold = safe_hold_of(self.env)
        if hold is not None:
            hold()
        self.holds += 1
        self.client.state = "holding"
        self.events.append(f"hold: {problem}")
        log.warning("actor %s: %s; %s until it is back", self.name, problem, "holding the arm" if hold else "pausing")
        last_report = time.monotonic()
        while not self.stop.is_set():
            problem = self.client.link_problem()
            if problem is None:
                break
            if self.client.fatal:
                raise TransportFatal(problem)
            if time.monotonic() - last_report > 10.0:
                log.warning("actor %s: still holding: %s", self.name, problem)
                last_report = time.monotonic()
            time.sleep(0.05)
        self.client.state = "acting"
        if not self.stop.is_set():
            self.events.append("resume")
            log.info("actor %s: link back; resuming with a new episode", self.name)

    def close(self) -> bool:
        """Send what is left and stop; True when the server acknowledged every transition."""
        if self.view is not None:
            self.view.close()
        if self.writer is not None:
            self.writer.close()
        keys = getattr(self.intervener, "keys", None)
        if keys is not None:
            keys.close()  # a keyboard reader gives the terminal its mode back
        try:
            demos_acknowledged = True
            if self.segments is not None:
                self.segments.end()
                demos_acknowledged = self.segments.sink.close(timeout_s=float(self.acfg.flush_timeout_s))
            return self.client.close(timeout_s=float(self.acfg.flush_timeout_s)) and demos_acknowledged
        finally:
            self.env.close()


def safe_hold_of(env):
    """The env's way to stop and hold the arm through its safety layer (None for a sim)."""
    unwrapped = env.unwrapped
    if hasattr(unwrapped, "hold"):
        return unwrapped.hold
    safety = getattr(unwrapped, "safety", None)
    return safety.hold if safety is not None else None


class TerminalOperator:
    """A person at this process's terminal: lines typed (read without blocking), messages on stderr."""

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def if_available(cls) -> TerminalOperator | None:
        """The terminal, if stdin is one and this process is in its foreground (a background read would stop it)."""
        try:
            fd = sys.stdin.fileno()
            return cls(fd) if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp() else None
        except (OSError, ValueError, AttributeError):
            return None

    def discard_typed(self) -> None:
        import termios

        termios.tcflush(self.fd, termios.TCIFLUSH)

    def poll(self) -> str | None:
        ready, _, _ = select.select([self.fd], [], [], 0)
        if not ready:
            return None
        return os.read(self.fd, 4096).decode(errors="replace")

    def say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)


class KeysOperator:
    """The person intervening, asked about a fault through the same keys (their terminal or gamepad): Enter
    clears, q stops. Otherwise the intervention's key reader and a terminal prompt would race for each key."""

    def __init__(self, keys):
        self.keys = keys

    def discard_typed(self) -> None:
        self.keys.poll()

    def poll(self) -> str | None:
        keys = self.keys.poll()
        if "q" in keys:
            return "q"
        return "\n" if "enter" in keys else None

    def say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)


def default_actor_name(env_cfg, seed: int = 0) -> str:
    """The same name on every start of the same actor: the host, and the arm (robot, driver, its address)
    or, in sim, the actor's seed. The server numbers its chunks on from where the last start stopped."""
    if isinstance(env_cfg, DictConfig):
        env_cfg = OmegaConf.to_container(env_cfg, resolve=True)
    env_cfg = dict(env_cfg or {})
    host = socket.gethostname().split(".")[0] or "host"
    hardware = env_cfg.get("hardware")
    if hardware:
        driver = dict(hardware.get("driver") or {})
        parts = [host, str(env_cfg.get("robot", "arm")), str(driver.get("kind", "arm"))]
        if driver.get("host"):
            parts.append(str(driver["host"]))
    else:
        parts = [host, "sim", f"seed{seed}"]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))[:64]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="async_sim")
@exits.reported("actor", known=(TransportFatal,))
def main(node: DictConfig) -> None:
    cfg = load_typed(AsyncConfig, node, "async")
    set_acting_threads(cfg.actor.policy_threads)  # acting is one small forward pass; leave the cores to the env and the learner
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())  # finish the step, send what is left, then exit
    actor = Actor(cfg, stop=stop)
    if cfg.keep_freed_memory:
        keep_freed_memory()  # every chunk gathers fresh buffers; kept for reuse instead of faulted in again
    try:
        result = actor.run()
    finally:
        acknowledged = actor.close()
    result.update(transitions_sent=actor.client.stats["transitions"], all_acknowledged=acknowledged)
    if actor.view is not None:
        result["display"] = actor.view.stats()
    print(f"actor {actor.name} finished: {result}")
    ignore_late_stop_signals()
    if result["fault"]:
        print(f"actor {actor.name}: safety e-stop latched and not cleared: {result['fault']}", file=sys.stderr)
        sys.exit(exits.FAULT)


if __name__ == "__main__":
    main()
