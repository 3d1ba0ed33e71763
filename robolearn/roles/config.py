"""The one config of asynchronous training, read by every role: the replay server, the learner, the actors,
the evaluator and the launchers (robolearn.roles.launch; the main job writes it as <run_dir>/roles.yaml), so all agree on the env contract, the agent and the transport (configs/async_*.yaml).

Registered as `async_schema` when this module is imported: every role's module imports it first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from robolearn.agents.drq import AgentConfig
from robolearn.config import check, register_schema
from robolearn.display import DisplayConfig
from robolearn.interventions import InterventionConfig
from robolearn.transport.config import TransportConfig
from robolearn.replay.config import ServerConfig
from robolearn.training.evaluation import EvalSettings

LOSS_MODES = ("continue", "hold")


@dataclass
class LearnerConfig:
    batch_size: int = 256
    total_updates: Optional[int] = 100_000  # null: until stopped
    min_transitions: int = 1000  # online transitions stored before the first update
    # updates <= max_utd x (stored transitions - min_transitions + 1), as the inline loop's utd updates per step after
    # its seed steps (null: as fast as batches come)
    max_utd: Optional[float] = 1.0
    publish_every: int = 50  # updates between weight broadcasts
    log_every: int = 100
    save_every: int = 2000  # updates
    save_every_min: Optional[float] = None  # ... and by wall-clock (null: updates only)
    subdir: str = "learner"  # its checkpoint, status.json and tensorboard go to <run_dir>/<subdir> ("": the run dir itself)
    eval_snapshots: bool = False  # write <run_dir>/snapshots/step_*.pt on the eval schedule (`eval`) for robolearn.roles.evaluator
    init_from: Optional[str] = None  # a checkpoint to start from (fine-tuning; ignored when the run has its own)
    torch_threads: int = 0  # the learner's torch threads (0: the roles' `torch_threads`)

    def __post_init__(self) -> None:
        check(self.torch_threads >= 0, "learner.torch_threads", self.torch_threads, "must be >= 0 (0: the roles' torch_threads)")
        for key in ("batch_size", "publish_every", "log_every", "save_every"):
            check(getattr(self, key) >= 1, f"learner.{key}", getattr(self, key), "must be positive")
        check(self.min_transitions >= 0, "learner.min_transitions", self.min_transitions, "must be >= 0")
        check(self.max_utd is None or self.max_utd >= 0, "learner.max_utd", self.max_utd, "must be >= 0 or null")


@dataclass
class ActorConfig:
    name: Optional[str] = None  # default: stable, from the host and the env (robolearn.roles.actor.default_actor_name)
    seed: int = 0
    seed_steps: int = 500  # uniform random actions per actor before the policy acts
    total_steps: Optional[int] = None  # per actor (the episode under way is finished); null: until stopped
    max_steps_per_s: Optional[float] = None  # pace a sim actor (null: as fast as it runs; a real arm is paced by its control rate)
    deterministic: bool = False
    on_learner_loss: str = "continue"  # continue (keep acting with the last weights) | hold (stop the arm, wait)
    log_every_episodes: int = 5
    flush_timeout_s: float = 10.0
    policy_threads: int = 1  # torch threads while acting (0: torch's default); the policy shares the CPU with the loop
    warmup_calls: int = 3  # on an arm: act() calls on a zero observation before the first step
    fault_wait_s: float = 600.0  # on an arm, after a latched fault with no terminal to ask: hold this long, then exit (code 3)
    # A sim actor keeps the learner's update-to-data ratio: it waits while the transitions stored run more than
    # ahead_steps ahead of learner.min_transitions + the learner's updates / follow_utd (null: never waits; an arm never should)
    follow_utd: Optional[float] = None
    ahead_steps: int = 100
    finish_episode_on_stop: bool = False  # a stop request finishes the episode under way (sim) instead of ending it at the step
    tensorboard: bool = False  # episode return, length and success under <run_dir>/tb/<name>
    # Someone else may take over from the policy (robolearn/interventions.py): a person at an arm actor
    # (keyboard, gamepad) or, in sim, the scripted intervener; their steps are stored flagged, and in the demos.
    intervention: InterventionConfig = field(default_factory=InterventionConfig)

    def __post_init__(self) -> None:
        check(self.policy_threads >= 0, "actor.policy_threads", self.policy_threads, "must be >= 0 (0: torch's default)")
        check(self.warmup_calls >= 0, "actor.warmup_calls", self.warmup_calls, "must be >= 0")
        check(self.fault_wait_s >= 0, "actor.fault_wait_s", self.fault_wait_s, "must be >= 0")
        check(self.follow_utd is None or self.follow_utd > 0, "actor.follow_utd", self.follow_utd, "must be positive or null")
        check(self.ahead_steps >= 1, "actor.ahead_steps", self.ahead_steps, "must be positive")
        check(self.on_learner_loss in LOSS_MODES, "actor.on_learner_loss", self.on_learner_loss, f"one of {LOSS_MODES}")
        check(self.seed_steps >= 0, "actor.seed_steps", self.seed_steps, "must be >= 0")
        check(self.log_every_episodes >= 1, "actor.log_every_episodes", self.log_every_episodes, "must be positive")
        check(self.max_steps_per_s is None or self.max_steps_per_s >= 0, "actor.max_steps_per_s", self.max_steps_per_s,
              "must be >= 0 or null")


@dataclass
class AsyncConfig:
    env: Any = None  # the env contract; validated by its factory (actors) or by robolearn.spec (server, learner)
    agent: AgentConfig = field(default_factory=AgentConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    run_dir: Optional[str] = None  # the run's directory (configs/async_sim.yaml: a fresh timestamped one)
    seed: int = 0
    device: str = "auto"  # the learner's device: cuda when present
    torch_threads: int = 0
    keep_freed_memory: bool = True  # every role keeps freed buffers for reuse (robolearn/process/allocator.py)
    progress: bool = True
    actors: int = 2  # how many actors robolearn.roles.launch starts
    server: ServerConfig = field(default_factory=ServerConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)  # the actors' live view (docs/watching.md)
    eval: EvalSettings = field(default_factory=EvalSettings)  # the evaluator's (robolearn/roles/evaluator.py)

    def __post_init__(self) -> None:
        check(self.actors >= 0, "actors", self.actors, "must be >= 0")


register_schema("async_schema", AsyncConfig)
