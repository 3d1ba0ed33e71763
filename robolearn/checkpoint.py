"""Training checkpoints: written atomically, checked against the observation/action spec on load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from gymnasium import spaces

from robolearn.spec import spec_signature


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or made for a different observation/action spec."""


def acting_signature(observation_space: spaces.Dict, action_space: spaces.Box, critic_only_keys=()) -> dict:
    """The spec a policy is bound to: the observation keys it reads (not those only its critic saw)."""
    kept = spaces.Dict({k: s for k, s in observation_space.spaces.items() if k not in set(critic_only_keys)})
    return spec_signature(kept, action_space.shape, str(action_space.dtype))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file, fsync, rename: a crash mid-write keeps the previous checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, expected_signature: dict | None = None) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is unreadable: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or "spec" not in payload:
        raise CheckpointError(f"checkpoint {path} is not a robolearn checkpoint")
    if expected_signature is not None:
        check_signature(payload, expected_signature, path)
    return payload


def check_signature(payload: dict, expected_signature: dict, path) -> None:
    if payload["spec"] != expected_signature:
        raise CheckpointError(
            f"checkpoint {path} was trained for a different observation/action spec:\n"
            f"  checkpoint: {payload['spec']}\n  this env:   {expected_signature}"
        )


def load_policy_checkpoint(path: str | Path, observation_space: spaces.Dict, action_space: spaces.Box) -> dict[str, Any]:
    """A checkpoint to act with in an env: checked against the keys its policy reads in that env."""
    payload = load_checkpoint(path)
    critic_only = (payload.get("agent_config") or {}).get("critic_only_keys") or []
    check_signature(payload, acting_signature(observation_space, action_space, critic_only), path)
    return payload
