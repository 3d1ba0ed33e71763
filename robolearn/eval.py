"""Evaluate a policy on an env: success rate, mean return, episode length, optional mp4.

    python -m robolearn.eval policy=expert episodes=50
    python -m robolearn.eval policy=expert episodes=3 video=true video_path=videos/expert.mp4
    python -m robolearn.eval env.control_mode=joint_torque
    python -m robolearn.eval policy=expert episodes=1 display.enabled=true display.save=runs/expert.rrd   # docs/watching.md
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from robolearn.config import check, load_typed, register_schema
from robolearn.display import DisplayConfig, open_view
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR
from robolearn.rollout import evaluate

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    env: Any = None  # validated by the env factory it names
    policy: Any = field(default_factory=lambda: {"_target_": "sim.expert.KettleSinkExpert"})  # configs/policy/*.yaml
    episodes: int = 50
    seed: int = 0  # episode i is reset with seed + i
    video: bool = False  # write an mp4 of the first `video_episodes` episodes
    video_episodes: int = 1
    video_path: str = "videos/eval.mp4"
    progress: bool = True
    display: DisplayConfig = field(default_factory=DisplayConfig)  # the live view (docs/watching.md)

    def __post_init__(self) -> None:
        check(self.episodes >= 0, "episodes", self.episodes, "must be >= 0")
        check(self.video_episodes >= 0, "video_episodes", self.video_episodes, "must be >= 0")


register_schema("eval_schema", EvalConfig)


def run(cfg: EvalConfig | DictConfig) -> dict:
    """Evaluate; a composed config is checked against EvalConfig first."""
    cfg = load_typed(EvalConfig, cfg, "eval")
    env = make_env(cfg.env, render_mode="rgb_array" if cfg.video else None)
    view = None
    try:
        view = open_view(cfg.display, "eval")
        policy = instantiate(cfg.policy, env=env)
        summary = evaluate(
            env,
            policy,
            episodes=cfg.episodes,
            seed=cfg.seed,
            video_path=cfg.video_path if cfg.video else None,
            video_episodes=cfg.video_episodes,
            progress=cfg.progress,
            view=view,
        )
    finally:
        display = view.close() if view is not None else None
        env.close()
    result = summary.as_dict()
    if display is not None:
        result["display"] = display
    env_node = cfg.env or {}
    if "control_mode" in env_node:  # the kettle sim's and the arm's (its env group starts from EnvConfig); dm_control has none
        result["control_mode"] = str(env_node["control_mode"])
    if cfg.video:
        result["video"] = str(cfg.video_path)
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    result = run(load_typed(EvalConfig, cfg, "eval"))
    print(
        f"episodes={result['episodes']} success_rate={result['success_rate']:.3f} "
        f"mean_return={result['mean_return']:.2f} mean_length={result['mean_length']:.1f}"
        + (f" video={result['video']}" if "video" in result else "")
    )
    print(json.dumps({k: v for k, v in result.items() if k != "per_episode"}))


if __name__ == "__main__":
    main()
