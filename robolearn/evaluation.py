"""Runs a policy for seeded episodes and summarises success, return and length.

The eval command uses it, and training evaluates through it too, so both report the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from robolearn.policies import Policy


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    episode_return: float
    length: int


@dataclass
class EvalSummary:
    episodes: list[EpisodeResult] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else 0.0

    @property
    def mean_return(self) -> float:
        return float(np.mean([e.episode_return for e in self.episodes])) if self.episodes else 0.0

    @property
    def mean_length(self) -> float:
        return float(np.mean([e.length for e in self.episodes])) if self.episodes else 0.0

    def as_dict(self) -> dict:
        return {
            "episodes": len(self.episodes),
            "success_rate": self.success_rate,
            "mean_return": self.mean_return,
            "mean_length": self.mean_length,
            "per_episode": [asdict(e) for e in self.episodes],
        }


def camera_strip(obs: dict[str, np.ndarray], image_keys, height: int) -> np.ndarray:
    """The policy's own camera images side by side, upscaled to `height` (nearest neighbour)."""
    tiles = []
    for key in image_keys:
        img = obs[key]
        scale = max(1, height // img.shape[0])
        tiles.append(np.repeat(np.repeat(img, scale, axis=0), scale, axis=1))
    strip = np.concatenate(tiles, axis=1)
    pad = height - strip.shape[0]
    return np.pad(strip, ((0, max(pad, 0)), (0, 0), (0, 0)))[:height]


def evaluate(
    env: gym.Env,
    policy: Policy,
    episodes: int,
    seed: int = 0,
    video_path: str | Path | None = None,
    video_episodes: int = 1,
    progress: bool = True,
) -> EvalSummary:
    """Episode i starts from reset(seed=seed + i). Video frames: the env's render beside the policy's cameras."""
    summary = EvalSummary()
    writer = None
    if video_path is not None:
        import imageio.v2 as imageio

        Path(video_path).parent.mkdir(parents=True, exist_ok=True)
        fps = env.metadata.get("render_fps", 10)
        writer = imageio.get_writer(str(video_path), fps=fps, codec="libx264", quality=7, macro_block_size=8)
    image_keys = [k for k, space in env.observation_space.spaces.items() if len(space.shape) == 3]
    bar = tqdm(range(episodes), desc="eval", unit="ep", disable=not progress)
    try:
        for i in bar:
            obs, info = env.reset(seed=seed + i)
            policy.reset()
            record = writer is not None and i < video_episodes
            total, length, done = 0.0, 0, False
            while not done:
                if record:
                    _write_frame(writer, env, obs, image_keys)
                obs, reward, terminated, truncated, info = env.step(policy.act(obs))
                total += float(reward)
                length += 1
                done = terminated or truncated
            if record:
                _write_frame(writer, env, obs, image_keys)
            summary.episodes.append(EpisodeResult(seed + i, bool(info.get("success", False)), total, length))
            bar.set_postfix(success=f"{summary.success_rate:.2f}", ret=f"{summary.mean_return:.1f}")
    finally:
        if writer is not None:
            writer.close()
    return summary


def _write_frame(writer, env: gym.Env, obs, image_keys) -> None:
    frame = env.render()
    if frame is None:
        frame = camera_strip(obs, image_keys, 252)
    elif image_keys:
        strip = camera_strip(obs, image_keys, frame.shape[0] // 2)
        panel = np.zeros((frame.shape[0], strip.shape[1], 3), dtype=np.uint8)
        panel[: strip.shape[0]] = strip
        frame = np.concatenate([frame, panel], axis=1)
    writer.append_data(frame)
