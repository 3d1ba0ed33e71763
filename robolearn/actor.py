"""An asynchronous actor: runs the policy in an env (sim or real) and streams its steps to the replay server.

    python -m robolearn.actor --config-name async_sim run_dir=outputs/async/run1 actor.name=sim0

The control loop never waits on the network (robolearn.transport.actor_client). New weights are applied
between steps, whenever they arrive. Every transition carries the version of the policy that chose it
(-1: a uniformly random seed action).

When the learner (or the replay server) is lost, `actor.on_learner_loss` decides: `continue` acting with
the last weights (sim), or `hold`: the arm is stopped and held through the safety layer and the actor
waits, reporting it, until the link is back; then it starts a new episode (a real arm needs a reset).
"""

from __future__ import annotations

if __name__ == "__main__":  # before the heavy imports: a SIGTERM while starting ends cleanly
    from robolearn.process.signals import exit_cleanly_on_early_stop

    exit_cleanly_on_early_stop()

import logging
import signal
import threading
import time

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from robolearn.agents import DrQAgent
from robolearn.agents.policy import AgentPolicy
from robolearn.agents.weights import load_acting_weights
from robolearn.async_config import AsyncConfig
from robolearn.config import load_typed
from robolearn.display import open_view
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR
from robolearn.policies import SeedActions
from robolearn.process.allocator import keep_freed_memory
from robolearn.process.signals import ignore_late_stop_signals
from robolearn.rollout import Step, run_episode
from robolearn.transport.actor_client import ActorClient
from robolearn.transport.client import TransportFatal
from robolearn.transport.config import load_transport_config

log = logging.getLogger(__name__)


class Actor:
    def __init__(self, cfg: AsyncConfig, env=None, stop: threading.Event | None = None):
        self.cfg, self.acfg = cfg, cfg.actor
        self.env = env if env is not None else make_env(cfg.env)
        self.agent = DrQAgent(self.env.observation_space, self.env.action_space, cfg.agent, device="cpu")
        self.agent.eval()
        # With a frozen encoder the actor sends features (computed once per step, as it acts on them).
        self.client = ActorClient(load_transport_config(cfg.transport), self.agent.learning_space, self.env.action_space.shape,
                                  name=self.acfg.name)
        self.name = self.client.name
        self.version = -1  # no weights yet
        self.rng = np.random.default_rng(self.acfg.seed)
        # Random actions until the first weights and for the actor's seed steps; the policy still acts on
        # every step, so its frame stack stays current.
        self.policy = SeedActions(AgentPolicy(self.agent, deterministic=self.acfg.deterministic), self.rng,
                                  lambda: self.version < 0 or self.steps < self.acfg.seed_steps)
        self.stop = stop or threading.Event()
        self.steps = self.episodes = self.holds = 0
        self.events: list[str] = []  # what happened to the link, for the operator and for tests
        self.view = open_view(cfg.display, f"actor {self.name}")

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> dict:
        acfg = self.acfg
        successes = []
        while not self.stop.is_set() and (acfg.total_steps is None or self.steps < acfg.total_steps):
            if acfg.on_learner_loss == "hold" and self.client.link_problem():
                self._hold()
                continue
            self.policy.reset()
            episode = run_episode(self.env, self.policy.act, seed=int(self.rng.integers(2**31)), observe=self.agent.observe,
                                  on_start=lambda obs, _: self.client.start_episode(obs), record=self._send,
                                  before_step=self._before_step, view=self.view)
            if episode.ended_by == "link":
                self._hold()
                continue
            if episode.finished:
                self.episodes += 1
                successes.append(episode.success)
                if self.episodes % acfg.log_every_episodes == 0:
                    recent = successes[-20:]
                    log.info("actor %s: episode %d, %d steps, return %.1f, success %.2f (last %d), policy v%d, link: %s",
                             self.name, self.episodes, self.steps, episode.episode_return, np.mean(recent), len(recent), self.version,
                             self.client.link_problem() or "ok")
        return {"steps": self.steps, "episodes": self.episodes, "holds": self.holds, "version": self.version,
                "success_rate": float(np.mean(successes)) if successes else 0.0}

    def _before_step(self) -> str | None:
        """New weights between steps; a lost link ends the episode unfinished when the arm must hold."""
        if self.stop.is_set():
            return "stop"
        self._apply_weights()
        problem = self.client.link_problem()
        if problem and self.client.fatal:
            raise TransportFatal(problem)
        if problem and self.acfg.on_learner_loss == "hold":
            return "link"
        self._pace()
        return None

    def _send(self, step: Step) -> None:
        self.client.add(step.action, step.reward, step.terminated, step.truncated, step.next_obs,
                        self.version if self.steps >= self.acfg.seed_steps else -1)
        self.steps += 1

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
        try:
            return self.client.close(timeout_s=float(self.acfg.flush_timeout_s))
        finally:
            self.env.close()


def safe_hold_of(env):
    """The env's way to stop and hold the arm through its safety layer (None for a sim)."""
    unwrapped = env.unwrapped
    if hasattr(unwrapped, "hold"):
        return unwrapped.hold
    safety = getattr(unwrapped, "safety", None)
    return safety.hold if safety is not None else None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="async_sim")
def main(node: DictConfig) -> None:
    cfg = load_typed(AsyncConfig, node, "async")
    torch.set_num_threads(1)  # acting is one small forward pass; leave the cores to the env and the learner
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


if __name__ == "__main__":
    main()
