"""Training in sim, the main job: SAC/DrQ on the kettle-to-sink env, optionally with expert demos.

    python -m robolearn.train                                   # pixels: front + wrist 84x84 + joints
    python -m robolearn.train --config-name train_state         # state only (fast on a CPU)
    python -m robolearn.train resume=outputs/train/<run>        # continue a run exactly where it stopped

A run directory holds `checkpoint.pt` and `replay.npz` (both written atomically at episode ends),
tensorboard scalars under `tb/`, `eval.csv` and eval videos under `videos/`.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from robolearn.agents import AgentConfig, DrQAgent
from robolearn.agents.divergence import check_finite
from robolearn.agents.pretrained import EncoderFileError
from robolearn.agents.policy import AgentPolicy
from robolearn.checkpoint import CheckpointError, acting_signature, env_record, load_checkpoint, save_checkpoint
from robolearn.config import ConfigError, EnvConfig, check, load_typed, register_schema
from robolearn.display import DisplayConfig, open_view
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR
from robolearn.policies import SeedActions
from robolearn.process.allocator import keep_freed_memory, one_off_buffers
from robolearn.process.device import pick_device
from robolearn.process.signals import StopRequests
from robolearn.replay import MixedSampler, ReplayFormatError, ReplayStorage
from robolearn.rollout import Step, evaluate, run_episode
from robolearn.spec import EnvSpec

log = logging.getLogger(__name__)


# -- the config (configs/train*.yaml hold only what differs from these) -----------------------------------
@dataclass
class ReplaySettings:
    capacity: int = 200_000
    demo_ratio: float = 0.5  # share of every batch drawn from demos (RLPD's 50/50)


@dataclass
class DemoSettings:
    episodes: int = 20  # 0 disables demos
    path: Optional[str] = None  # a demo file, reused when present (collected and written when not)
    policy: Any = field(default_factory=lambda: {"_target_": "sim.expert.KettleSinkExpert"})  # the demonstrator


@dataclass
class EvalSettings:
    every: int = 2500  # env steps
    first_min: Optional[float] = 2.0  # the first eval (and checkpoint) by wall-clock: at the first episode end after this
    every_min: Optional[float] = 20.0  # then by steps or by wall-clock, whichever comes first (null: steps only)
    episodes: int = 20
    seed: int = 1_000_000_000  # evaluation seeds are disjoint from training seeds
    video: bool = True
    final: bool = True


@dataclass
class TrainConfig:
    env: Any = None  # validated by the env factory it names (the kettle sim, dm_control)
    agent: AgentConfig = field(default_factory=AgentConfig)
    pretrain_if_missing: bool = True  # no file at agent.encoder_weights: run robolearn.pretrain (configs/pretrain.yaml) first
    pretrain_overrides: list[str] = field(default_factory=list)  # for that run, e.g. "pretrain_overrides=['episodes=50']"
    seed: int = 0
    device: str = "auto"  # cuda when present, else cpu
    torch_threads: int = 1  # 0: torch's default
    keep_freed_memory: bool = True  # glibc keeps freed buffers for reuse (robolearn/process/allocator.py)
    total_steps: int = 50_000  # env steps
    time_limit_min: Optional[float] = None  # wall-clock budget: at the limit the episode is finished, then the run saves and evaluates
    seed_steps: int = 1000  # uniform random actions before the policy acts and learning starts
    update_every: int = 1  # env steps between update rounds
    utd: int = 2  # updates per round (update-to-data ratio)
    batch_size: int = 256
    log_every_updates: int = 100
    save_every: int = 2500  # env steps; checkpoints are written at the next episode end
    save_every_min: Optional[float] = 5.0  # ... and by wall-clock (null: steps only)
    resume: Optional[str] = None  # a run directory to continue exactly
    progress: bool = True
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    demos: DemoSettings = field(default_factory=DemoSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    display: DisplayConfig = field(default_factory=DisplayConfig)  # a live view of demos, collection and evaluation (docs/watching.md)

    def __post_init__(self) -> None:
        for key in ("utd", "update_every", "batch_size", "log_every_updates", "save_every"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "must be positive")
        check(self.total_steps >= 0, "total_steps", self.total_steps, "must be >= 0")
        check(self.seed_steps >= 0, "seed_steps", self.seed_steps, "must be >= 0")
        check(self.eval.every >= 1, "eval.every", self.eval.every, "must be positive")
        check(self.eval.episodes >= 0, "eval.episodes", self.eval.episodes, "must be >= 0")
        check(self.demos.episodes >= 0, "demos.episodes", self.demos.episodes, "must be >= 0")
        check(0 <= self.replay.demo_ratio <= 1, "replay.demo_ratio", self.replay.demo_ratio, "must be in [0, 1]")
        check(self.replay.capacity >= 1, "replay.capacity", self.replay.capacity, "must be positive")


register_schema("train_schema", TrainConfig)


def _minutes(value: Optional[float]) -> float:
    """A wall-clock setting in seconds; null (or 0) means never."""
    return 60 * float(value or math.inf)


class WallClockSchedule:
    """Evaluations and checkpoints by wall-clock as well as by steps: a first eval and checkpoint within
    minutes of the start (on a CPU the step schedule's first ones are an hour away)."""

    def __init__(self, now, cfg: TrainConfig):
        self.now = now
        started = now()
        self.eval_every = _minutes(cfg.eval.every_min)
        self.save_every = _minutes(cfg.save_every_min)
        self.next_eval = started + _minutes(cfg.eval.first_min)
        self.next_save = started + min(self.save_every, self.next_eval - started)

    def eval_due(self) -> bool:
        return self.now() >= self.next_eval

    def save_due(self) -> bool:
        return self.now() >= self.next_save

    def evaluated(self) -> None:
        self.next_eval = self.now() + self.eval_every

    def saved(self) -> None:
        self.next_save = self.now() + self.save_every


def ensure_encoder(cfg: TrainConfig) -> None:
    """The pixel recipe's frozen encoder: made from the project's own sim data when its file is missing
    (nothing is downloaded), so the main job runs on a fresh machine. Without `pretrain_if_missing` the
    agent refuses the missing file with the command that makes it."""
    if cfg.agent.encoder != "pretrained" or not cfg.agent.encoder_weights:
        return
    path = Path(cfg.agent.encoder_weights)
    if path.is_file():
        check_encoder_robot(path, cfg.env)
        return
    if not cfg.pretrain_if_missing:
        return
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from robolearn.pretrain import PretrainConfig, pretrain  # registers the pretrain schema the compose needs

    log.warning("no pretrained encoder at %s: making it first (python -m robolearn.pretrain out=%s; see configs/pretrain.yaml)", path, path)
    # The one-off pretraining uses every core (torch_threads=0: measured 24 s an epoch on two threads against 42 s
    # on one); the run's own thread count is set after it.
    overrides = [f"out={path}", f"progress={cfg.progress}", "torch_threads=0", f"device={cfg.device}",
                 *cfg.pretrain_overrides]
    if GlobalHydra.instance().is_initialized():
        pretrain_cfg = compose(config_name="pretrain", overrides=overrides)
    else:
        with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
            pretrain_cfg = compose(config_name="pretrain", overrides=overrides)
    # The same cameras and scene as the run.
    pretrain(dataclasses.replace(load_typed(PretrainConfig, pretrain_cfg, "pretrain"), env=cfg.env))


def check_encoder_robot(path: Path, env_cfg) -> None:
    """An existing encoder file made for another robot is refused, not used: arms of the same joint count
    (Panda and FR3, the UR sizes) give it the same input shapes, which the agent checks, but other images."""
    try:
        robot = EnvSpec.from_config(env_cfg).robot.name
        meta = torch.load(path, map_location="cpu", weights_only=False).get("meta", {})
    except Exception:  # not a kettle env, or an unreadable or foreign file: the agent's load names the problem
        return
    made_for = meta.get("robot")
    if made_for is not None and made_for != robot:
        raise EncoderFileError(f"pretrained encoder {path} was made for the {made_for}, not the {robot}: leave agent.encoder_weights "
                               f"at its default (each robot and camera set has its own file, made on first use) or point it at "
                               f"an encoder made with `python -m robolearn.pretrain env.robot={robot}`")


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
        env_cfg = getattr(self.env.unwrapped, "cfg", None)
        if not isinstance(env_cfg, EnvConfig):
            raise ConfigError(
                f"demos.episodes={cfg.episodes}: demos are collected by the kettle-to-sink demonstrator "
                f"({cfg.policy.get('_target_', cfg.policy)}), which this env ({type(self.env.unwrapped).__name__}) cannot run; "
                "set demos.episodes=0 or point demos.path at a recorded file"
            )
        store = ReplayStorage(obs_space, act_space.shape, cfg.episodes * (env_cfg.max_episode_steps + 1))
        expert = instantiate(cfg.policy, env=self.env)
        successes = 0
        bar = tqdm(range(cfg.episodes), desc="demos", unit="ep", disable=not self.cfg.progress)
        for i in bar:
            expert.reset()
            # Demo seeds are fixed (the cached file is shared by runs) and disjoint from training and eval seeds.
            episode = run_episode(self.env, expert.act, seed=10_000_000 + i, on_start=lambda obs, _: store.start_episode(obs),
                                  record=lambda step: _store(store, step), view=self._viewing("demo"))
            successes += episode.success
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
        # Seed steps: uniform random actions, the policy still acting so its frame stack stays current.
        collect = SeedActions(AgentPolicy(self.agent, deterministic=False), self.rng, lambda: self.step < cfg.seed_steps)
        bar = tqdm(total=cfg.total_steps, initial=self.step, desc="train", unit="step", disable=not cfg.progress, smoothing=0.1)
        # A wall-clock budget (a cluster slot, a lent GPU), SIGTERM or Ctrl-C: the episode under way is
        # finished (at most one episode of steps), then the run saves and evaluates as at total_steps, so a
        # resumed run is the same as one never stopped. A second Ctrl-C stops at once without saving.
        started = self.clock()
        deadline = started + 60 * float(cfg.time_limit_min) if cfg.time_limit_min else math.inf
        clock = WallClockSchedule(self.clock, cfg)
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
                    on_start=start, record=lambda step: _store(self.replay, step), on_step=stepped,
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
            check_finite(metrics, f"step {step} (update {self.updates})", self.run_dir / "checkpoint.pt")
        if self.updates % cfg.log_every_updates < cfg.utd:
            self._log("train", metrics)

    def evaluate(self) -> dict:
        cfg = self.cfg.eval
        video = self.run_dir / "videos" / f"eval_{self.step:08d}.mp4" if cfg.video else None
        summary = evaluate(self.eval_env, AgentPolicy(self.agent, deterministic=True), episodes=cfg.episodes,
                           seed=cfg.seed, video_path=video, progress=False, view=self._viewing("eval"))
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
        return {
            "spec": self.signature,
            "agent": self.agent.training_state(),
            "agent_config": dataclasses.asdict(self.cfg.agent),
            "actor_keys": list(self.agent.actor_keys),  # the order of the policy's vector inputs
            "env_config": env_record(self.cfg.env),  # what the run trained on (online fine-tuning takes the agent from here)
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
        if self.view is not None:
            self.view.close()
        self.env.close()
        self.eval_env.close()


def _store(replay: ReplayStorage, step: Step) -> None:
    replay.add(step.action, step.reward, step.terminated, step.truncated, step.next_obs)


def run(cfg: TrainConfig | DictConfig, run_dir: Path) -> dict:
    """Train in `run_dir`; a composed config is checked against TrainConfig first."""
    cfg = load_typed(TrainConfig, cfg, "train")
    run_dir.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(cfg, run_dir)
    if cfg.keep_freed_memory:
        keep_freed_memory()  # after the replay is allocated: its arrays stay lazily committed pages
    try:
        return workspace.train()
    finally:
        workspace.close()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    typed = load_typed(TrainConfig, cfg, "train")
    run_dir = Path(typed.resume) if typed.resume else Path(HydraConfig.get().runtime.output_dir)
    try:
        result = run(typed, run_dir)
    except (ConfigError, EncoderFileError, CheckpointError, ReplayFormatError) as exc:
        # A wrong setting or file: its message names it and the fix; a traceback would only bury it.
        raise SystemExit(f"error: {exc}") from None
    print(f"run directory: {run_dir}")
    print(f"final eval: {result}")


if __name__ == "__main__":
    main()
