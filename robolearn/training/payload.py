"""The checkpoint payload every training role writes (checkpoint.pt, eval snapshots, best.pt): one format,
loadable by `robolearn.eval policy=checkpoint`, deploy and a resumed run, whichever runner wrote it."""

from __future__ import annotations

import dataclasses
from typing import Any

from robolearn.checkpoint import env_record


def agent_payload(agent, agent_cfg, env_cfg, signature: dict, counters: dict[str, Any], **extra) -> dict:
    """The agent (networks, optimisers, alpha), what it was made with and the run's counters; `extra` adds
    runner-specific entries (rng states, last/best evaluation, the training wall-clock of a snapshot)."""
    return {
        "spec": signature,
        "agent": agent.training_state(),
        "agent_config": dataclasses.asdict(agent_cfg),
        "actor_keys": list(agent.actor_keys),  # the order of the policy's vector inputs
        "env_config": env_record(env_cfg),  # what the run trained on (online fine-tuning takes the agent from here)
        "encoder_meta": None if agent.frozen is None else agent.frozen.meta,
        "counters": dict(counters),
        **extra,
    }
