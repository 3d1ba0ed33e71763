"""Watch a policy act in the sim in MuJoCo's interactive viewer (needs a display).

    python -m robolearn.view                 # the scripted expert
    python -m robolearn.view policy=random env.control_mode=joint_torque

The policy runs at the control rate in real time; close the window to stop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from robolearn.config import check, load_typed, register_schema
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR
from robolearn.rollout import run_episode


@dataclass
class ViewConfig:
    env: Any = None  # a MuJoCo env (the kettle sim), validated by its factory
    policy: Any = field(default_factory=lambda: {"_target_": "sim.expert.KettleSinkExpert"})  # configs/policy/*.yaml
    seed: int = 0  # episode i is reset with seed + i
    episodes: int = 100

    def __post_init__(self) -> None:
        check(self.episodes >= 0, "episodes", self.episodes, "must be >= 0")


register_schema("view_schema", ViewConfig)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="view")
def main(node: DictConfig) -> None:
    cfg = load_typed(ViewConfig, node, "view")  # before the viewer: a wrong key or value fails first
    import mujoco.viewer  # imports GLFW: only here, never on headless code paths

    env = make_env(cfg.env)
    base = env.unwrapped
    if not hasattr(base, "model"):
        raise SystemExit(f"{(cfg.env or {}).get('factory')} is not a MuJoCo env; the viewer shows MuJoCo scenes only")
    policy = instantiate(cfg.policy, env=env)
    period = 1.0 / base.cfg.control_hz
    with mujoco.viewer.launch_passive(base.model, base.data) as viewer:
        def show(step) -> None:
            viewer.sync()
            time.sleep(max(0.0, period - (time.monotonic() - started[0])))

        started = [time.monotonic()]
        for episode in range(cfg.episodes):
            policy.reset()

            def act(obs):
                started[0] = time.monotonic()
                return policy.act(obs)

            run = run_episode(env, act, seed=cfg.seed + episode, on_step=show,
                              before_step=lambda: None if viewer.is_running() else "viewer closed")
            if not viewer.is_running():
                break
            print(f"episode {episode}: success={run.success}")
    env.close()


if __name__ == "__main__":
    main()
