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
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from robolearn.acting import AgentPolicy
from robolearn.agents import AgentConfig, DrQAgent
from robolearn.allocator import keep_freed_memory, one_off_buffers
from robolearn.checkpoint import load_checkpoint, save_checkpoint, spec_signature
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


class Workspace:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
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
        self.signature = spec_signature(obs_space, act_space)
        self.agent = DrQAgent(obs_space, act_space, agent_config(cfg.agent), device=self.device)
        self.replay = ReplayStorage(obs_space, act_space.shape, cfg.replay.capacity)
        self.demos = self._demos()
        ratio = cfg.replay.demo_ratio if self.demos is not None else 0.0
        self.sampler = MixedSampler(self.replay, self.demos, ratio)
        self.step = self.episode = self.updates = 0
        self.next_eval, self.next_save = cfg.eval.every, cfg.save_every
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
            return store
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
        return store

    # -- the loop ------------------------------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.cfg
        collect = AgentPolicy(self.agent, deterministic=False)
        bar = tqdm(total=cfg.total_steps, initial=self.step, desc="train", unit="step", disable=not cfg.progress, smoothing=0.05)
        last_eval: dict = {}
        # A wall-clock budget (a cluster slot, a lent GPU): at the limit the run saves and evaluates as at
        # total_steps, so the budget's result is recorded and the run resumes from there.
        limit_min = cfg.get("time_limit_min")
        deadline = time.monotonic() + 60 * float(limit_min) if limit_min else math.inf
        while self.step < cfg.total_steps and time.monotonic() < deadline:
            obs, _ = self.env.reset(seed=cfg.seed * 1_000_000 + self.episode)
            collect.reset()
            self.replay.start_episode(obs)
            episode_return, length, done, info = 0.0, 0, False, {}
            started = time.perf_counter()
            while not done and self.step < cfg.total_steps and time.monotonic() < deadline:
                policy_action = collect.act(obs)  # also keeps the frame stack current during seed steps
                action = self.rng.uniform(-1, 1, policy_action.shape).astype(np.float32) if self.step < cfg.seed_steps else policy_action
                obs, reward, terminated, truncated, info = self.env.step(action)
                self.replay.add(action, reward, terminated, truncated, obs)
                episode_return += reward
                length += 1
                self.step += 1
                done = terminated or truncated
                if self.step >= cfg.seed_steps:
                    self._learn(self.step)
                bar.update(1)
            if not done:
                break  # the step or time budget ran out mid-episode
            self.episode += 1
            self._log("episode", {"return": episode_return, "length": length, "success": float(info["success"]),
                                  "steps_per_s": length / (time.perf_counter() - started)})
            bar.set_postfix(ep=self.episode, ret=f"{episode_return:.1f}", upd=self.updates, eval=f"{last_eval.get('success_rate', float('nan')):.2f}")
            if self.step >= self.next_eval:
                last_eval = self.evaluate()
                self.next_eval += cfg.eval.every
            if self.step >= self.next_save:
                self.save()
                self.next_save += cfg.save_every
        bar.close()
        if self.step < cfg.total_steps:
            log.info("time limit of %s min reached at step %d of %d", limit_min, self.step, cfg.total_steps)
        self.save()
        final = self.evaluate() if cfg.eval.final else last_eval
        self.writer.close()
        return final

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
        return result

    def _log(self, prefix: str, values: dict) -> None:
        for name, value in values.items():
            if name != "step":
                self.writer.add_scalar(f"{prefix}/{name}", value, self.step)

    # -- checkpoints ---------------------------------------------------------------------------------
    def save(self) -> None:
        with one_off_buffers():  # the save gathers a full copy of the replay: handed back once written
            self.replay.save(self.run_dir / "replay.npz")
        save_checkpoint(self.run_dir / "checkpoint.pt", {
            "spec": self.signature,
            "agent": self.agent.training_state(),
            "agent_config": OmegaConf.to_container(self.cfg.agent, resolve=True),
            "counters": {"step": self.step, "episode": self.episode, "updates": self.updates,
                         "next_eval": self.next_eval, "next_save": self.next_save},
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state()},
        })

    def _resume(self, run_dir: Path) -> None:
        payload = load_checkpoint(run_dir / "checkpoint.pt", self.signature)
        self.agent.load_training_state(payload["agent"])
        self.replay = ReplayStorage.load(run_dir / "replay.npz", self.env.observation_space, self.env.action_space.shape,
                                         capacity=self.cfg.replay.capacity)
        self.sampler.online = self.replay
        counters = payload["counters"]
        self.step, self.episode, self.updates = counters["step"], counters["episode"], counters["updates"]
        self.next_eval, self.next_save = counters["next_eval"], counters["next_save"]
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
