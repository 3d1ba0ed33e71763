"""The asynchronous learner: batches from the replay server, SAC/DrQ updates, versioned weights out.

    python -m robolearn.roles.learner --config-name async_sim run_dir=outputs/async/run1

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
import json
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
from robolearn.roles.config import AsyncConfig
from robolearn.checkpoint import acting_signature, check_signature, load_checkpoint, load_policy_for, run_agent_config, save_checkpoint
from robolearn.config import load_typed
from robolearn.paths import CONFIG_DIR
from robolearn.process.allocator import keep_freed_memory
from robolearn.process.device import pick_device
from robolearn.process.signals import ignore_late_stop_signals
from robolearn.spec import EnvSpec
from robolearn.training.payload import agent_payload
from robolearn.training.schedule import WallClockSchedule
from robolearn.training.snapshots import snapshot_path
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
        if self.lcfg.torch_threads or cfg.torch_threads:
            torch.set_num_threads(self.lcfg.torch_threads or cfg.torch_threads)
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
        self.train_s_before = 0.0  # training wall-clock of the starts before this one (a resumed run)
        self.next_eval = cfg.eval.every  # env steps of the next eval snapshot
        self.snapshots = Path(cfg.run_dir) if self.lcfg.eval_snapshots and cfg.run_dir else None  # where eval snapshots go
        self.busy_s = 0.0  # time in updates since the first one (the busy share)
        self.first_update_at: float | None = None
        self.started = time.monotonic()
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
            counters = payload["counters"]
            self.updates = counters["updates"]
            self.train_s_before = float(payload.get("train_s", 0.0))
            self.next_eval = int(counters.get("next_eval", self.next_eval))
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
        self.started, start_updates = time.monotonic(), self.updates
        schedule = WallClockSchedule(time.monotonic, self.cfg.eval.first_min, self.cfg.eval.every_min, lcfg.save_every_min)
        next_report = 0.0
        while (total is None or self.updates < total) and not self.stop_requested:
            alone_since = self._check_actors(alone_since)
            if time.monotonic() >= next_report:  # twice a second: status, eval snapshots and saves by the clock
                self._periodic(schedule, start_updates)
                next_report = time.monotonic() + 0.5
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
                    time.sleep(0.002)
                continue
            waited_since = began = time.monotonic()
            if self.first_update_at is None:
                self.first_update_at = began
            metrics = self.agent.update(batch)
            self.busy_s += time.monotonic() - began
            self.updates += 1
            check_finite(metrics, f"update {self.updates}", self.run_dir / "checkpoint.pt")
            if self.updates % lcfg.publish_every == 0:
                self.publish()
            if self.updates % lcfg.log_every == 0:
                status = self.client.status
                for name, value in {**metrics, **self.rates(start_updates), "transitions": status.get("transitions") or 0,
                                    "actors_alive": self.client.actors_alive(), "intervention_share": self.intervention_share()}.items():
                    self.writer.add_scalar(f"learner/{name}", value, self.updates)
                bar.set_postfix(actors=self.client.actors_alive(), data=status.get("transitions"), q=f"{metrics['q_mean']:.1f}")
            if self.updates % lcfg.save_every == 0:
                self.save()
                schedule.saved()
            bar.update(1)
        bar.close()
        self.publish()
        self._fresh_status()
        self.save()
        if self.snapshots is not None:
            self.snapshot(final=True)
        self.write_status(start_updates)
        return {"updates": self.updates, **self.rates(start_updates), **metrics}

    def _fresh_status(self, timeout_s: float = 3.0) -> None:
        """Before the final save: a status the server sent after now, so the step count the checkpoint and the
        final snapshot record includes what the actors flushed as they stopped (at the update cap replies come
        only with heartbeats)."""
        asked = time.monotonic()
        deadline = asked + timeout_s
        while self.client.status_at <= asked and time.monotonic() < deadline and not self.client.fatal:
            time.sleep(0.02)

    def step(self) -> int:
        """Env steps so far: the online transitions the replay server holds (as last reported)."""
        return int(self.client.status.get("transitions") or 0)

    def intervention_share(self) -> float:
        """The share of the online transitions an intervener chose (the server's count; robolearn/interventions.py)."""
        status = self.client.status
        return round(int(status.get("intervention_transitions") or 0) / max(int(status.get("transitions") or 0), 1), 4)

    def rates(self, start_updates: int) -> dict:
        """Updates per second of this start, the achieved update-to-data ratio, and the busy share: the time
        spent in updates over the wall-clock since the first update (sampling happens on the server and is
        prefetched, so waiting for a batch, or at the update cap, is idle time)."""
        now = time.monotonic()
        learning = now - self.first_update_at if self.first_update_at is not None else 0.0
        learned_on = self.step() - self.lcfg.min_transitions + 1
        return {"updates_per_s": (self.updates - start_updates) / max(now - self.started, 1e-9),
                "busy": round(self.busy_s / learning, 3) if learning > 0 else 0.0,
                "utd": round(self.updates / learned_on, 3) if learned_on > 0 else 0.0}

    def _periodic(self, schedule: WallClockSchedule, start_updates: int) -> None:
        self.write_status(start_updates)
        step = self.step()
        if self.snapshots is not None and self.updates > 0 and (step >= self.next_eval or schedule.eval_due()):
            self.snapshot()
            self.next_eval = (step // self.cfg.eval.every + 1) * self.cfg.eval.every
            schedule.evaluated()
        if schedule.save_due():
            self.save()
            schedule.saved()

    def write_status(self, start_updates: int) -> None:
        """`status.json` beside the checkpoint: what the runner's progress bar shows."""
        status = {"step": self.step(), "updates": self.updates, "actors_alive": self.client.actors_alive(),
                  "train_min": round(self.train_s() / 60, 2), "intervention_share": self.intervention_share(),
                  **self.rates(start_updates)}
        path = self.run_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(path)

    def train_s(self) -> float:
        return self.train_s_before + time.monotonic() - self.started

    def payload(self) -> dict:
        counters = {"step": self.step(), "updates": self.updates, "next_eval": self.next_eval}
        return agent_payload(self.agent, self.cfg.agent, self.cfg.env, self.signature, counters, train_s=self.train_s())

    def snapshot(self, final: bool = False) -> Path:
        """The policy as it is now, for the evaluator (robolearn/roles/evaluator.py): it evaluates the newest."""
        path = snapshot_path(self.snapshots, self.step())
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, {**self.payload(), "train_min": self.train_s() / 60, "final": final})
        return path

    def _at_utd_cap(self) -> bool:
        """Updates are kept <= max_utd x the transitions since learning began (as the inline loop's utd per
        step after its seed steps), so slow actors do not mean an over-fitted learner."""
        max_utd = self.lcfg.max_utd
        learned_on = self.step() - self.lcfg.min_transitions + 1
        return bool(max_utd) and self.updates >= max_utd * learned_on and not self.client.fatal

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
        save_checkpoint(self.run_dir / "checkpoint.pt", self.payload())

    def close(self) -> None:
        self.client.close()
        self.writer.close()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="async_sim")
def main(node: DictConfig) -> None:
    cfg = load_typed(AsyncConfig, node, "async")
    learner = Learner(cfg, Path(cfg.run_dir) / cfg.learner.subdir)
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
