"""Replay storage: one row per observed step, transitions found by index.

Every observation is stored once (uint8 images stay uint8). A row holds the observation at step t and
the action, reward and end flags of the transition that leaves it; its successor row holds the next
observation. Rows of one episode are linked (`prev`/`next` hold global row numbers), so several actors
can write interleaved episodes into one store, which is what the replay server does. Frame stacks and
n-step returns are rebuilt at sample time by following the links, never across an episode boundary.

Global row numbers grow forever; row g lives at slot g % capacity and is valid while g >= oldest.

Every write goes through `extend`, a run of records (an actor's chunk; `start_episode` and `add` are runs
of one), checked whole before anything is written. Replay files are robolearn.replay.persistence's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from gymnasium import spaces

from robolearn.replay.batch import Batch
from robolearn.replay.codec import KIND_START, flatten_obs, obs_name, unflatten_obs
from robolearn.replay.persistence import ReplayFormatError, read_replay_file, write_replay_file
from robolearn.spec import image_keys_of, spec_signature

_FIELDS = ("action", "reward", "terminated", "truncated", "prev", "next", "policy_version")  # per row, besides observations


Allocate = Callable[[str, tuple, np.dtype, int], np.ndarray]


def _in_memory(name: str, shape: tuple, dtype: np.dtype, fill: int) -> np.ndarray:
    return np.zeros(shape, dtype) if fill == 0 else np.full(shape, fill, dtype)  # zeros: pages touched on first write


def row_bytes(observation_space: spaces.Dict, action_shape: tuple[int, ...]) -> int:
    """Bytes one stored row takes: images as uint8, other observations as float32, the transition's fields."""
    images = image_keys_of(observation_space)
    obs = sum(int(np.prod(s.shape)) * (1 if key in images else 4) for key, s in observation_space.spaces.items())
    return obs + 4 * int(np.prod(action_shape)) + 4 + 1 + 1 + 8 + 8 + 8  # action, reward, flags, policy version, links


