"""Training in sim, the main job: SAC/DrQ on the kettle-to-sink env, optionally with expert demos.

    python -m robolearn.train                                   # pixels: front + wrist 84x84 + joints
    python -m robolearn.train --config-name train_state         # state only (fast on a CPU)
    python -m robolearn.train resume=outputs/train/<run>        # continue a run exactly where it stopped

A run directory holds `checkpoint.pt` and `replay.npz` (both written atomically at episode ends),
tensorboard scalars under `tb/`, `eval.csv` and eval videos under `videos/`.
"""

from __future__ import annotations

import csv
import logging
import math
import signal
import threading
import time
from collections import deque
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from robolearn.acting import AgentPolicy
from robolearn.agents import AgentConfig, DrQAgent
from robolearn.allocator import keep_freed_memory, one_off_buffers
from robolearn.checkpoint import acting_signature, load_checkpoint, save_checkpoint
from robolearn.envs import make_env
from robolearn.evaluation import evaluate
from robolearn.paths import CONFIG_DIR
from robolearn.replay import MixedSampler, ReplayStorage

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """A loss or metric became non-finite; training stops and the last good checkpoint is kept."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def agent_config(node: DictConfig) -> AgentConfig:
    known = set(AgentConfig.__dataclass_fields__)
    unknown = set(node) - known
    if unknown:
        raise ValueError(f"agent config: unknown keys {sorted(unknown)}; known keys: {sorted(known)}")
    return AgentConfig(**OmegaConf.to_container(node, resolve=True))


class StopRequests:
    """SIGTERM (a scheduler, `timeout`) and the first Ctrl-C ask the run to stop at the next episode end
    and save; a second Ctrl-C raises KeyboardInterrupt as usual. Handlers are installed only in the main
    thread and restored on exit."""

    def __init__(self):
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        log.warning("%s: finishing this episode, then saving (Ctrl-C again stops without saving)", self.requested)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class WallClockSchedule:
    """Evaluations and checkpoints by wall-clock as well as by steps: a first eval and checkpoint within
    minutes of the start (on a CPU the step schedule's first ones are an hour away)."""

    def __init__(self, now, cfg: DictConfig):
        self.now = now
        started = now()
        self.eval_every = 60 * float(cfg.eval.get("every_min") or math.inf)
        self.save_every = 60 * float(cfg.get("save_every_min") or math.inf)
        self.next_eval = started + 60 * float(cfg.eval.get("first_min") or math.inf)
        self.next_save = started + min(self.save_every, self.next_eval - started)

    def eval_due(self) -> bool:
        return self.now() >= self.next_eval

    def save_due(self) -> bool:
        return self.now() >= self.next_save

    def evaluated(self) -> None:
        self.next_eval = self.now() + self.eval_every

    def saved(self) -> None:
        self.next_save = self.now() + self.save_every


def ensure_encoder(cfg: DictConfig) -> None:
    """The pixel recipe's frozen encoder: made from the project's own sim data when its file is missing
    (nothing is downloaded), so the main job runs on a fresh machine. Without `pretrain_if_missing` the
    agent refuses the missing file with the command that makes it."""
    if cfg.agent.get("encoder") != "pretrained" or not cfg.agent.get("encoder_weights") or not cfg.get("pretrain_if_missing"):
        return
    path = Path(cfg.agent.encoder_weights)
    if path.is_file():
        return
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from robolearn.pretrain import pretrain

    log.warning("no pretrained encoder at %s: making it first (python -m robolearn.pretrain out=%s; see configs/pretrain.yaml)", path, path)
    overrides = [f"out={path}", f"progress={cfg.progress}", f"torch_threads={cfg.torch_threads}", f"device={cfg.device}",
                 *cfg.get("pretrain_overrides", [])]
    if GlobalHydra.instance().is_initialized():
        pretrain_cfg = compose(config_name="pretrain", overrides=overrides)
    else:
        with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
            pretrain_cfg = compose(config_name="pretrain", overrides=overrides)
    with open_dict(pretrain_cfg):
        pretrain_cfg.env = cfg.env  # the same cameras and scene as the run
    pretrain(pretrain_cfg)


class Workspace:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
        ensure_encoder(cfg)
        for key in ("utd", "update_every", "batch_size", "total_steps"):
            if int(cfg[key]) < (0 if key == "total_steps" else 1):
                raise ValueError(f"train config: {key} must be positive, got {cfg[key]}")
        self.device = pick_device(cfg.device)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.env = make_env(cfg.env)
        self.eval_env = make_env(cfg.env, render_mode="rgb_array" if cfg.eval.video else None)
        obs_space, act_space = self.env.observation_space, self.env.action_space
        self.agent = DrQAgent(obs_space, act_space, agent_config(cfg.agent), device=self.device)
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
        self.last_eval: dict = {}
        self.best: dict = {}  # the best evaluation so far; its agent is kept in best.pt
        self.stop_reason = ""
        self.clock = time.monotonic  # seconds; tests drive it
        self.writer = SummaryWriter(str(run_dir / "tb"))
        if cfg.resume:
            self._resume(Path(cfg.resume))

    # -- demos ---------------------------------------------------------------------------------------
    def _demos(self) -> ReplayStorage | None:
        cfg = self.cfg.demos
        if not cfg.episodes:
            return None
        obs_space, act_space = self.env.observation_space, self.env.action_space
        path = Path(cfg.path) if cfg.path else None
        if path is not None and path.exists():
            store = ReplayStorage.load(path, obs_space, act_space.shape)
            log.info("loaded %d demo transitions from %s", store.num_transitions(), path)
            return self._as_learned(store)
        store = ReplayStorage(obs_space, act_space.shape, cfg.episodes * (self.env.unwrapped.cfg.max_episode_steps + 1))
        expert = instantiate(cfg.policy, env=self.env)
        successes = 0
        bar = tqdm(range(cfg.episodes), desc="demos", unit="ep", disable=not self.cfg.progress)
        for i in bar:
            # Demo seeds are fixed (the cached file is shared by runs) and disjoint from training and eval seeds.
            obs, _ = self.env.reset(seed=10_000_000 + i)
            expert.reset()
            store.start_episode(obs)
            done = False
            while not done:
                action = expert.act(obs)
                obs, reward, terminated, truncated, info = self.env.step(action)
                store.add(action, reward, terminated, truncated, obs)
                done = terminated or truncated
            successes += bool(info["success"])
            bar.set_postfix(success=f"{successes}/{i + 1}")
        log.info("collected %d demo episodes (%d successful, %d transitions)", cfg.episodes, successes, store.num_transitions())
        if path is not None:
            store.save(path)
        return self._as_learned(store)

    def _as_learned(self, demos: ReplayStorage) -> ReplayStorage:
        """Demos are cached with their images; a frozen encoder turns them into features once."""
        if self.agent.learning_space is self.env.observation_space:
            return demos
        return demos.map_observations(self.agent.learning_space, lambda obs: self.agent.observe(obs, batched=True))

    # -- the loop ------------------------------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.cfg
        collect = AgentPolicy(self.agent, deterministic=False)
        bar = tqdm(total=cfg.total_steps, initial=self.step, desc="train", unit="step", disable=not cfg.progress, smoothing=0.1)
        # A wall-clock budget (a cluster slot, a lent GPU), SIGTERM or Ctrl-C: the episode under way is
        # finished (at most one episode of steps), then the run saves and evaluates as at total_steps, so a
        # resumed run is the same as one never stopped. A second Ctrl-C stops at once without saving.
        limit_min = cfg.get("time_limit_min")
        started = self.clock()
        deadline = started + 60 * float(limit_min) if limit_min else math.inf
        clock = WallClockSchedule(self.clock, cfg)
        recent: deque[float] = deque(maxlen=10)
        with StopRequests() as stop:
            while self.step < cfg.total_steps and not self._stopping(stop, deadline):
                obs, _ = self.env.reset(seed=cfg.seed * 1_000_000 + self.episode)
                obs = self.agent.observe(obs)
                collect.reset()
                self.replay.start_episode(obs)
                episode_return, length, done, info = 0.0, 0, False, {}
                episode_started = time.perf_counter()
                while not done and self.step < cfg.total_steps:
                    policy_action = collect.act(obs)  # also keeps the frame stack current during seed steps
                    action = self.rng.uniform(-1, 1, policy_action.shape).astype(np.float32) if self.step < cfg.seed_steps else policy_action
                    obs, reward, terminated, truncated, info = self.env.step(action)
                    obs = self.agent.observe(obs)
                    self.replay.add(action, reward, terminated, truncated, obs)
                    episode_return += reward
                    length += 1
                    self.step += 1
                    done = terminated or truncated
                    if self.step >= cfg.seed_steps:
                        self._learn(self.step)
                    bar.update(1)
                    if self.step % 10 == 0 or done:
                        bar.set_postfix(self._postfix(recent), refresh=False)
                if not done:
                    break  # total_steps ran out mid-episode: the run is over
                self.episode += 1
                recent.append(float(info["success"]))
                self._log("episode", {"return": episode_return, "length": length, "success": float(info["success"]),
                                      "steps_per_s": length / (time.perf_counter() - episode_started)})
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
        if cfg.eval.final and self.last_eval.get("step") != self.step:
            self.evaluate()
            self.save(replay=False)  # the checkpoint records that evaluation too; the replay is unchanged
        self.writer.close()
        return self.last_eval

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
        last = self.last_eval.get("success_rate")
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
            for name, value in metrics.items():
                if not math.isfinite(value):
                    raise TrainingDiverged(
                        f"step {step} (update {self.updates}): {name} = {value}; stopped without saving, "
                        f"the last good checkpoint is {self.run_dir / 'checkpoint.pt'}"
                    )
        if self.updates % cfg.log_every_updates < cfg.utd:
            self._log("train", metrics)

    def evaluate(self) -> dict:
        cfg = self.cfg.eval
        video = self.run_dir / "videos" / f"eval_{self.step:08d}.mp4" if cfg.video else None
        summary = evaluate(self.eval_env, AgentPolicy(self.agent, deterministic=True), episodes=cfg.episodes,
                           seed=cfg.seed, video_path=video, progress=False)
        result = {"step": self.step, "success_rate": summary.success_rate, "mean_return": summary.mean_return,
                  "mean_length": summary.mean_length}
        self._log("eval", result)
        self._log("replay", {"transitions": self.replay.num_transitions(), "bytes_per_transition": self.replay.bytes_per_transition()})
        csv_path = self.run_dir / "eval.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(result))
            if new:
                writer.writeheader()
            writer.writerow(result)
        log.info("eval at step %d: success %.2f, return %.2f (replay: %d transitions, %.0f bytes each)", self.step,
                 summary.success_rate, summary.mean_return, self.replay.num_transitions(), self.replay.bytes_per_transition())
        self.last_eval = result
        if not self.best or (result["success_rate"], result["mean_return"]) >= (self.best["success_rate"], self.best["mean_return"]):
            # What a run hands over may be its best evaluated policy, not its last: SAC's success swings
            # from one evaluation to the next.
            self.best = result
            save_checkpoint(self.run_dir / "best.pt", {**self._payload(), "eval": result})
        return result

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
        return {
            "spec": self.signature,
            "agent": self.agent.training_state(),
            "agent_config": OmegaConf.to_container(self.cfg.agent, resolve=True),
            "encoder_meta": None if self.agent.frozen is None else self.agent.frozen.meta,
            "counters": {"step": self.step, "episode": self.episode, "updates": self.updates,
                         "next_eval": self.next_eval, "next_save": self.next_save},
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state()},
            "last_eval": self.last_eval, "best": self.best,
        }

    def _resume(self, run_dir: Path) -> None:
        payload = load_checkpoint(run_dir / "checkpoint.pt", self.signature)
        self.agent.load_training_state(payload["agent"])
        self.replay = ReplayStorage.load(run_dir / "replay.npz", self.agent.learning_space, self.env.action_space.shape,
                                         capacity=self.cfg.replay.capacity)
        self.sampler.online = self.replay
        counters = payload["counters"]
        self.step, self.episode, self.updates = counters["step"], counters["episode"], counters["updates"]
        self.next_eval, self.next_save = counters["next_eval"], counters["next_save"]
        self.last_eval, self.best = payload.get("last_eval", {}), payload.get("best", {})
        self.rng.bit_generator.state = payload["rng"]["numpy"]
        torch.set_rng_state(payload["rng"]["torch"])
        log.info("resumed from %s at step %d (episode %d, %d updates)", run_dir, self.step, self.episode, self.updates)

    def close(self) -> None:
        self.env.close()
        self.eval_env.close()


def run(cfg: DictConfig, run_dir: Path) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(cfg, run_dir)
    if cfg.get("keep_freed_memory", False):
        keep_freed_memory()  # after the replay is allocated: its arrays stay lazily committed pages
    try:
        return workspace.train()
    finally:
        workspace.close()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    run_dir = Path(cfg.resume) if cfg.resume else Path(HydraConfig.get().runtime.output_dir)
    result = run(cfg, run_dir)
    print(f"run directory: {run_dir}")
    print(f"final eval: {result}")


if __name__ == "__main__":
    main()
