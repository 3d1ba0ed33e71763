"""The asynchronous learner: batches from the replay server, SAC/DrQ updates, versioned weights out.

    python -m robolearn.learner --config-name async_sim run_dir=outputs/async/run1

It needs no env: the observation and action spaces come from the env config alone (robolearn.spec).
Its run directory (`<run_dir>/learner`) holds `checkpoint.pt` (loadable by `robolearn.eval
policy=checkpoint`) and tensorboard scalars; a restarted learner resumes from the checkpoint, and the
data lives in the replay server, so a learner crash loses at most the updates since the last save.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the heavy imports: a SIGTERM while starting ends cleanly
    from robolearn.process.signals import exit_cleanly_on_early_stop

    exit_cleanly_on_early_stop()

import dataclasses
import logging
import signal
import time
import warnings
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from robolearn.agents import DrQAgent
from robolearn.agents.divergence import check_finite
from robolearn.agents.weights import acting_weights
from robolearn.async_config import AsyncConfig
from robolearn.checkpoint import (acting_signature, check_signature, env_record, load_checkpoint, load_policy_for,
                                  run_agent_config, save_checkpoint)
from robolearn.config import load_typed
from robolearn.paths import CONFIG_DIR
from robolearn.process.allocator import keep_freed_memory
from robolearn.process.device import pick_device
from robolearn.process.signals import ignore_late_stop_signals
from robolearn.spec import EnvSpec
from robolearn.transport.config import load_transport_config
from robolearn.transport.learner_client import LearnerClient

log = logging.getLogger(__name__)
# Batches arrive in read-only wire buffers; torch only reads them (or copies them to the GPU).
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


class Learner:
    def __init__(self, cfg: AsyncConfig, run_dir: Path, task_overrides: list[str] | None = None):
        """`task_overrides`: the command line's overrides (default: this Hydra run's); with `learner.init_from`
        the agent keys they name are the only ones not taken from the checkpoint (robolearn.checkpoint.run_agent_config)."""
        self.lcfg, self.run_dir = cfg.learner, run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        if cfg.keep_freed_memory:
            keep_freed_memory()
        torch.manual_seed(cfg.seed)
        contract = EnvSpec.from_config(cfg.env)
        obs_space, act_space = contract.observation_space(), contract.action_space()
        init = None
        if self.lcfg.init_from:
            # Fine-tuning (e.g. online on the arm after sim) starts from a checkpoint with the agent it was
            # trained with: its config comes with it (what deploy's online actor uses too), not from this
            # command's agent group; only keys given by name override it.
            init = load_checkpoint(self.lcfg.init_from)
            agent_cfg = run_agent_config(cfg, obs_space, task_overrides)
            cfg = dataclasses.replace(cfg, agent=agent_cfg)
            log.info("learner: the agent config of %s (%s)", self.lcfg.init_from,
                     {k: getattr(agent_cfg, k) for k in ("encoder", "critic_only_keys", "actor_only_keys")})
        self.cfg = cfg
        encoder_meta = init.get("encoder_meta") if init is not None and cfg.agent.encoder == "pretrained" else None
        self.agent = DrQAgent(obs_space, act_space, cfg.agent, device=pick_device(cfg.device), encoder_meta=encoder_meta)
        self.agent.check_trainable()
        self.signature = acting_signature(obs_space, act_space, self.agent.critic_only_keys)
        self.updates = 0
        if init is not None and not (run_dir / "checkpoint.pt").exists():
            # Networks, optimisers and alpha from the checkpoint; its policy must read this env's observations.
            saved_critic_only = (init.get("agent_config") or {}).get("critic_only_keys") or []
            check_signature(init, acting_signature(obs_space, act_space, saved_critic_only), self.lcfg.init_from)
            if load_policy_for(self.agent, init):
                log.info("learner initialised from %s", self.lcfg.init_from)
            else:
                log.warning("learner: policy initialised from %s; its critic read other keys than this one's %s: "
                            "the critic starts fresh", self.lcfg.init_from, self.agent.critic_only_keys)
        if (run_dir / "checkpoint.pt").exists():
            payload = load_checkpoint(run_dir / "checkpoint.pt", self.signature)
            self.agent.load_training_state(payload["agent"])
            self.updates = payload["counters"]["updates"]
            log.info("resumed the learner from %s at update %d", run_dir, self.updates)
        self.client = LearnerClient(
            load_transport_config(cfg.transport), self.agent.learning_space, act_space.shape, batch_size=self.lcfg.batch_size,
            n_step=self.agent.cfg.n_step, gamma=self.agent.cfg.gamma, frame_stack=self.agent.cfg.frame_stack,
            min_transitions=self.lcfg.min_transitions,
        )
        self.writer = SummaryWriter(str(run_dir / "tb"))
        self.stop_requested = False

    def publish(self) -> None:
        self.client.publish_weights(self.updates, acting_weights(self.agent))

    def train(self) -> dict:
        lcfg = self.lcfg
        total = lcfg.total_updates
        bar = tqdm(total=total, initial=self.updates, desc="learner", unit="upd", disable=not self.cfg.progress, smoothing=0.05)
        self.publish()  # actors start from the learner's current policy
        metrics: dict = {}
        waited_since, alone_since = time.monotonic(), None
        started, start_updates = time.monotonic(), self.updates
        while (total is None or self.updates < total) and not self.stop_requested:
            alone_since = self._check_actors(alone_since)
            # At the update-to-data cap the learner waits here, in the loop: a stop request or the loss of every
            # actor is still seen (a wait of its own once ignored SIGTERM and went silent when actors stopped).
            capped = self._at_utd_cap()
            batch = None if capped else self.client.next_batch(timeout_s=1.0)
            if batch is None:
                if time.monotonic() - waited_since > 10.0:
                    reason = (f"{self.updates} updates on {self.client.status.get('transitions') or 0} transitions is the "
                              f"max_utd cap ({self.lcfg.max_utd})") if capped else self.client.waiting_reason or "no batch from the replay server"
                    log.info("learner waiting for data: %s", reason)
                    waited_since = time.monotonic()
                if capped:
                    time.sleep(0.01)
                continue
            waited_since = time.monotonic()
            metrics = self.agent.update(batch)
            self.updates += 1
            check_finite(metrics, f"update {self.updates}", self.run_dir / "checkpoint.pt")
            if self.updates % lcfg.publish_every == 0:
                self.publish()
            if self.updates % lcfg.log_every == 0:
                rate = (self.updates - start_updates) / max(time.monotonic() - started, 1e-9)
                status = self.client.status
                for name, value in {**metrics, "updates_per_s": rate, "transitions": status.get("transitions") or 0,
                                    "actors_alive": self.client.actors_alive()}.items():
                    self.writer.add_scalar(f"learner/{name}", value, self.updates)
                bar.set_postfix(actors=self.client.actors_alive(), data=status.get("transitions"), q=f"{metrics['q_mean']:.1f}")
            if self.updates % lcfg.save_every == 0:
                self.save()
            bar.update(1)
        bar.close()
        self.publish()
        self.save()
        return {"updates": self.updates, **metrics}

    def _at_utd_cap(self) -> bool:
        """Updates are kept <= max_utd x stored transitions, so slow actors do not mean an over-fitted learner."""
        max_utd = self.lcfg.max_utd
        return bool(max_utd) and self.updates >= max_utd * (self.client.status.get("transitions") or 0) and not self.client.fatal

    def _check_actors(self, alone_since: float | None) -> float | None:
        if not self.client.status:  # no status yet (or a new connection's): nothing known about the actors
            return alone_since
        if self.client.actors_alive() == 0:
            now = time.monotonic()
            if alone_since is None:
                log.warning("learner: no actor is alive (the replay server hears from none); updating on stored data")
                return now
            return alone_since
        if alone_since is not None:
            log.info("learner: actors are back (%d alive)", self.client.actors_alive())
        return None

    def save(self) -> None:
        save_checkpoint(self.run_dir / "checkpoint.pt", {
            "spec": self.signature,
            "agent": self.agent.training_state(),
            "agent_config": dataclasses.asdict(self.cfg.agent),
            "actor_keys": list(self.agent.actor_keys),  # the order of the policy's vector inputs
            "env_config": env_record(self.cfg.env),
            "encoder_meta": None if self.agent.frozen is None else self.agent.frozen.meta,
            "counters": {"updates": self.updates},
        })

    def close(self) -> None:
        self.client.close()
        self.writer.close()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="async_sim")
def main(node: DictConfig) -> None:
    cfg = load_typed(AsyncConfig, node, "async")
    learner = Learner(cfg, Path(cfg.run_dir) / "learner")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(learner, "stop_requested", True))  # save, then exit
    try:
        result = learner.train()
    finally:
        learner.close()
    print(f"learner finished: {result}")
    ignore_late_stop_signals()


if __name__ == "__main__":
    main()