class ReplayStorage:
    def __init__(self, observation_space: spaces.Dict, action_shape: tuple[int, ...], capacity: int,
                 allocate: Allocate | None = None):
        """`allocate(name, shape, dtype, fill)` provides each array (default: in memory); the replay server
        passes one that maps files, so that its storage is its own durable copy (robolearn.replay.durable)."""
        if capacity < 2:
            raise ValueError(f"replay capacity must be at least 2, got {capacity}")
        self.observation_space = observation_space
        self.action_shape = tuple(action_shape)
        self.capacity = int(capacity)
        self.image_keys = image_keys_of(observation_space)
        allocate = allocate or _in_memory
        self.obs = {
            key: allocate(obs_name(key), (self.capacity, *space.shape), np.dtype(np.uint8 if key in self.image_keys else np.float32), 0)
            for key, space in observation_space.spaces.items()
        }
        self.action = allocate("action", (self.capacity, *self.action_shape), np.dtype(np.float32), 0)
        self.reward = allocate("reward", (self.capacity,), np.dtype(np.float32), 0)
        self.terminated = allocate("terminated", (self.capacity,), np.dtype(bool), 0)
        self.truncated = allocate("truncated", (self.capacity,), np.dtype(bool), 0)
        # of the policy that chose the action; -1 unknown
        self.policy_version = allocate("policy_version", (self.capacity,), np.dtype(np.int64), -1)
        self.prev = allocate("prev", (self.capacity,), np.dtype(np.int64), -1)
        self.next = allocate("next", (self.capacity,), np.dtype(np.int64), -1)
        self.total = 0  # rows ever written
        self._complete = 0  # held rows whose successor is stored: num_transitions() without a scan
        self.transitions_added = 0
        self.episodes_added = 0
        self._cursor: dict[int, int] = {}  # stream -> global row of its latest observation

    # -- writing -------------------------------------------------------------------------------------
    @property
    def oldest(self) -> int:
        return max(0, self.total - self.capacity)

    def __len__(self) -> int:
        """Rows currently held (observations, including each episode's last)."""
        return self.total - self.oldest

    def start_episode(self, obs: dict[str, np.ndarray], stream: int = 0) -> int:
        """Store the first observation of an episode from `stream` (one stream per actor)."""
        self.extend(stream, np.ones(1, bool), _one_row(obs), np.zeros((1, *self.action_shape), np.float32),
                    np.zeros(1, np.float32), np.zeros(1, bool), np.zeros(1, bool), np.full(1, -1, np.int64))
        return self.total - 1

    def has_open_episode(self, stream: int) -> bool:
        row = self._cursor.get(stream)
        return row is not None and row >= self.oldest

    def add(self, action, reward: float, terminated: bool, truncated: bool, next_obs: dict[str, np.ndarray], stream: int = 0,
            policy_version: int = -1) -> int:
        """Store one transition of `stream`: the action taken from its latest observation and what followed."""
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_shape:
            raise ValueError(f"replay: action shape {action.shape}, expected {self.action_shape}")
        self.extend(stream, np.zeros(1, bool), _one_row(next_obs), action[None], np.array([reward], np.float32),
                    np.array([terminated], bool), np.array([truncated], bool), np.array([policy_version], np.int64))
        return self.total - 1

    def extend(self, stream: int, starts: np.ndarray, obs: dict[str, np.ndarray], action: np.ndarray, reward: np.ndarray,
               terminated: np.ndarray, truncated: np.ndarray, policy_version: np.ndarray, *, checked: bool = False) -> int:
        """The one write path: store a run of records of `stream` (a chunk of the replay server, or one record
        from start_episode / add). Record i's observation is the episode's first (where `starts` is true) or
        the next observation of transition i; `obs` values are (n, ...) arrays or lists of n rows. Everything is
        checked before anything is written, unless the caller already did (`checked`: the replay server, which
        validates each chunk once on arrival, robolearn.transport.chunks). Returns the number of transitions added."""
        starts = np.asarray(starts, dtype=bool)
        if not checked:
            self._check_run(stream, starts, obs, action, terminated, truncated)
        added, begin, n = 0, 0, len(starts)
        while begin < n:
            end = begin + self._piece(stream, bool(starts[begin]), n - begin)
            piece = slice(begin, end)
            added += self._write_piece(stream, starts[piece], {k: v[piece] for k, v in obs.items()}, action[piece], reward[piece],
                                       terminated[piece], truncated[piece], policy_version[piece])
            begin = end
        return added

    def extend_records(self, stream: int, arrays: dict[str, np.ndarray], *, checked: bool = False) -> int:
        """Store a run of step records held as flat arrays (robolearn.replay.codec: `kind`, `action`, `reward`,
        the end flags, `policy_version`, `obs/<key>`) into `stream`; returns the number of transitions added."""
        return self.extend(stream, arrays["kind"] == KIND_START, unflatten_obs(arrays), arrays["action"], arrays["reward"],
                           arrays["terminated"], arrays["truncated"], arrays["policy_version"], checked=checked)

    def _check_run(self, stream: int, starts: np.ndarray, obs: dict, action: np.ndarray, terminated: np.ndarray,
                   truncated: np.ndarray) -> None:
        n = len(starts)
        missing = set(self.obs) - set(obs)
        if missing:
            raise ValueError(f"replay: observation lacks keys {sorted(missing)}")
        for key, store in self.obs.items():
            value = obs[key]
            shapes = {np.shape(row) for row in value} if isinstance(value, list) else {np.shape(value)[1:]}
            if len(value) != n or shapes != {store.shape[1:]}:
                raise ValueError(f"replay: observation {key!r} has shape {' or '.join(map(str, shapes))} ({len(value)} rows), "
                                 f"expected {store.shape[1:]} ({n} rows)")
        if np.shape(action) != (n, *self.action_shape):
            raise ValueError(f"replay: action shape {np.shape(action)[1:]}, expected {self.action_shape}")
        if n and not starts[0] and not self.has_open_episode(stream):
            raise RuntimeError(f"replay stream {stream}: add() before start_episode()")
        ended = ~starts & (np.asarray(terminated, bool) | np.asarray(truncated, bool))
        orphans = np.flatnonzero(~starts[1:] & ended[:-1])
        if len(orphans):
            raise RuntimeError(f"replay stream {stream}: record {orphans[0] + 1} is a transition after its episode ended "
                               "(add() before start_episode())")

    def _piece(self, stream: int, starts_episode: bool, remaining: int) -> int:
        """How many of the next records one vectorised write may take: fewer than the capacity (a run never
        overwrites a row it links to), and none past the slot of the row the first record follows."""
        limit = self.capacity - 1
        if not starts_episode:
            room = self._cursor[stream] + self.capacity - self.total
            limit = min(limit, max(room, 1))  # room 0: the record's own observation lands on that slot (see _write_piece)
        return min(limit, remaining)

    def _write_piece(self, stream: int, starts: np.ndarray, obs: dict, action: np.ndarray, reward: np.ndarray,
                     terminated: np.ndarray, truncated: np.ndarray, policy_version: np.ndarray) -> int:
        n = len(starts)
        cursor = self._cursor.get(stream)
        rows = self.total + np.arange(n)
        slots = rows % self.capacity
        evicted = slots[rows >= self.capacity]  # these slots held rows that are now overwritten
        self._complete -= int(np.count_nonzero(self.next[evicted] >= 0))
        first, last = int(slots[0]), int(slots[-1])
        index = slice(first, last + 1) if last >= first else slots  # contiguous unless it wraps
        for key, store in self.obs.items():
            value = obs[key]
            if isinstance(value, list):  # rows as separate buffers (the wire's zero-copy form): one copy each
                for slot, row in zip(slots, value):
                    store[slot] = row
            else:
                store[index] = value
        prev = rows - 1
        prev[0] = -1 if starts[0] else cursor
        prev[starts] = -1
        linked = ~starts
        if not starts[0] and cursor + self.capacity == self.total:
            # The next observation lands on the slot of the observation it follows (a stream left idle while
            # the whole buffer turned over): that transition cannot be kept; the episode goes on from here.
            prev[0], linked[0] = -1, False
        for field in (self.action, self.reward, self.terminated, self.truncated):
            field[index] = 0
        self.policy_version[index] = -1
        self.prev[index] = prev
        self.next[index] = -1
        src = prev[linked] % self.capacity  # a transition's data lives in the row it leaves from
        self.action[src] = action[linked]
        self.reward[src] = reward[linked]
        self.terminated[src] = terminated[linked]
        self.truncated[src] = truncated[linked]
        self.policy_version[src] = policy_version[linked]
        self.next[src] = rows[linked]
        self._complete += int(linked.sum())
        steps = int((~starts).sum())
        self.total += n
        self.transitions_added += steps
        self.episodes_added += int(starts.sum())
        if starts[-1] or not (terminated[-1] or truncated[-1]):
            self._cursor[stream] = int(rows[-1])
        else:
            self._cursor.pop(stream, None)
        return steps

    # -- reading -------------------------------------------------------------------------------------
    def num_transitions(self) -> int:
        """Transitions currently sampleable (rows whose successor is stored), kept as rows are written."""
        return self._complete

    def _count_transitions(self) -> int:
        if self.total == 0:
            return 0
        rows = self._slots(np.arange(self.oldest, self.total))
        return int(np.count_nonzero(self.next[rows] >= 0))

    def sample(self, batch_size: int, rng: np.random.Generator, n_step: int = 1, gamma: float = 0.99, frame_stack: int = 1) -> Batch:
        starts = self.sample_starts(batch_size, rng)
        return self.gather(starts, n_step=n_step, gamma=gamma, frame_stack=frame_stack)

    def sample_starts(self, batch_size: int, rng: np.random.Generator, skip_oldest: int = 0) -> np.ndarray:
        """Uniform over stored transitions: draw rows, redraw those with no successor yet.

        skip_oldest: once the store is full, leave out its oldest rows, which writes arriving while the
        batch is gathered (on another thread) may overwrite. It must leave most of the store: a margin as
        large as the store would leave one row to draw every time."""
        if self.total == 0 or self.num_transitions() == 0:
            raise RuntimeError("replay: no complete transition stored yet")
        if skip_oldest > self.capacity // 2:
            raise ValueError(f"replay: skip_oldest={skip_oldest} would leave out most of a store of {self.capacity} rows")
        low = self.oldest + (skip_oldest if self.total >= self.capacity else 0)
        low = min(low, self.total - 2)
        starts = rng.integers(low, self.total, size=batch_size)
        for _ in range(1000):
            bad = self.next[self._slots(starts)] < 0
            if not bad.any():
                return starts
            starts[bad] = rng.integers(low, self.total, size=int(bad.sum()))
        raise RuntimeError("replay: could not draw complete transitions (store almost empty?)")

    def gather(self, starts: np.ndarray, n_step: int = 1, gamma: float = 0.99, frame_stack: int = 1) -> Batch:
        """Build n-step transitions with frame stacks from start rows (global row numbers)."""
        starts = np.asarray(starts, dtype=np.int64)
        reward = np.zeros(len(starts), dtype=np.float32)
        discount = np.ones(len(starts), dtype=np.float32)
        alive = np.ones(len(starts), dtype=bool)  # still accumulating (no end and successor known)
        row = starts.copy()
        for i in range(n_step):
            slots = self._slots(row)
            reward += np.where(alive, discount * self.reward[slots], 0.0).astype(np.float32)
            terminated = alive & self.terminated[slots]
            ended = alive & (self.terminated[slots] | self.truncated[slots])
            discount = np.where(alive, discount * gamma, discount).astype(np.float32)
            discount[terminated] = 0.0  # no bootstrap past a true termination; truncation bootstraps
            nxt = self.next[slots]
            row = np.where(alive, nxt, row)
            # Stop after an episode end, or where the n-step window runs past what is stored yet.
            alive &= ~ended
            if i + 1 < n_step:
                nxt_slots = self._slots(row)
                alive &= self.next[nxt_slots] >= 0
        return Batch(
            obs=self._observations(starts, frame_stack),
            action=self.action[self._slots(starts)].copy(),
            reward=reward,
            discount=discount,
            next_obs=self._observations(row, frame_stack),
        )

    def _observations(self, rows: np.ndarray, frame_stack: int) -> dict[str, np.ndarray]:
        slots = self._slots(rows)
        out = {key: store[slots] for key, store in self.obs.items() if key not in self.image_keys}
        if not self.image_keys:
            return out
        # Frames oldest first; before an episode's first row (or the oldest row held) repeat that row.
        history = [rows]
        current = rows
        for _ in range(frame_stack - 1):
            prev = self.prev[self._slots(current)]
            current = np.where(prev >= self.oldest, prev, current)
            history.append(current)
        history.reverse()
        for key in self.image_keys:
            # (B, K, H, W, C): stacking on a new axis copies whole images (interleaving channels here would
            # cost ~20x more; the learner's augmentation gather merges frames into channels for free).
            out[key] = np.stack([self.obs[key][self._slots(r)] for r in history], axis=1)
        return out

    def _slots(self, rows: np.ndarray) -> np.ndarray:
        return rows % self.capacity

    # -- accounting ----------------------------------------------------------------------------------
    def bytes_per_row(self) -> int:
        return row_bytes(self.observation_space, self.action_shape)

    def bytes_per_transition(self) -> float:
        """Stored bytes divided by the transitions they hold (each episode stores one extra row)."""
        transitions = self.num_transitions()
        return self.bytes_per_row() * len(self) / max(transitions, 1)

    # -- persistence ---------------------------------------------------------------------------------
    def state(self) -> dict:
        """What a store keeps besides its arrays: counters and each stream's latest row (see `resume`)."""
        return {"total": self.total, "transitions_added": self.transitions_added, "episodes_added": self.episodes_added,
                "cursor": [[stream, row] for stream, row in self._cursor.items()]}

    def resume(self, state: dict, written_until: int) -> int:
        """Go on from `state()` over arrays that already hold its rows (a file-backed store reopened after a
        kill). A write begun after that state may have reached rows up to `written_until` (exclusive); it is
        undone: the links it made from its stream's latest row are cut, and the held rows whose slots it may
        have overwritten are dropped (the oldest ones: it was evicting them). Returns the rows dropped."""
        self._set_counters(state)
        for row in self._cursor.values():
            if row >= self.oldest:
                self.next[row % self.capacity] = -1  # a transition the interrupted write had begun
        lost_until = min(max(written_until - self.capacity, self.oldest), self.total)
        if lost_until > self.oldest:
            self.next[self._slots(np.arange(self.oldest, lost_until))] = -1
            held = self._slots(np.arange(lost_until, self.total))
            self.prev[held[self.prev[held] < lost_until]] = -1  # frame stacks must not reach into them
            self._cursor = {stream: row for stream, row in self._cursor.items() if row >= lost_until}
        self._complete = self._count_transitions()
        return max(lost_until - self.oldest, 0)

    def assign(self, other: ReplayStorage) -> None:
        """Take over the rows and counters of `other` (same spec; its held rows must fit this capacity)."""
        if other.spec_signature() != self.spec_signature():
            raise ReplayFormatError(f"cannot copy a replay of spec {other.spec_signature()} into one of spec {self.spec_signature()}")
        slots = other._slots(np.arange(other.oldest, other.total))
        self._take_rows(other._held_arrays(), other.state(), source="another replay")

    def map_observations(self, observation_space: spaces.Dict, transform: Callable[[dict], dict], chunk: int = 1024) -> ReplayStorage:
        """A copy of this store (same rows, links and counters) whose observations went through `transform`
        (a batch of observations -> a batch in `observation_space`), e.g. images to frozen-encoder features."""
        out = ReplayStorage(observation_space, self.action_shape, self.capacity)
        slots = self._slots(np.arange(self.oldest, self.total))
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(slots), chunk):
            mapped = transform({k: v[slots[start : start + chunk]] for k, v in self.obs.items()})
            for key, value in mapped.items():
                parts.setdefault(obs_name(key), []).append(value)
        arrays = {key: np.concatenate(values) for key, values in parts.items()}
        arrays.update({name: getattr(self, name)[slots] for name in _FIELDS})
        out._take_rows(arrays, self.state(), source="a mapped replay")
        return out

    def _take_rows(self, arrays: dict[str, np.ndarray], state: dict, source: str) -> None:
        held = len(arrays["reward"])
        if held > self.capacity:
            raise ReplayFormatError(f"{source} holds {held} rows, more than capacity {self.capacity}")
        first = state["total"] - held
        slots = self._slots(np.arange(first, state["total"]))
        obs = unflatten_obs(arrays)
        for key in self.obs:
            self.obs[key][slots] = obs[key]
        for name in ("action", "reward", "terminated", "truncated", "prev", "next"):
            getattr(self, name)[slots] = arrays[name]
        if "policy_version" in arrays:  # files written before policy versions were kept hold -1 (unknown)
            self.policy_version[slots] = arrays["policy_version"]
        self._set_counters(state)
        self._complete = self._count_transitions()

    def _set_counters(self, state: dict) -> None:
        self.total = int(state["total"])
        self.transitions_added, self.episodes_added = int(state["transitions_added"]), int(state["episodes_added"])
        self._cursor = {int(stream): int(row) for stream, row in state["cursor"]}

    def _held_arrays(self) -> dict[str, np.ndarray]:
        """The rows held, oldest first: every observation (by its flat name) and every per-row field."""
        slots = self._slots(np.arange(self.oldest, self.total))
        return {**flatten_obs({k: v[slots] for k, v in self.obs.items()}), **{name: getattr(self, name)[slots] for name in _FIELDS}}

    def spec_signature(self) -> dict:
        return spec_signature(self.observation_space, self.action_shape)

    def save(self, path: str | Path, extra: dict[str, np.ndarray] | None = None) -> None:
        """The rows held and the counters, to a replay file (robolearn.replay.persistence: crash-safe).
        `extra`: more per-row arrays (held rows, oldest first) kept in the file beside them, such as an
        imported dataset's intervention flags; `load` ignores them."""
        meta = {"capacity": self.capacity, "total": self.total, "transitions_added": self.transitions_added,
                "episodes_added": self.episodes_added, "cursor": {str(k): v for k, v in self._cursor.items()},
                "spec": self.spec_signature()}
        arrays = self._held_arrays()
        for name, values in (extra or {}).items():
            if name in arrays or name == "meta" or len(values) != len(self):
                raise ValueError(f"replay save: extra array {name!r} clashes with a field or has {len(values)} rows, not {len(self)}")
        write_replay_file(path, meta, {**arrays, **(extra or {})})

    @classmethod
    def load(cls, path: str | Path, observation_space: spaces.Dict, action_shape: tuple[int, ...], capacity: int | None = None) -> ReplayStorage:
        meta, arrays = read_replay_file(path, spec_signature(observation_space, action_shape))
        store = cls(observation_space, action_shape, capacity or meta["capacity"])
        store._take_rows(arrays, {**meta, "cursor": list(meta["cursor"].items())}, source=f"replay file {path}")
        return store


def _one_row(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One observation as a run of one record."""
    return {key: np.asarray(value)[None] for key, value in obs.items()}
