"""A sampled batch of n-step transitions, as the learner consumes it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Batch:
    obs: dict[str, np.ndarray]  # images (B, frames, H, W, 3) uint8; vectors (B, D) float32
    action: np.ndarray  # (B, A) float32
    reward: np.ndarray  # (B,) float32: n-step discounted sum
    discount: np.ndarray  # (B,) float32: gamma^m, 0 where the episode terminated within the n steps
    next_obs: dict[str, np.ndarray]
    # (B,) bool: rows drawn from the demo store (the actor's demo-filtered BC term reads it); None: none known
    demo: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.action)


def concat_batches(parts: list[Batch]) -> Batch:
    def cat(dicts):
        return {k: np.concatenate([d[k] for d in dicts]) for k in dicts[0]}

    return Batch(
        obs=cat([p.obs for p in parts]),
        action=np.concatenate([p.action for p in parts]),
        reward=np.concatenate([p.reward for p in parts]),
        discount=np.concatenate([p.discount for p in parts]),
        next_obs=cat([p.next_obs for p in parts]),
        demo=None if all(p.demo is None for p in parts) else np.concatenate(
            [np.zeros(len(p), bool) if p.demo is None else p.demo for p in parts]),
    )
