"""The training run's one config (configs/train*.yaml hold only what differs): the recipe and how it runs.

Both runners read it: `runner=async` (the main job: replay server, learner, actors and an evaluator as
processes over ZeroMQ, robolearn/training/async_runner.py) and `runner=inline` (one process, no sockets,
bit-exact resume, robolearn/training/inline.py). The asynchronous roles get their config from this one
(`roles.role_config`), so nothing of the recipe is restated for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from robolearn.agents import AgentConfig
from robolearn.config import check, register_schema
from robolearn.display import DisplayConfig
from robolearn.interventions import InterventionConfig
from robolearn.training.evaluation import EvalSettings
from robolearn.transport.config import TransportConfig

RUNNERS = ("async", "inline")


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
class AsyncSettings:
    """How the asynchronous runner runs the recipe (the recipe itself is the rest of TrainConfig)."""

    actors: int = 1  # sim actor processes
    publish_every: int = 25  # learner updates between weight broadcasts
    # Sim actors keep the recipe's update-to-data ratio: an actor waits while the env steps stored run more than
    # this many ahead of the learner's updates / utd (a sim outruns the learner on a CPU; a real arm is paced by its
    # control rate and never waits).
    ahead_steps: int = 100
    evaluator: bool = True  # evaluations in their own process (false: none while training)
    role_threads: int = 1  # torch threads per role: state-sized updates and one-image forward passes
    learner_threads: int = 1  # the learner's (0: role_threads): see docs/benchmarks.md for 2 on a 2-core CPU
    stop_grace_s: float = 120.0  # after a stop: how long the roles get to finish their episodes, save and flush
    # ... and the evaluator to finish the evaluation under way and evaluate the final snapshot: each up to
    # eval.episodes x (1 + eval.confirm_ratio) episodes (at 120 s a run ending at 50k had its evaluator
    # killed as it finished the final evaluation)
    evaluator_stop_grace_s: float = 360.0
    log_lines: int = 20  # of a role that died, reported with its name

    def __post_init__(self) -> None:
        check(self.actors >= 1, "async_roles.actors", self.actors, "at least one actor")
        check(self.learner_threads >= 0, "async_roles.learner_threads", self.learner_threads, "must be >= 0 (0: role_threads)")
        for key in ("publish_every", "role_threads"):
            check(getattr(self, key) >= 1, f"async_roles.{key}", getattr(self, key), "must be positive")
        check(self.ahead_steps >= 1, "async_roles.ahead_steps", self.ahead_steps, "must be positive")
        check(self.stop_grace_s > 0, "async_roles.stop_grace_s", self.stop_grace_s, "seconds, positive")
        check(self.evaluator_stop_grace_s > 0, "async_roles.evaluator_stop_grace_s", self.evaluator_stop_grace_s, "seconds, positive")


@dataclass
class TrainConfig:
    env: Any = None  # validated by the env factory it names (the kettle sim, dm_control)
    agent: AgentConfig = field(default_factory=AgentConfig)
    runner: str = "async"  # async (replay server, learner, actors, evaluator) | inline (one process, bit-exact resume)
    pretrain_if_missing: bool = True  # no file at agent.encoder_weights: run robolearn.pretrain (configs/pretrain.yaml) first
    pretrain_overrides: list[str] = field(default_factory=list)  # for that run, e.g. "pretrain_overrides=['episodes=50']"
    seed: int = 0
    device: str = "auto"  # cuda when present, else cpu
    torch_threads: int = 1  # 0: torch's default (inline; the async roles: async_roles.role_threads)
    keep_freed_memory: bool = True  # glibc keeps freed buffers for reuse (robolearn/process/allocator.py)
    total_steps: int = 50_000  # env steps
    time_limit_min: Optional[float] = None  # wall-clock budget: at the limit the episodes are finished, then the run saves and evaluates
    seed_steps: int = 1000  # uniform random actions before the policy acts and learning starts
    update_every: int = 1  # env steps between update rounds
    utd: int = 2  # updates per round (update-to-data ratio)
    batch_size: int = 256
    log_every_updates: int = 100
    save_every: int = 2500  # env steps; checkpoints are written at the next episode end
    save_every_min: Optional[float] = 5.0  # ... and by wall-clock (null: steps only)
    resume: Optional[str] = None  # a run directory to continue (inline: exactly)
    progress: bool = True
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    demos: DemoSettings = field(default_factory=DemoSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    async_roles: AsyncSettings = field(default_factory=AsyncSettings)
    transport: TransportConfig = field(default_factory=TransportConfig)  # the async roles' links (loopback, per-run keys)
    display: DisplayConfig = field(default_factory=DisplayConfig)  # a live view of demos, collection and evaluation (docs/watching.md)
    # The sim actors' interventions (robolearn/interventions.py: intervention.by=scripted), stored flagged in the
    # replay and in the demos; they live in the actor role, so the async runner only.
    intervention: InterventionConfig = field(default_factory=InterventionConfig)

    def __post_init__(self) -> None:
        check(self.runner in RUNNERS, "runner", self.runner, f"one of {RUNNERS}")
        check(not (self.intervention.enabled and self.runner == "inline"), "intervention.by", self.intervention.by,
              "interventions happen in the actor role: use runner=async (the default)")
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
