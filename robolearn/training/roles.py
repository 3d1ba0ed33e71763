"""The asynchronous runner's roles: their one config, made from the run's TrainConfig, and their command lines
(the processes themselves: robolearn.roles.group).

`role_config` is the only place the recipe's settings are mapped onto the roles' config
(robolearn/roles/config.py): utd -> the learner's update cap and the actors' pace, seed_steps -> the
learner's first update and the actors' random actions, demos and replay -> the server, intervention -> the actors
(and room for their segments in the server's demo store). The runner writes it
to `<run_dir>/roles.yaml`; every role reads that file (`--config-dir <run_dir> --config-name roles`), and a
remote role started by hand reads the same file copied to its machine (docs/remote.md).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robolearn.training.config import TrainConfig

ROLES_FILE = "roles.yaml"


def _plain(value):
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return value


def role_config(cfg: TrainConfig, run_dir: Path, *, keys_dir: Path | None, demo_path: Path | None, demo_rows: int) -> dict:
    """The roles' config (robolearn.roles.config.AsyncConfig as a plain dict) for this run."""
    roles = cfg.async_roles
    actors = roles.actors
    utd = cfg.utd / cfg.update_every  # updates per env step
    transport = {**_plain(cfg.transport), "port": 0, "weights_port": 0, "spill_dir": None}  # any free ports: runs side by side
    if keys_dir is not None:
        transport["curve_keys"] = str(keys_dir)
    return {
        "defaults": ["async_schema", "_self_"],
        "env": _plain(cfg.env),
        "agent": _plain(cfg.agent),
        "transport": transport,
        "run_dir": str(run_dir),
        "seed": cfg.seed,
        "device": cfg.device,
        "torch_threads": roles.role_threads,
        "keep_freed_memory": cfg.keep_freed_memory,
        "progress": False,
        "actors": actors,
        # Interventions add their segments to the demos (at most every env step): room for them beside the demo file.
        "server": {"capacity": max(cfg.replay.capacity, 2),
                   "demo_capacity": max(demo_rows + (cfg.total_steps if cfg.intervention.enabled else 0), 2),
                   "demo_ratio": cfg.replay.demo_ratio, "demos": str(demo_path) if demo_path else None},
        "learner": {
            "batch_size": cfg.batch_size, "total_updates": None, "min_transitions": cfg.seed_steps, "max_utd": utd,
            "publish_every": roles.publish_every, "log_every": cfg.log_every_updates,
            "save_every": max(1, math.ceil(cfg.save_every * utd)), "save_every_min": cfg.save_every_min,
            "subdir": "", "eval_snapshots": roles.evaluator, "torch_threads": roles.learner_threads,
        },
        "actor": {
            "seed_steps": math.ceil(cfg.seed_steps / actors), "total_steps": math.ceil(cfg.total_steps / actors),
            "follow_utd": utd, "ahead_steps": roles.ahead_steps, "finish_episode_on_stop": True,
            "policy_threads": roles.role_threads, "tensorboard": True, "intervention": _plain(cfg.intervention),
        },
        "eval": _plain(cfg.eval),
        "display": _plain(cfg.display),
        "hydra": {"run": {"dir": str(run_dir)}, "output_subdir": None, "job": {"chdir": False}},
    }


def write_role_config(run_dir: Path, config: dict) -> Path:
    path = run_dir / ROLES_FILE
    OmegaConf.save(OmegaConf.create(config), path)
    return path


def role_args(run_dir: Path, overrides: list[str]) -> list[str]:
    """A role's command-line arguments: the run's roles.yaml, its log to stdout (robolearn.roles.group.RoleProcess
    sends it to `<run_dir>/<name>.log`), then the role's own overrides."""
    return ["--config-dir", str(run_dir), "--config-name", Path(ROLES_FILE).stem, "hydra/job_logging=stdout", *overrides]
