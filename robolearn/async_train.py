"""All-in-one asynchronous training on one machine: a replay server, a learner and N sim actors.

    python -m robolearn.async_train                       # pixels (configs/async_sim.yaml)
    python -m robolearn.async_train --config-name async_state actors=4

Each role runs in its own process (the same commands a remote run uses, docs/remote.md) with this run's
overrides; this process starts them, forwards Ctrl-C, and stops the actors and the server once the
learner has finished. If any role dies, the others are stopped and the run fails with its name.

The roles authenticate each other with CURVE keys made for the run (`<run_dir>/keys/`, readable by its
owner only: the learner's key and one key per actor, each actor's bound to its own name), unless
`transport.curve_keys` names keys of your own or `transport.insecure_no_keys=true`.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from robolearn.async_config import AsyncConfig
from robolearn.config import load_typed
from robolearn.paths import CONFIG_DIR
from robolearn.transport.security import generate_keys

log = logging.getLogger(__name__)


class RoleFailed(RuntimeError):
    pass


def _start(module: str, config_name: str, overrides: list[str], log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", module, "--config-name", config_name, *overrides]
    log_file = open(log_path, "ab")
    return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)


def _wait_for_endpoints(run_dir: Path, server: subprocess.Popen, since: float, timeout_s: float = 120.0) -> dict:
    path = run_dir / "replay" / "endpoints.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RoleFailed(f"the replay server exited with code {server.returncode} (see {run_dir / 'replay_server.log'})")
        if path.exists() and path.stat().st_mtime >= since:
            return json.loads(path.read_text())
        time.sleep(0.1)
    raise RoleFailed(f"the replay server did not come up within {timeout_s:.0f} s")


def run_keys(run_dir: Path, actors: int) -> Path:
    """Per-run CURVE keys: the server's, the learner's and one per actor bound to its own name, in a folder
    only the owner can read (kept across a resume in the same run directory, so the roles find them again)."""
    keys = run_dir / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    keys.chmod(0o700)
    names = [f"actor{i}" for i in range(actors)]
    generate_keys(keys, ["learner", *names], names={name: [name] for name in names})
    return keys


def run(cfg: AsyncConfig) -> dict:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # Children log to stdout only, which goes to <run_dir>/<role>.log (Hydra's own file would be shared by the actors).
    base = [o for o in hydra_cfg.overrides.task if not o.startswith(("run_dir=", "actors="))] + [f"run_dir={run_dir}", "hydra/job_logging=stdout"]
    own_keys = not cfg.transport.curve_keys and not cfg.transport.insecure_no_keys
    if own_keys:
        base.append(f"transport.curve_keys={run_keys(run_dir, cfg.actors)}")
    learner_key = ["transport.client_key=learner"] if own_keys else []
    name = hydra_cfg.job.config_name
    started = time.time() - 1.0
    server = _start("robolearn.replay_server", name, base, run_dir / "replay_server.log")
    procs = {"replay_server": server}
    stop = {"flag": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.update(flag=True))
    try:
        ends = _wait_for_endpoints(run_dir, server, started)
        ports = [f"transport.port={ends['router'].rsplit(':', 1)[1]}", f"transport.weights_port={ends['weights'].rsplit(':', 1)[1]}"]
        common = base + ports
        procs["learner"] = _start("robolearn.learner", name, common + learner_key, run_dir / "learner.log")
        for i in range(cfg.actors):
            # Each actor's spill dir is in the run: what it leaves unacknowledged is sent by the next run in this dir.
            # Each its own live-view file (one viewer takes them all as separate recordings).
            view = [f"display.save={Path(cfg.display.save).with_suffix('')}_actor{i}.rrd"] if cfg.display.save else []
            actor_key = [f"transport.client_key=actor{i}"] if own_keys else []
            procs[f"actor{i}"] = _start("robolearn.actor", name, common + actor_key + [f"actor.name=actor{i}", f"actor.seed={cfg.seed * 1000 + i}",
                                                                       f"transport.spill_dir={run_dir / 'spill' / f'actor{i}'}",
                                                                       "progress=false", *view], run_dir / f"actor{i}.log")
        log.info("async training in %s: replay server, learner, %d actors (logs: %s/*.log)", run_dir, cfg.actors, run_dir)
        while not stop["flag"]:
            learner_code = procs["learner"].poll()
            if learner_code is not None:
                if learner_code != 0:
                    raise RoleFailed(f"the learner exited with code {learner_code} (see {run_dir / 'learner.log'})")
                break
            for role, proc in procs.items():
                if role != "learner" and proc.poll() is not None:
                    raise RoleFailed(f"{role} exited with code {proc.returncode} (see {run_dir / (role + '.log')})")
            time.sleep(0.5)
    finally:
        _stop_all(procs, signalled=stop["flag"])
    return {role: proc.returncode for role, proc in procs.items()}


def _stop_all(procs: dict[str, subprocess.Popen], signalled: bool = False, grace_s: float = 20.0) -> None:
    """Actors first (they flush what they hold), then the learner, then the server. After a signal, which a
    SIGTERM to the process group (timeout, a scheduler) delivered to every role too, they get `grace_s` to
    finish on their own before anything is sent to them."""
    if signalled:
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(p.poll() is None for p in procs.values()):
            time.sleep(0.1)
    order = [r for r in procs if r.startswith("actor")] + [r for r in ("learner", "replay_server") if r in procs]
    for role in order:
        proc = procs[role]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop within 30 s; killing it", role)
                proc.kill()
                proc.wait()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="async_sim")
def main(node: DictConfig) -> None:
    cfg = load_typed(AsyncConfig, node, "async")  # every role checks it again; a wrong key fails here first
    codes = run(cfg)
    print(f"async training finished in {cfg.run_dir}: exit codes {codes}")


if __name__ == "__main__":
    main()
