"""Training in sim, the main job: SAC/DrQ on the kettle-to-sink env, with expert demos.

    python -m robolearn.train                                   # pixels: front + wrist 84x84 + joints
    python -m robolearn.train runner=inline                     # the same recipe in one process (bit-exact)
    python -m robolearn.train --config-name train_state         # state only (fast on a CPU)
    python -m robolearn.train resume=outputs/train/<run>        # continue a run where it stopped

`runner=async` (the default) starts a replay server, a learner, `async_roles.actors` sim actors and an
evaluator, each its own process talking over ZeroMQ (robolearn/training/async_runner.py); `runner=inline`
runs the same recipe in one process and resumes bit-exactly (robolearn/training/inline.py). Both make the
encoder and the demos when missing, and write the same run directory: `checkpoint.pt`, `best.pt`,
`eval.csv`, eval videos under `videos/`, tensorboard scalars under `tb/`; the replay is `replay.npz`
(inline) or the server's store in `replay/` (async).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from robolearn.agents.pretrained import EncoderFileError
from robolearn.checkpoint import CheckpointError
from robolearn.config import ConfigError, load_typed
from robolearn.paths import CONFIG_DIR
from robolearn.process.allocator import keep_freed_memory
from robolearn.replay import ReplayFormatError
from robolearn.training.config import TrainConfig
from robolearn.training.inline import Workspace
from robolearn.training.prerequisites import ensure_encoder
from robolearn.roles.group import RoleFailed

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "Workspace", "ensure_encoder", "run", "main"]


def run(cfg: TrainConfig | DictConfig, run_dir: Path) -> dict:
    """Train in `run_dir` with the config's runner; a composed config is checked against TrainConfig first."""
    cfg = load_typed(TrainConfig, cfg, "train")
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.runner == "async":
        from robolearn.training.async_runner import AsyncRunner

        return AsyncRunner(cfg, run_dir).run()
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
    except (ConfigError, EncoderFileError, CheckpointError, ReplayFormatError, RoleFailed) as exc:
        # A wrong setting or file, or a role that died: its message names it (and the fix, or the role's
        # last log lines); a traceback of this launcher would only bury it.
        raise SystemExit(f"error: {exc}") from None
    print(f"run directory: {run_dir}")
    print(f"final eval: {result}")


if __name__ == "__main__":
    main()
