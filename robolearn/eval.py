"""Evaluate a policy on an env: success rate, mean return, episode length, optional mp4.

    python -m robolearn.eval policy=expert episodes=50
    python -m robolearn.eval policy=expert episodes=3 video=true video_path=videos/expert.mp4
    python -m robolearn.eval env.control_mode=joint_torque
"""

from __future__ import annotations

import json
import logging

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from robolearn.envs import make_env
from robolearn.evaluation import evaluate
from robolearn.paths import CONFIG_DIR

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    env = make_env(cfg.env, render_mode="rgb_array" if cfg.video else None)
    try:
        policy = instantiate(cfg.policy, env=env)
        summary = evaluate(
            env,
            policy,
            episodes=cfg.episodes,
            seed=cfg.seed,
            video_path=cfg.video_path if cfg.video else None,
            video_episodes=cfg.video_episodes,
            progress=cfg.progress,
        )
    finally:
        env.close()
    result = summary.as_dict()
    result["control_mode"] = str(cfg.env.control_mode)
    if cfg.video:
        result["video"] = str(cfg.video_path)
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    print(
        f"episodes={result['episodes']} success_rate={result['success_rate']:.3f} "
        f"mean_return={result['mean_return']:.2f} mean_length={result['mean_length']:.1f}"
        + (f" video={result['video']}" if "video" in result else "")
    )
    print(json.dumps({k: v for k, v in result.items() if k != "per_episode"}))


if __name__ == "__main__":
    main()
