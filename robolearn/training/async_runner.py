"""The asynchronous runner, the main job's default (`runner=async`): the recipe's roles as processes over
ZeroMQ on this machine — a replay server, a learner, `async_roles.actors` sim actors and an evaluator.

On two cores the inline loop acts and learns one after the other on one core; here the learner updates
while the actors step the sim, and the evaluator takes what cycles are left. The recipe is the same: the
actors keep the update-to-data ratio (they wait when they run `async_roles.ahead_steps` env steps ahead of
the learner's updates / utd), seed steps and demos are the same, and the run directory is laid out as the
inline runner's (`checkpoint.pt`, `best.pt`, `eval.csv`, `videos/`, `tb/`; the replay in `replay/`).

Stopping (Ctrl-C, SIGTERM, `time_limit_min`, `total_steps`): the actors finish the episodes under way and
flush, then the learner saves and writes the final snapshot, the evaluator evaluates it, and the server
stops last, so every acknowledged transition is in the store. `resume=<run dir>` starts the group again on
that store, the learner's checkpoint and the evaluator's eval.csv. A second Ctrl-C stops every role at once.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import signal
import time
from pathlib import Path

from tqdm import tqdm

from robolearn.agents import DrQAgent
from robolearn.config import ConfigError
from robolearn.envs import make_env
from robolearn.roles.group import RoleProcess, kill_all, port_overrides, run_keys, stop_in_order, wait_for_endpoints
from robolearn.spec import EnvSpec
from robolearn.training.config import TrainConfig
from robolearn.training.prerequisites import ensure_encoder, load_or_collect_demos
from robolearn.training.roles import role_args, role_config, write_role_config

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"  # the learner's: env steps stored, updates, busy share (robolearn/roles/learner.py)


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def last_eval(run_dir: Path) -> dict:
    """The last row of eval.csv, numbers as numbers ({} before the first evaluation)."""
    try:
        with open(run_dir / "eval.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {}
    if not rows:
        return {}
    out: dict = {}
    for key, value in rows[-1].items():
        try:
            out[key] = int(value) if key in ("step", "updates") else float(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


class AsyncRunner:
    def __init__(self, cfg: TrainConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
        self.roles: dict[str, RoleProcess] = {}
        self.stop_reason = ""
        self._signals = 0

    # -- before any role starts ------------------------------------------------------------------------
    def prepare(self) -> Path:
        """The encoder and the demo file (made when missing), keys, and the roles' config file."""
        cfg = self.cfg
        ensure_encoder(cfg)
        check_agent(cfg)
        demo_path, demo_rows = None, 0
        if cfg.demos.episodes:
            demo_path = Path(cfg.demos.path) if cfg.demos.path else self.run_dir / "demos.npz"
            env = make_env(cfg.env)
            try:
                demos = load_or_collect_demos(_with_demo_path(cfg, demo_path), env, cfg.progress)
            finally:
                env.close()
            demo_rows = len(demos)  # rows: every episode adds its first observation
        transport = cfg.transport
        keys = None
        if not transport.curve_keys and not transport.insecure_no_keys:
            keys = run_keys(self.run_dir, cfg.async_roles.actors)
        config = role_config(cfg, self.run_dir, keys_dir=keys, demo_path=demo_path, demo_rows=demo_rows)
        return write_role_config(self.run_dir, config)

    # -- the run -----------------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        self.prepare()
        starts = self._count_start()
        self.steps_done = int(read_status(self.run_dir).get("step") or 0)  # a resumed run's, as its learner last saw them
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        bar = tqdm(total=cfg.total_steps, initial=min(self.steps_done, cfg.total_steps), desc="train", unit="step",
                   disable=not cfg.progress, smoothing=0.1)
        try:
            self._start_roles(starts)
            log.info("async training in %s: replay server, learner, %d actor(s)%s (logs: %s/*.log)", self.run_dir,
                     cfg.async_roles.actors, ", evaluator" if "evaluator" in self.roles else "", self.run_dir)
            self._supervise(bar)
            self._stop_in_order()
        except BaseException:
            kill_all(self.roles)
            raise
        finally:
            bar.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        status = read_status(self.run_dir)
        if self.stop_reason:
            log.info("stopped at step %s of %d (%s); resume with resume=%s", status.get("step"), cfg.total_steps,
                     self.stop_reason, self.run_dir)
        return last_eval(self.run_dir)

    def _count_start(self) -> int:
        """How many times this run directory has been started: actors' episode seeds differ on each start."""
        path = self.run_dir / "starts"
        starts = int(path.read_text()) if path.exists() else 0
        path.write_text(str(starts + 1))
        return starts

    def _role(self, name: str, module: str, overrides: list[str]) -> RoleProcess:
        role = RoleProcess(name, module, self.run_dir, role_args(self.run_dir, overrides))
        self.roles[name] = role
        return role

    def _start_roles(self, starts: int) -> None:
        cfg = self.cfg
        keyed = not cfg.transport.curve_keys and not cfg.transport.insecure_no_keys
        since = time.time() - 1.0
        server = self._role("replay_server", "robolearn.roles.replay_server", [])
        ports = port_overrides(wait_for_endpoints(self.run_dir, server, since, log_lines=cfg.async_roles.log_lines,
                                                  interrupted=lambda: bool(self._signals)))
        key = (lambda name: [f"transport.client_key={name}"]) if keyed else (lambda name: [])
        self._role("learner", "robolearn.roles.learner", ports + key("learner"))
        # A resumed run makes only the steps left: each actor its share.
        share = math.ceil(max(cfg.total_steps - self.steps_done, 0) / cfg.async_roles.actors)
        for i in range(cfg.async_roles.actors):
            name = f"actor{i}"
            self._role(name, "robolearn.roles.actor", ports + key(name) + [
                f"actor.name={name}", f"actor.seed={(cfg.seed * 1000 + i) * 1000 + starts}", f"actor.total_steps={share}",
                f"transport.spill_dir={self.run_dir / 'spill' / name}"])
        if cfg.async_roles.evaluator:
            self._role("evaluator", "robolearn.roles.evaluator", [])

    def _on_signal(self, signum, _frame) -> None:
        if self._signals and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: every role is killed (run's except clause)
        self._signals += 1
        self.stop_reason = self.stop_reason or f"{signal.Signals(signum).name} received"

    def _supervise(self, bar: tqdm) -> None:
        """Until the actors have made total_steps, a stop is asked, or the time limit: report progress, and
        fail (naming the role and its last log lines) when a role exits that should not."""
        cfg = self.cfg
        deadline = time.monotonic() + 60 * float(cfg.time_limit_min) if cfg.time_limit_min else math.inf
        lines = cfg.async_roles.log_lines
        while not self._signals:
            if time.monotonic() >= deadline:
                self.stop_reason = f"time limit of {cfg.time_limit_min} min reached"
                return
            actors = [r for n, r in self.roles.items() if n.startswith("actor")]
            for name, role in self.roles.items():
                if role.code not in (None, 0) or (role.code == 0 and not name.startswith("actor")):
                    raise role.failure(lines)
            if all(not a.running() for a in actors):
                return  # every actor made its share of total_steps
            self._show(bar)
            time.sleep(0.5)

    def _show(self, bar: tqdm) -> None:
        status = read_status(self.run_dir)
        step = int(status.get("step") or 0)
        if step > bar.n:
            bar.update(min(step, bar.total) - bar.n)
        evaluated = last_eval(self.run_dir).get("success_rate")
        postfix = {"upd": status.get("updates", 0), "utd": status.get("utd", "-"), "busy": status.get("busy", "-"),
                   "eval": "-" if evaluated is None else f"{evaluated:.2f}", "actors": status.get("actors_alive", "-")}
        if self.cfg.intervention.enabled:
            postfix["interv"] = f"{float(status.get('intervention_share') or 0):.0%}"
        bar.set_postfix(postfix, refresh=False)

    def _stop_in_order(self) -> None:
        """Actors first (they finish their episodes and flush), then the learner (saves, final snapshot),
        the evaluator (evaluates it), the server last (every acknowledged transition stored)."""
        stop_in_order(self.roles, self.cfg.async_roles.stop_grace_s, self.cfg.async_roles.evaluator_stop_grace_s)
        failed = [r for r in self.roles.values() if r.code not in (0, -signal.SIGTERM)]
        if failed:
            raise failed[0].failure(self.cfg.async_roles.log_lines, f"ended with code {failed[0].code} while the run stopped")


def check_agent(cfg: TrainConfig) -> None:
    """What the roles would refuse, refused here, before any starts: an env whose spec does not come from its
    config, a missing or foreign encoder file, an agent that cannot train on this env (the errors name the fix)."""
    try:
        contract = EnvSpec.from_config(cfg.env)
    except Exception as exc:  # noqa: BLE001 - any env the contract cannot describe from config alone
        raise ConfigError(f"runner=async: the roles build the observation and action spaces from the env config alone, and "
                          f"this env's cannot be ({type(exc).__name__}: {exc}); use runner=inline") from None
    agent = DrQAgent(contract.observation_space(), contract.action_space(), cfg.agent, device="cpu")
    agent.check_trainable()


def _with_demo_path(cfg: TrainConfig, path: Path) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(cfg, demos=dataclasses.replace(cfg.demos, path=str(path)))
