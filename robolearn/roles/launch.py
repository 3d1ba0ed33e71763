"""All-in-one asynchronous training from a hand-written role config: a replay server, a learner and N actors
on one machine.

    python -m robolearn.roles.launch --config-name async_state actors=2     # state-only sim actors, quick on a CPU
    python -m robolearn.roles.launch --config-name async_real_fake actors=1  # the fake arm as the actor (launch/actor_dry_run.sh)

The main job's recipe (pixels, frozen encoder, demos, evaluator) is `python -m robolearn.train` (its async
runner starts the same roles from the run's own config, `async_roles.actors=N`); this launcher is for the role
configs of configs/async_*.yaml, the ones a remote run starts role by role (docs/remote.md), such as an arm as
the actor. Each role runs in its own process with this run's overrides; this process starts them
(robolearn.roles.group), forwards Ctrl-C, and stops the actors and the server once the learner has finished.
If any role dies, the others are stopped and the run fails naming it, with its log's last lines.

The roles authenticate each other with CURVE keys made for the run (`<run_dir>/keys/`, readable by its
owner only: the learner's key and one key per actor, each actor's bound to its own name), unless
`transport.curve_keys` names keys of your own or `transport.insecure_no_keys=true`.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from robolearn.config import load_typed
from robolearn.paths import CONFIG_DIR
from robolearn.roles.config import AsyncConfig
from robolearn.roles.group import RoleProcess, port_overrides, run_keys, stop_in_order, wait_for_endpoints

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0  # each group of roles, after its SIGTERM
SIGNALLED_GRACE_S = 20.0  # after a signal that reached every role: time to finish on their own


def run(cfg: AsyncConfig) -> dict:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # Children log to stdout only, which goes to <run_dir>/<role>.log (Hydra's own file would be shared by the actors).
    base = ["--config-name", hydra_cfg.job.config_name]
    base += [o for o in hydra_cfg.overrides.task if not o.startswith(("run_dir=", "actors="))] + [f"run_dir={run_dir}", "hydra/job_logging=stdout"]
    own_keys = not cfg.transport.curve_keys and not cfg.transport.insecure_no_keys
    if own_keys:
        base.append(f"transport.curve_keys={run_keys(run_dir, cfg.actors)}")
    learner_key = ["transport.client_key=learner"] if own_keys else []
    started = time.time() - 1.0
    # In the terminal's process group: a Ctrl-C reaches every role, as it reaches this launcher.
    procs = {"replay_server": RoleProcess("replay_server", "robolearn.roles.replay_server", run_dir, base, own_session=False)}
    stop = {"flag": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.update(flag=True))
    try:
        common = base + port_overrides(wait_for_endpoints(run_dir, procs["replay_server"], started))
        procs["learner"] = RoleProcess("learner", "robolearn.roles.learner", run_dir, common + learner_key, own_session=False)
        for i in range(cfg.actors):
            # Each actor's spill dir is in the run: what it leaves unacknowledged is sent by the next run in this dir.
            # Each its own live-view file (one viewer takes them all as separate recordings).
            view = [f"display.save={Path(cfg.display.save).with_suffix('')}_actor{i}.rrd"] if cfg.display.save else []
            actor_key = [f"transport.client_key=actor{i}"] if own_keys else []
            procs[f"actor{i}"] = RoleProcess(f"actor{i}", "robolearn.roles.actor", run_dir, common + actor_key + [
                f"actor.name=actor{i}", f"actor.seed={cfg.seed * 1000 + i}", f"transport.spill_dir={run_dir / 'spill' / f'actor{i}'}",
                "progress=false", *view], own_session=False)
        log.info("async training in %s: replay server, learner, %d actors (logs: %s/*.log)", run_dir, cfg.actors, run_dir)
        while not stop["flag"]:
            learner = procs["learner"]
            if not learner.running():
                if learner.code != 0:
                    raise learner.failure()
                break
            for role, proc in procs.items():
                if role != "learner" and not proc.running():
                    raise proc.failure()
            time.sleep(0.5)
    finally:
        if stop["flag"]:  # the signal (a SIGTERM to the process group, a Ctrl-C) reached every role too
            deadline = time.monotonic() + SIGNALLED_GRACE_S
            while time.monotonic() < deadline and any(p.running() for p in procs.values()):
                time.sleep(0.1)
        stop_in_order(procs, STOP_GRACE_S)
    return {role: proc.code for role, proc in procs.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="async_sim")
def main(node: DictConfig) -> None:
    cfg = load_typed(AsyncConfig, node, "async")  # every role checks it again; a wrong key fails here first
    codes = run(cfg)
    print(f"async training finished in {cfg.run_dir}: exit codes {codes}")


if __name__ == "__main__":
    main()
