"""The in-process runner: the recipe's roles in one process, no sockets (`runner=inline`).

Env steps and updates alternate in one loop, seeded from the run's seed, so a run repeats exactly and a
resumed run (`resume=<run dir>`) continues bit-exactly: the checkpoint holds the agent, the counters and
the random states, `replay.npz` the replay. For tests, for reproducible runs, and where one core is all
there is; the main job's default is the asynchronous runner (robolearn/training/async_runner.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from robolearn.agents import DrQAgent
from robolearn.agents.divergence import check_finite
from robolearn.agents.policy import AgentPolicy
from robolearn.checkpoint import acting_signature, load_checkpoint, save_checkpoint
from robolearn.display import open_view
from robolearn.envs import make_env
from robolearn.policies import SeedActions
from robolearn.process.allocator import one_off_buffers
from robolearn.process.device import pick_device
from robolearn.process.signals import StopRequests
from robolearn.replay import MixedSampler, ReplayStorage
from robolearn.rollout import Step, run_episode
from robolearn.training.config import TrainConfig
from robolearn.training.evaluation import EvalRecorder
from robolearn.training.payload import agent_payload
from robolearn.training.prerequisites import ensure_encoder, load_or_collect_demos, store_step
from robolearn.training.schedule import WallClockSchedule

log = logging.getLogger(__name__)


class Workspace:
    def __init__(self, cfg: TrainConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
        ensure_encoder(cfg)
        self.device = pick_device(cfg.device)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.env = make_env(cfg.env)
        self.eval_env = make_env(cfg.env, render_mode="rgb_array" if cfg.eval.video else None)
        self.view = open_view(cfg.display, "train")
        self.writer = SummaryWriter(str(run_dir / "tb"))
        self.evaluations = EvalRecorder(run_dir, cfg.eval, self.eval_env, self.writer, self.view)
        obs_space, act_space = self.env.observation_space, self.env.action_space
        self.agent = DrQAgent(obs_space, act_space, cfg.agent, device=self.device)
        self.agent.check_trainable()
        # Checkpoints are bound to what the policy reads: a critic-only key (the sim's privileged state)
        # may be missing where the policy is deployed.
        self.signature = acting_signature(obs_space, act_space, self.agent.critic_only_keys)
        if self.agent.critic_only_keys:
            log.info("asymmetric critic: %s seen by the critic only", self.agent.critic_only_keys)
        # With a frozen encoder the replay holds features, computed once per env step, instead of images.
        self.replay = ReplayStorage(self.agent.learning_space, act_space.shape, cfg.replay.capacity)
        self.demos = self._demos()
        ratio = cfg.replay.demo_ratio if self.demos is not None else 0.0
        self.sampler = MixedSampler(self.replay, self.demos, ratio)
        self.step = self.episode = self.updates = 0
        self.next_eval, self.next_save = cfg.eval.every, cfg.save_every
        self.stop_reason = ""
        self.clock = time.monotonic  # seconds; tests drive it
        self.started: float | None = None  # when train() began (this process)
        self.train_s_before = 0.0  # training wall-clock of the runs this one resumes
        if cfg.resume:
            self._resume(Path(cfg.resume))

    # -- demos ---------------------------------------------------------------------------------------
    def _demos(self) -> ReplayStorage | None:
        demos = load_or_collect_demos(self.cfg, self.env, self.cfg.progress, self._viewing("demo"))
        return None if demos is None else self._as_learned(demos)

    def _as_learned(self, demos: ReplayStorage) -> ReplayStorage:
        """Demos are cached with their images; a frozen encoder turns them into features once."""
        if self.agent.learning_space is self.env.observation_space:
            return demos
        return demos.map_observations(self.agent.learning_space, lambda obs: self.agent.observe(obs, batched=True))

    # -- the loop ------------------------------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.cfg
        # Seed steps: uniform random actions, the policy still acting so its frame stack stays current.
        collect = SeedActions(AgentPolicy(self.agent, deterministic=False), self.rng, lambda: self.step < cfg.seed_steps)
        bar = tqdm(total=cfg.total_steps, initial=self.step, desc="train", unit="step", disable=not cfg.progress, smoothing=0.1)
        # A wall-clock budget (a cluster slot, a lent GPU), SIGTERM or Ctrl-C: the episode under way is
        # finished (at most one episode of steps), then the run saves and evaluates as at total_steps, so a
        # resumed run is the same as one never stopped. A second Ctrl-C stops at once without saving.
        started = self.started = self.clock()
        deadline = started + 60 * float(cfg.time_limit_min) if cfg.time_limit_min else math.inf
        clock = WallClockSchedule.of(self.clock, cfg)
        recent: deque[float] = deque(maxlen=10)
        episode_started = [0.0]

        def start(obs, _info) -> None:
            self.replay.start_episode(obs)
            episode_started[0] = time.perf_counter()

        def stepped(step: Step) -> None:
            self.step += 1
            if self.step >= cfg.seed_steps:
                self._learn(self.step)
            bar.update(1)
            if self.step % 10 == 0 or step.done:
                bar.set_postfix(self._postfix(recent), refresh=False)

        with StopRequests() as stop:
            while self.step < cfg.total_steps and not self._stopping(stop, deadline):
                collect.reset()
                episode = run_episode(
                    self.env, collect.act, seed=cfg.seed * 1_000_000 + self.episode, observe=self.agent.observe,
                    on_start=start, record=lambda step: store_step(self.replay, step), on_step=stepped,
                    before_step=lambda: "total_steps" if self.step >= cfg.total_steps else None, view=self._viewing("train"))
                if not episode.finished:
                    break  # total_steps ran out mid-episode: the run is over
                self.episode += 1
                recent.append(float(episode.success))
                self._log("episode", {"return": episode.episode_return, "length": episode.length, "success": float(episode.success),
                                      "steps_per_s": episode.length / (time.perf_counter() - episode_started[0])})
                bar.set_postfix(self._postfix(recent))
                if self.step >= self.next_eval or clock.eval_due():
                    self.evaluate()
                    self.next_eval = (self.step // cfg.eval.every + 1) * cfg.eval.every
                    clock.evaluated()
                    bar.unpause()  # the eval's time is not training's: keeps the bar's rate and ETA honest
                if self.step >= self.next_save or clock.save_due():
                    self.save()
                    self.next_save = (self.step // cfg.save_every + 1) * cfg.save_every
                    clock.saved()
                    bar.unpause()
        bar.close()
        if self.step < cfg.total_steps:
            log.info("stopped at step %d of %d (%s); resume with resume=%s", self.step, cfg.total_steps,
                     self.stop_reason, self.run_dir)
        self.save()  # first: a scheduler's grace period may end during the final evaluation
        if cfg.eval.final and self.evaluations.last.get("step") != self.step:
            self.evaluate()
            self.save(replay=False)  # the checkpoint records that evaluation too; the replay is unchanged
        self.writer.close()
        return self.evaluations.last

    def _stopping(self, stop: StopRequests, deadline: float) -> bool:
        if stop.requested:
            self.stop_reason = f"{stop.requested} received"
        elif self.clock() >= deadline:
            self.stop_reason = f"time limit of {self.cfg.time_limit_min} min reached"
        else:
            return False
        return True

    def _postfix(self, recent: deque) -> dict:
        """Fresh counts on the bar: updates so far, the last eval's success and the recent training episodes'."""
        last = self.evaluations.last.get("success_rate")
        return {"upd": self.updates, "eval": "-" if last is None else f"{last:.2f}",
                "train_success": "-" if not recent else f"{sum(recent) / len(recent):.1f}", "ep": self.episode}

    def _learn(self, step: int) -> None:
        cfg = self.cfg
        if step % cfg.update_every:
            return
        for _ in range(cfg.utd):
            batch = self.sampler.sample(cfg.batch_size, self.rng, n_step=self.agent.cfg.n_step, gamma=self.agent.cfg.gamma,
                                        frame_stack=self.agent.cfg.frame_stack)
            metrics = self.agent.update(batch)
            self.updates += 1
            check_finite(metrics, f"step {step} (update {self.updates})", self.run_dir / "checkpoint.pt")
        if self.updates % cfg.log_every_updates < cfg.utd:
            self._log("train", metrics)

    def evaluate(self) -> dict:
        self._viewing("eval")
        result = self.evaluations.evaluate(self.agent, self.step, self._payload, updates=self.updates,
                                           train_min=self._train_s() / 60)
        self._log("replay", {"transitions": self.replay.num_transitions(), "bytes_per_transition": self.replay.bytes_per_transition()})
        return result

    def _viewing(self, label: str):
        """The live view (or None), its episode entries labelled demo, train or eval."""
        if self.view is not None:
            self.view.label = label
        return self.view

    def _log(self, prefix: str, values: dict) -> None:
        for name, value in values.items():
            if name != "step":
                self.writer.add_scalar(f"{prefix}/{name}", value, self.step)

    # -- checkpoints ---------------------------------------------------------------------------------
    def save(self, replay: bool = True) -> None:
        if replay:
            with one_off_buffers():  # the save gathers a full copy of the replay: handed back once written
                self.replay.save(self.run_dir / "replay.npz")
        save_checkpoint(self.run_dir / "checkpoint.pt", self._payload())

    def _payload(self) -> dict:
        counters = {"step": self.step, "episode": self.episode, "updates": self.updates, "next_eval": self.next_eval,
                    "next_save": self.next_save}
        return agent_payload(self.agent, self.cfg.agent, self.cfg.env, self.signature, counters, train_s=self._train_s(),
                             rng={"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state()},
                             last_eval=self.evaluations.last, best=self.evaluations.best)

    def _train_s(self) -> float:
        """Training wall-clock so far, across resumes (eval.csv's train_min)."""
        return self.train_s_before + (self.clock() - self.started if self.started is not None else 0.0)

    def _resume(self, run_dir: Path) -> None:
        payload = load_checkpoint(run_dir / "checkpoint.pt", self.signature)
        self.agent.load_training_state(payload["agent"])
        self.replay = ReplayStorage.load(run_dir / "replay.npz", self.agent.learning_space, self.env.action_space.shape,
                                         capacity=self.cfg.replay.capacity)
        self.sampler.online = self.replay
        counters = payload["counters"]
        self.step, self.episode, self.updates = counters["step"], counters["episode"], counters["updates"]
        self.next_eval, self.next_save = counters["next_eval"], counters["next_save"]
        self.evaluations.last, self.evaluations.best = payload.get("last_eval", {}), payload.get("best", {})
        self.train_s_before = float(payload.get("train_s", 0.0))
        self.rng.bit_generator.state = payload["rng"]["numpy"]
        torch.set_rng_state(payload["rng"]["torch"])
        log.info("resumed from %s at step %d (episode %d, %d updates)", run_dir, self.step, self.episode, self.updates)

    def close(self) -> None:
        if self.view is not None:
            self.view.close()
        self.env.close()
        self.eval_env.close()
