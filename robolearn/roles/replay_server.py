"""The replay server process: python -m robolearn.roles.replay_server --config-name async_sim run_dir=R

Its data lives in `<run_dir>/replay` (the store in mapped files, reopened on start), so it can be killed and
restarted at any time without losing an acknowledged transition. Stop it with SIGTERM or Ctrl-C.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the heavy imports: a SIGTERM while starting ends cleanly
    from robolearn.process.signals import exit_cleanly_on_early_stop

    exit_cleanly_on_early_stop()

import logging
import signal
from dataclasses import replace
from pathlib import Path

import hydra
from omegaconf import DictConfig

from robolearn.agents.pretrained import learning_space
from robolearn.roles.config import AsyncConfig  # importing it registers async_schema (configs/async_*.yaml)
from robolearn.config import load_typed
from robolearn.paths import CONFIG_DIR
from robolearn.process.allocator import keep_freed_memory
from robolearn.process.signals import ignore_late_stop_signals
from robolearn.replay import ReplayStorage
from robolearn.transport.server import ReplayServer
from robolearn.spec import EnvSpec

log = logging.getLogger(__name__)


def build_server(node: DictConfig | AsyncConfig) -> ReplayServer:
    cfg = load_typed(AsyncConfig, node, "async")
    contract = EnvSpec.from_config(cfg.env)
    env_space, act_space = contract.observation_space(), contract.action_space()
    # With a frozen encoder (the pixel recipe) actors send features, and the store holds those.
    obs_space, frozen = learning_space(env_space, cfg.agent.encoder, cfg.agent.encoder_weights, cfg.agent.estimated_state,
                                       cfg.agent.encoder_features)
    server_cfg = replace(cfg.server, seed=cfg.seed)  # the run's seed drives the server's sampling
    demos_path = server_cfg.demos
    demos = None
    if demos_path and Path(demos_path).exists():
        demos = ReplayStorage.load(demos_path, env_space, act_space.shape, capacity=server_cfg.demo_capacity)
        if frozen is not None:
            demos = demos.map_observations(obs_space, frozen.featurize)
        log.info("loaded %d demo transitions from %s", demos.num_transitions(), demos_path)
    elif demos_path:
        log.warning("no demo file at %s: batches are online data only (collect demos with python -m robolearn.train, "
                    "or record them with python -m hardware.teleop)", demos_path)
    return ReplayServer(Path(cfg.run_dir) / "replay", obs_space, act_space.shape, cfg.transport, server_cfg, demos)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="async_sim")
def main(node: DictConfig) -> None:
    cfg = load_typed(AsyncConfig, node, "async")
    server = build_server(cfg)
    if cfg.keep_freed_memory:
        # After the replay is allocated. Every received chunk is fresh buffers; with glibc's defaults they
        # are handed back and faulted in again: ~25 page faults and ~30% more CPU per chunk measured here.
        keep_freed_memory()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Drain first: a SIGTERM to the whole run reaches the actors too, and they flush what they hold.
        signal.signal(sig, lambda *_: server.stop(drain_s=server.cfg.drain_s))
    try:
        server.serve()
    finally:
        server.close()
    log.info("replay server stopped with %d transitions stored (%d accepted in all, %d duplicates dropped, %d messages rejected)",
             server.storage.num_transitions(), server.storage.transitions_added, server.counters["duplicates"], server.counters["rejected"])
    ignore_late_stop_signals()


if __name__ == "__main__":
    main()
