"""Recording episodes (teleoperated demos, human interventions) into a replay store.

What is stored is the action the arm executed, in the policy's own action space: the real env reports
it as `info["executed_action"]` (its command after the safety layer's clamp, rate limit, taper and
workspace scaling, normalised like an action). Storing the operator's raw request instead would teach
the learner actions the arm never took. Envs that execute actions as given (the sim) have no such key,
and the action itself (clipped to the action space) is what ran.

An episode is buffered and written on `end()`, so an operator can throw a bad demo away. Intervention
segments are stored as episodes of their own: a segment that ends because the human hands control back
is truncated (bootstrapped), one that ends with the task is terminated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gymnasium import spaces

from robolearn.replay.storage import ReplayStorage


def executed_action(info: dict, action: np.ndarray) -> np.ndarray:
    """The executed action of a step: the env's report, else the action clipped to [-1, 1]."""
    executed = info.get("executed_action")
    if executed is None:
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
    return np.asarray(executed, dtype=np.float32)


@dataclass
class _Episode:
    first_obs: dict[str, np.ndarray]
    steps: list[tuple[np.ndarray, float, bool, bool, dict[str, np.ndarray]]] = field(default_factory=list)
    success_from: int | None = None  # the frame (0: the first observation) from which the person marked success


# A person's success labels, one per row, kept in the recording beside the rows (`ReplayStorage.save`'s extra):
# NO_LABEL in episodes nobody marked, else 0 before the frame they marked and 1 from it on.
SUCCESS_LABEL = "success_label"
NO_LABEL = -1


class EpisodeRecorder:
    """Buffers episodes and writes kept ones into a ReplayStorage (`store`), optionally saved to `path`."""

    def __init__(self, store: ReplayStorage, path: str | Path | None = None, labels: np.ndarray | None = None):
        self.store = store
        self.path = Path(path) if path is not None else None
        self._episode: _Episode | None = None
        self.kept = 0
        self.discarded = 0
        # The rows' success labels (held rows, oldest first); a store's rows without them get NO_LABEL.
        self._labels = [np.full(len(store), NO_LABEL, np.int8) if labels is None else np.asarray(labels, np.int8)]

    @classmethod
    def open(cls, path: str | Path, observation_space: spaces.Dict, action_shape: tuple[int, ...], room: int) -> EpisodeRecorder:
        """Append to the store at `path` (created if missing) with space for `room` more rows."""
        path = Path(path)
        if path.exists():
            old = ReplayStorage.load(path, observation_space, action_shape)
            store = ReplayStorage.load(path, observation_space, action_shape, capacity=max(old.capacity, len(old) + room))
            with np.load(path, allow_pickle=False) as data:  # the labels of the episodes already there
                labels = data[SUCCESS_LABEL] if SUCCESS_LABEL in data.files and len(data[SUCCESS_LABEL]) == len(store) else None
            return cls(store, path, labels)
        store = ReplayStorage(observation_space, action_shape, max(room, 2))
        return cls(store, path)

    @property
    def recording(self) -> bool:
        return self._episode is not None

    @property
    def steps(self) -> int:
        return 0 if self._episode is None else len(self._episode.steps)

    def begin(self, obs: dict[str, np.ndarray]) -> None:
        if self._episode is not None:
            raise RuntimeError("EpisodeRecorder.begin: the previous episode was not ended")
        self._episode = _Episode({k: np.array(v, copy=True) for k, v in obs.items()})

    def add(self, action, reward: float, terminated: bool, truncated: bool, next_obs: dict[str, np.ndarray]) -> None:
        if self._episode is None:
            raise RuntimeError("EpisodeRecorder.add before begin()")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.store.action_shape:
            raise ValueError(f"recorded action has shape {action.shape}, the store expects {self.store.action_shape}")
        next_copy = {k: np.array(v, copy=True) for k, v in next_obs.items()}
        self._episode.steps.append((action.copy(), float(reward), bool(terminated), bool(truncated), next_copy))

    def mark_success(self) -> int:
        """The person says the task is done as of the latest observation (a key during teleop): its frame and the
        ones after it are successes, the ones before are not (the success classifier's labels). Returns the frame."""
        if self._episode is None:
            raise RuntimeError("EpisodeRecorder.mark_success outside an episode")
        self._episode.success_from = len(self._episode.steps)
        return self._episode.success_from

    def end(self, keep: bool = True, truncate: bool = True) -> int:
        """Close the episode; write it if `keep` and it has a step. An episode the env did not end is
        marked truncated on its last step (`truncate`), so the learner bootstraps there. Returns the
        number of transitions written."""
        episode, self._episode = self._episode, None
        if episode is None or not keep or not episode.steps:
            if episode is not None:
                self.discarded += 1
            return 0
        needed = len(episode.steps) + 1
        if needed > self.store.capacity:
            raise ValueError(f"episode of {len(episode.steps)} steps does not fit a store of capacity {self.store.capacity}")
        steps = list(episode.steps)
        action, reward, terminated, truncated, obs = steps[-1]
        if not (terminated or truncated) and truncate:
            steps[-1] = (action, reward, terminated, True, obs)
        stream = 1_000_000 + self.kept  # private stream id: never interleaves with other writers
        self.store.start_episode(episode.first_obs, stream=stream)
        for action, reward, terminated, truncated, obs in steps:
            self.store.add(action, reward, terminated, truncated, obs, stream=stream)
        labels = np.full(len(steps) + 1, NO_LABEL, np.int8)
        if episode.success_from is not None:
            labels[:] = 0
            labels[episode.success_from :] = 1
        self._labels.append(labels)
        self.kept += 1
        return len(steps)

    def labels(self) -> np.ndarray:
        """The held rows' success labels, oldest first (a full store drops its oldest rows' with them)."""
        self._labels = [np.concatenate(self._labels)[-len(self.store):] if len(self.store) else np.zeros(0, np.int8)]
        return self._labels[0]

    def save(self) -> Path | None:
        if self.path is None:
            return None
        labels = self.labels()
        self.store.save(self.path, extra={SUCCESS_LABEL: labels} if (labels != NO_LABEL).any() else None)
        return self.path
