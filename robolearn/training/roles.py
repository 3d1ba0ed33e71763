"""The asynchronous runner's roles: their one config, made from the run's TrainConfig, and their processes.

`role_config` is the only place the recipe's settings are mapped onto the roles' config
(robolearn/async_config.py): utd -> the learner's update cap and the actors' pace, seed_steps -> the
learner's first update and the actors' random actions, demos and replay -> the server. The runner writes it
to `<run_dir>/roles.yaml`; every role reads that file (`--config-dir <run_dir> --config-name roles`), and a
remote role started by hand reads the same file copied to its machine (docs/remote.md).
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robolearn.training.config import TrainConfig

ROLES_FILE = "roles.yaml"


class RoleFailed(RuntimeError):
    """A role process exited when it should not have: named, with its log's last lines."""


def _plain(value):
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return value


def role_config(cfg: TrainConfig, run_dir: Path, *, keys_dir: Path | None, demo_path: Path | None, demo_rows: int) -> dict:
    """The roles' config (robolearn.async_config.AsyncConfig as a plain dict) for this run."""
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
        "server": {"capacity": max(cfg.replay.capacity, 2), "demo_capacity": max(demo_rows, 2),
                   "demo_ratio": cfg.replay.demo_ratio, "demos": str(demo_path) if demo_path else None},
        "learner": {
            "batch_size": cfg.batch_size, "total_updates": None, "min_transitions": cfg.seed_steps, "max_utd": utd,
            "publish_every": roles.publish_every, "log_every": cfg.log_every_updates,
            "save_every": max(1, math.ceil(cfg.save_every * utd)), "save_every_min": cfg.save_every_min,
            "subdir": "", "eval_snapshots": roles.evaluator,
        },
        "actor": {
            "seed_steps": math.ceil(cfg.seed_steps / actors), "total_steps": math.ceil(cfg.total_steps / actors),
            "follow_utd": utd, "ahead_steps": roles.ahead_steps, "finish_episode_on_stop": True,
            "policy_threads": roles.role_threads, "tensorboard": True,
        },
        "eval": _plain(cfg.eval),
        "display": _plain(cfg.display),
        "hydra": {"run": {"dir": str(run_dir)}, "output_subdir": None, "job": {"chdir": False}},
    }


def write_role_config(run_dir: Path, config: dict) -> Path:
    path = run_dir / ROLES_FILE
    OmegaConf.save(OmegaConf.create(config), path)
    return path


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the runner dies (even by SIGKILL), so no role outlives its run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class RoleProcess:
    """One role: `python -m <module> --config-dir <run_dir> --config-name roles <overrides>`, its output in
    `<run_dir>/<name>.log`. It runs in its own session: a Ctrl-C at the terminal reaches the runner only,
    which stops the roles in order (actors first, so every step they took is stored)."""

    def __init__(self, name: str, module: str, run_dir: Path, overrides: list[str]):
        self.name, self.log_path = name, run_dir / f"{name}.log"
        cmd = [sys.executable, "-m", module, "--config-dir", str(run_dir), "--config-name", Path(ROLES_FILE).stem,
               "hydra/job_logging=stdout", *overrides]
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)

    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def code(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> bool:
        try:
            self.proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(deque(f, maxlen=lines)).rstrip()
        except OSError:
            return "(no log)"

    def failure(self, lines: int, what: str | None = None) -> RoleFailed:
        what = what or f"exited with code {self.code}"
        return RoleFailed(f"the {self.name} {what}; the last lines of {self.log_path}:\n{self.tail(lines)}")
