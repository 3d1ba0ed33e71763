"""Pre-flight check before motion is enabled on a physical arm (implementation: hardware/preflight.py).

    python -m robolearn.preflight                                       # the fake arm: a dry run
    python -m robolearn.preflight robot@env.hardware.driver=franka env.robot=fr3 env.hardware.driver.host=172.16.0.2

Prints a pass/fail line per check, then the report as one JSON line; exits 1 if any check failed.
"""

from __future__ import annotations

import json
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from robolearn.config import ConfigError
from robolearn.paths import CONFIG_DIR


def options_from(node) -> object:
    """PreflightOptions from a config node (a `run` key is the caller's, not an option)."""
    from hardware.preflight import PreflightOptions

    values = {k: v for k, v in (OmegaConf.to_container(node, resolve=True) if node is not None else {}).items() if k != "run"}
    known = set(PreflightOptions.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"preflight: unknown keys {unknown}; known keys: {sorted(known)}")
    return PreflightOptions(**values)


def run(cfg: DictConfig, say=print):
    from hardware.preflight import run_preflight  # hardware is imported by the entry point only

    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    return run_preflight(env_cfg, options_from(cfg.get("preflight")), say=say)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="preflight")
def main(cfg: DictConfig) -> None:
    report = run(cfg, say=lambda msg: None)
    print(report.render())
    print(json.dumps(report.as_dict()))
    if not report.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
