"""`python -m hardware.preflight`: the pre-flight check before motion is enabled on a physical arm.

    python -m hardware.preflight                                       # the fake arm: a dry run
    python -m hardware.preflight robot@env.hardware.driver=franka env.robot=fr3 env.hardware.driver.host=172.16.0.2

Prints a pass/fail line per check, then the report as one JSON line; exits 1 if any check failed.
`checkpoint=<run>` adds the `policy latency` check (p50/p99 of the policy against the control period).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from hardware.config import load_command_config
from hardware.preflight.options import PreflightOptions
from hardware.preflight.report import PreflightReport
from hardware.preflight.runner import run_preflight
from hardware.tracking.calibration import CalibrationError
from robolearn.agents.policy import ActingConfig
from robolearn.config import register_schema
from robolearn.paths import CONFIG_DIR
from robolearn.process import exits


@dataclass
class PreflightCommandConfig:
    # The real-robot env config: validated by the `config` check itself, so a bad one is a failed check.
    env: Any = None
    preflight: PreflightOptions = field(default_factory=PreflightOptions)
    checkpoint: Optional[str] = None  # a run directory or checkpoint.pt: also check the policy's latency against the control period
    policy: ActingConfig = field(default_factory=ActingConfig)  # threads, warm-up, calls, the share of the period allowed


register_schema("preflight_schema", PreflightCommandConfig)


def env_container(env: Any) -> dict:
    """The env node as a plain dict (the env and the checks validate it)."""
    return OmegaConf.to_container(env, resolve=True) if isinstance(env, DictConfig) else dict(env or {})


def run(cfg: PreflightCommandConfig | DictConfig, say=print) -> PreflightReport:
    cfg = load_command_config(PreflightCommandConfig, cfg, "preflight")
    return run_preflight(env_container(cfg.env), cfg.preflight, say=say, checkpoint=cfg.checkpoint, acting=cfg.policy)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="preflight")
@exits.reported("preflight", known=(CalibrationError,))
def main(cfg: DictConfig) -> None:
    report = run(cfg, say=lambda msg: None)
    print(report.render())
    print(json.dumps(report.as_dict()))
    if not report.ok:
        sys.exit(1)
