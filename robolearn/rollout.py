"""The one episode loop, and the seeded evaluation built on it.

Training (demos and collection), evaluation, actors, deploy and teleop all run episodes the same way:
reset, then act / step / record until the env ends the episode or a hook stops it. What differs is said
by hooks:

- `act(obs) -> action`: the policy (an agent, the expert, a human taking over);
- `observe(obs) -> obs`: what the loop keeps of an env observation (an agent's frozen-encoder features);
- `on_start(obs, info)`: the episode's first observation (a replay's or a client's `start_episode`, a video frame);
- `record(step)`: every step, as stored (a replay, an actor's client, a video, interventions);
- `before_step() -> reason | None`: checked before every step; a reason stops the episode unfinished
  (total steps reached, a stop request, a lost link, an operator quitting);
- `on_step(step) -> reason | None`: after `record`; a reason ends the episode after this step (a safety
  fault, an operator quitting);
- `on_end(episode)`: once, with the finished or stopped episode.

`view` (robolearn/display.py's live view, or None) sees the same episode as the env gave it: `start(obs,
info)`, `step(obs, action, reward, info)` right after each env step (camera images, before `observe` turns
them into features), `end(episode)`. It returns at once, so every command watches its runs the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from robolearn.policies import Policy
from robolearn.spec import image_keys_of
from robolearn.video import mp4_writer

Obs = dict[str, np.ndarray]


@dataclass
class Step:
    """One env step: the observation the action was chosen on, and what the env answered."""

    obs: Obs
    action: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    next_obs: Obs
    info: dict

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


@dataclass
class Episode:
    """What `run_episode` returns: totals, the last observation and info, and why it ended."""

    seed: Optional[int]
    episode_return: float = 0.0
    length: int = 0
    # terminated | truncated: the env ended it; any other string: the hook reason that stopped it
    ended_by: str = ""
    obs: Optional[Obs] = None  # the last observation (as `observe` made it)
    reset_info: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # the last step's

    @property
    def finished(self) -> bool:
        """Ended by the env, not cut short by a hook before the env ended it."""
        return self.ended_by in ("terminated", "truncated")

    @property
    def success(self) -> bool:
        return bool(self.info.get("success", False))


def run_episode(
    env: gym.Env,
    act: Callable[[Obs], np.ndarray],
    *,
    seed: Optional[int] = None,
    observe: Optional[Callable[[Obs], Obs]] = None,
    on_start: Optional[Callable[[Obs, dict], None]] = None,
    record: Optional[Callable[[Step], None]] = None,
    before_step: Optional[Callable[[], Optional[str]]] = None,
    on_step: Optional[Callable[[Step], Optional[str]]] = None,
    on_end: Optional[Callable[[Episode], None]] = None,
    view=None,
) -> Episode:
    """Reset with `seed`, then step until the env ends the episode or a hook gives a reason to stop.
    The policy's own `reset()` is the caller's (it may wrap several policies)."""
    obs, info = env.reset(seed=seed)
    if view is not None:
        view.start(obs, info)
    if observe is not None:
        obs = observe(obs)
    episode = Episode(seed, obs=obs, reset_info=info)
    if on_start is not None:
        on_start(obs, info)
    while True:
        if before_step is not None:
            reason = before_step()
            if reason:
                episode.ended_by = reason
                break
        action = act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        if view is not None:
            view.step(next_obs, action, reward, info)
        if observe is not None:
            next_obs = observe(next_obs)
        step = Step(obs, action, reward, terminated, truncated, next_obs, info)
        episode.episode_return += float(reward)
        episode.length += 1
        episode.obs, episode.info = next_obs, info
        if record is not None:
            record(step)
        obs = next_obs
        reason = on_step(step) if on_step is not None else None
        if terminated or truncated:
            episode.ended_by = "terminated" if terminated else "truncated"
            break
        if reason:
            episode.ended_by = reason
            break
    if on_end is not None:
        on_end(episode)
    if view is not None:
        view.end(episode)
    return episode


# -- evaluation -------------------------------------------------------------------------------------
@dataclass
class EpisodeResult:
    """One evaluated episode, as a summary lists it; a deploy episode extends it with what a real arm has."""

    seed: int
    success: bool
    episode_return: float
    length: int


@dataclass
class EvaluatedEpisode(EpisodeResult):
    """An episode `evaluate` ran, with how it ended where the env says (the sim's info["outcome"]: success,
    fell, lifted, not_lifted; "" for an env that does not)."""

    outcome: str = ""


@dataclass
class EvalSummary:
    """Success rate and mean return/length over any episode records with those three fields."""

    episodes: list[Any] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else 0.0

    @property
    def mean_return(self) -> float:
        return float(np.mean([e.episode_return for e in self.episodes])) if self.episodes else 0.0

    @property
    def mean_length(self) -> float:
        return float(np.mean([e.length for e in self.episodes])) if self.episodes else 0.0

    @property
    def outcomes(self) -> dict[str, int]:
        """How many episodes ended each way, for the episodes whose env said (most first)."""
        counts = Counter(getattr(e, "outcome", "") for e in self.episodes)
        counts.pop("", None)
        return dict(counts.most_common())

    def as_dict(self) -> dict:
        return {
            "episodes": len(self.episodes),
            "success_rate": self.success_rate,
            "mean_return": self.mean_return,
            "mean_length": self.mean_length,
            "outcomes": self.outcomes,
            "per_episode": [asdict(e) for e in self.episodes],
        }


def camera_strip(obs: Obs, image_keys, height: int) -> np.ndarray:
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
    view=None,
) -> EvalSummary:
    """Episode i starts from reset(seed=seed + i). Video frames: the env's render beside the policy's cameras.

    The eval command uses it, and training evaluates through it too, so both report the same numbers.
    `view`: a live view (robolearn/display.py) that watches every episode."""
    summary = EvalSummary()
    writer = None
    if video_path is not None:
        writer = mp4_writer(video_path, env.metadata.get("render_fps", 10))
    image_keys = image_keys_of(env.observation_space)
    bar = tqdm(range(episodes), desc="eval", unit="ep", disable=not progress)
    try:
        for i in bar:
            policy.reset()
            filming = writer is not None and i < video_episodes
            frame = (lambda obs, *_: _write_frame(writer, env, obs, image_keys)) if filming else None
            episode = run_episode(env, policy.act, seed=seed + i, on_start=frame,
                                  record=(lambda step: frame(step.next_obs)) if filming else None, view=view)
            summary.episodes.append(EvaluatedEpisode(seed + i, episode.success, episode.episode_return, episode.length,
                                                     str(episode.info.get("outcome", ""))))
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
