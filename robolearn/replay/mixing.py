"""Mixes a demo store into every batch at a fixed ratio (RLPD's symmetric sampling: 50/50 by default)."""

from __future__ import annotations

import numpy as np

from robolearn.replay.batch import Batch, concat_batches
from robolearn.replay.storage import ReplayStorage


class MixedSampler:
    """Every batch has round(demo_ratio * batch_size) demo transitions and the rest from online data."""

    def __init__(self, online: ReplayStorage, demos: ReplayStorage | None, demo_ratio: float = 0.5):
        if not 0.0 <= demo_ratio <= 1.0:
            raise ValueError(f"demo_ratio must be in [0, 1], got {demo_ratio}")
        self.online, self.demos = online, demos
        self.demo_ratio = demo_ratio if demos is not None and demos.num_transitions() > 0 else 0.0

    def demo_count(self, batch_size: int) -> int:
        count = int(round(self.demo_ratio * batch_size))
        if self.online.num_transitions() == 0:
            return batch_size  # before any online data, demos only
        return count

    def sample(self, batch_size: int, rng: np.random.Generator, **kwargs) -> Batch:
        return self.gather(self.draw(batch_size, rng), **kwargs)

    def draw(self, batch_size: int, rng: np.random.Generator, skip_oldest: int = 0,
             skip_oldest_demos: int = 0) -> list[tuple[ReplayStorage, np.ndarray]]:
        """Which rows of which store make the batch (cheap: the replay server does this under its lock).
        The skips are per store (see ReplayStorage.sample_starts): each is a margin in that store's rows."""
        n_demo = self.demo_count(batch_size) if self.demo_ratio > 0 else 0
        draws = []
        if n_demo:
            draws.append((self.demos, self.demos.sample_starts(n_demo, rng, skip_oldest_demos)))
        if batch_size - n_demo:
            draws.append((self.online, self.online.sample_starts(batch_size - n_demo, rng, skip_oldest)))
        return draws

    def gather(self, draws: list[tuple[ReplayStorage, np.ndarray]], **kwargs) -> Batch:
        """The drawn rows as one batch, its demo rows flagged (`Batch.demo`)."""
        parts = []
        for store, starts in draws:
            part = store.gather(starts, **kwargs)
            part.demo = np.full(len(part), store is self.demos and self.demos is not None)
            parts.append(part)
        return parts[0] if len(parts) == 1 else concat_batches(parts)
