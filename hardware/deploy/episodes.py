"""Running a policy on the real-robot env: episodes, safety events, interventions, resets and video.

The policy acts through the same path as in training (`robolearn.agents.policy.AgentPolicy`: the frame stack it
was trained with; `env.step` scales and checks the action with the same `EnvSpec`), and every command
passes the safety layer. The report holds each episode's success, return and length and every safety
event: those of the steps, of the homing (reset info) and of the scripted motions between episodes.

A latched safety fault ends the run: the next `env.reset()` would refuse anyway, and clearing a fault is
an operator's decision (`env.clear_fault(...)`), never the deploy loop's.

`on_transition(obs, action, reward, terminated, truncated, next_obs, info)` is called after every step:
the hook through which an online-learning actor (the transport work) feeds a remote replay server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hardware.env import EStopLatched
from hardware.resets import ResetFailed, ResetRoutine
from robolearn.replay.recording import executed_action
from robolearn.rollout import EpisodeResult, EvalSummary, Step, run_episode
from robolearn.video import mp4_writer

Transition = Callable[..., None]


@dataclass
class DeployEpisode(EpisodeResult):
    """An evaluated episode (seed, success, return, length) plus what only a real arm has."""

    success_known: bool = False
    ended_by: str = ""  # terminated | truncated | safety | quit
    intervention_steps: int = 0
    deadline_misses: int = 0
    safety_events: list[dict] = field(default_factory=list)


@dataclass
class DeployReport(EvalSummary):
    """EvalSummary's success rate and mean return/length over DeployEpisodes, plus the run's own records."""

    between_episode_events: list[dict] = field(default_factory=list)
    stopped: str = ""  # why the run stopped early, if it did
    outcome: str = "done"  # done | fault (a latched safety fault ended it) | stopped (operator, reset prompt, reset failed)
    safety_counters: dict = field(default_factory=dict)
    video: str | None = None
    interventions_file: str | None = None

    def events(self) -> list[dict]:
        """Every safety event of the run, in order."""
        out = []
        for e in self.episodes:
            out += e.safety_events
        return out + self.between_episode_events

    def event_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in self.events():
            key = f"{event['layer']}/{event['kind']}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def as_dict(self) -> dict:
        return {
            "episodes": len(self.episodes),
            "success_rate": self.success_rate,
            "success_known": all(e.success_known for e in self.episodes) if self.episodes else False,
            "mean_return": self.mean_return,
            "stopped": self.stopped,
            "outcome": self.outcome,
            "safety_event_counts": self.event_counts(),
            "safety_counters": self.safety_counters,
            "video": self.video,
            "interventions_file": self.interventions_file,
            "per_episode": [asdict(e) for e in self.episodes],
            "between_episode_events": self.between_episode_events,
        }


class CameraVideo:
    """An mp4 of the env's cameras (their full-resolution latest frames side by side) at the control rate."""

    def __init__(self, path: str | Path, fps: float, height: int = 240):
        self.path = Path(path)
        self.height = height
        self.frames = 0
        self._writer = mp4_writer(self.path, fps)

    def add(self, env, obs: dict[str, np.ndarray]) -> None:
        import cv2

        from hardware.cameras import CameraError

        tiles = []
        for name, camera in env.cameras.items():
            try:
                image = camera.read_latest().image
            except CameraError:
                image = obs.get(name, np.zeros((self.height, self.height, 3), dtype=np.uint8))
            scale = self.height / image.shape[0]
            tiles.append(cv2.resize(image, (max(8, round(image.shape[1] * scale)), self.height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST))
        if not tiles:
            return
        frame = np.concatenate(tiles, axis=1)
        pad = (-frame.shape[1]) % 8
        if pad:
            frame = np.pad(frame, ((0, 0), (0, pad), (0, 0)))
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        self._writer.close()


def run_deployment(
    env,
    policy,
    *,
    episodes: int,
    seed: int = 0,
    resets: ResetRoutine | None = None,
    interventions=None,
    video_path: str | Path | None = None,
    video_episodes: int = 1,
    on_transition: Transition | None = None,
    say: Callable[[str], None] = print,
    view=None,
) -> DeployReport:
    """`interventions`: an InterventionRecorder when `policy` is an InterventionPolicy (a human can take over).
    `view`: a live view (robolearn/display.py) of every episode, or None."""
    if episodes < 1:
        raise ValueError(f"deploy: episodes must be at least 1, got {episodes}")
    report = DeployReport()
    video = CameraVideo(video_path, env.metadata.get("render_fps", 10)) if video_path is not None and video_episodes > 0 else None
    previous_success: bool | None = None
    try:
        for i in range(episodes):
            try:
                answer = resets.between_episodes(previous_success) if resets is not None else "ok"
            except (EStopLatched, ResetFailed) as exc:
                report.stopped = f"scripted reset motion: {exc}"
                report.outcome = "fault" if isinstance(exc, EStopLatched) or env.safety.latched else "stopped"
                break
            finally:
                # Events since the last step (the hold, scripted motions): env.reset() would discard them.
                report.between_episode_events += [e.as_dict() for e in env.safety.drain_events()]
            if answer == "quit" or (answer == "timeout" and resets.plan.stop_on_timeout):
                report.stopped = f"scene reset prompt: {answer}"
                report.outcome = "stopped"
                break
            policy.reset()
            episode = DeployEpisode(seed + i, False, 0.0, 0)
            recording = video is not None and i < video_episodes

            def start(obs, reset_info) -> None:
                episode.safety_events.extend(reset_info["safety"]["events"])  # the homing's
                if recording:
                    video.add(env, obs)

            def record(step: Step) -> None:
                intervening = bool(getattr(policy, "intervening", False))
                episode.safety_events.extend(step.info["safety"]["events"])
                episode.intervention_steps += intervening
                if interventions is not None:
                    interventions.step(intervening, step.obs, step.action, step.info, step.reward, step.terminated,
                                       step.truncated, step.next_obs)
                if on_transition is not None:
                    on_transition(step.obs, executed_action(step.info, step.action), step.reward, step.terminated,
                                  step.truncated, step.next_obs, step.info)
                if recording:
                    video.add(env, step.next_obs)

            def end(_episode) -> None:
                if interventions is not None:
                    interventions.end_episode()
                env.safety.hold()

            try:  # only the env's reset raises these (homing refused or failed); a step reports its fault in info
                run = run_episode(env, policy.act, seed=seed + i, on_start=start, record=record, on_end=end,
                                  on_step=lambda step: "quit" if getattr(policy, "quit", False) else None, view=view)
            except (EStopLatched, ResetFailed) as exc:
                report.stopped = f"reset: {exc}"
                report.outcome = "fault" if isinstance(exc, EStopLatched) or env.safety.latched else "stopped"
                break
            info = run.info
            episode.episode_return, episode.length = run.episode_return, run.length
            episode.ended_by = "safety" if info["safety"]["estop"] else run.ended_by
            episode.success, episode.success_known = bool(info["success"]), bool(info["success_known"])
            episode.deadline_misses = info["timing"]["deadline_misses"]
            report.episodes.append(episode)
            previous_success = episode.success if episode.success_known else None
            say(f"episode {i + 1}/{episodes}: success={episode.success}{'' if episode.success_known else ' (unknown: no tracker poses)'} "
                f"return={episode.episode_return:.2f} length={episode.length} safety events={len(episode.safety_events)} "
                f"ended by {episode.ended_by}" + (f", human steps={episode.intervention_steps}" if episode.intervention_steps else ""))
            if episode.ended_by == "safety":
                report.stopped = (f"safety e-stop latched: {info['safety']['fault']}. Look at the arm and remove the cause (a "
                                  "robot-side stop is released at the arm, on its pendant or Desk), then run deploy again: a new "
                                  "run starts unlatched and runs the pre-flight first (docs/deploy.md, 'After a fault')")
                report.outcome = "fault"
                break
            if episode.ended_by == "quit":
                report.stopped = "operator quit"
                report.outcome = "stopped"
                break
    finally:
        if video is not None:
            video.close()
            report.video = str(video.path)
        report.between_episode_events += [e.as_dict() for e in env.safety.drain_events()]
        report.safety_counters = dict(env.safety.counters)
    return report
