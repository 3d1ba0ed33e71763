"""Training checkpoints: written atomically, checked against the observation/action spec on load."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from robolearn.spec import spec_signature


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or made for a different observation/action spec."""


def acting_signature(observation_space: spaces.Dict, action_space: spaces.Box, critic_only_keys=()) -> dict:
    """The spec a policy is bound to: the observation keys it reads (not those only its critic saw)."""
    kept = spaces.Dict({k: s for k, s in observation_space.spaces.items() if k not in set(critic_only_keys)})
    return spec_signature(kept, action_space.shape, str(action_space.dtype))


def env_record(env_cfg) -> Any:
    """The env config as plain data, for a checkpoint."""
    if dataclasses.is_dataclass(env_cfg):
        return json_plain(dataclasses.asdict(env_cfg))
    return json_plain(env_cfg)


def json_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # enums (the control mode)


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


# -- starting a new run from a checkpoint: its agent config comes with it ----------------------------------
def checkpoint_agent_config(payload: dict, path: str | Path, observation_space: spaces.Dict, explicit: dict | None = None) -> dict:
    """The agent config a run starting from this checkpoint uses in an env with `observation_space`: the
    one the checkpoint was trained with (encoder, actor_only_keys, critic_only_keys, sizes: nothing retyped),
    with two adjustments and then the `explicit` keys (what the user overrode by name) on top:

    - a frozen pretrained encoder is read from the checkpoint itself, which carries its weights (the encoder
      file the run was made with need not exist where the checkpoint goes: a robot PC, a learner box);
    - an env without any of the critic-only keys (the sim's privileged state on an arm without a tracker):
      the critic reads what the actor reads (critic_only_keys=[] and actor_only_keys=[], docs/learner.md);
      the policy is the same network (its inputs are reordered on load: `load_policy_for`).

    Deploy's online actor and the learner's `learner.init_from` both use it, so they agree with each other
    and with the replay server on the observations sent."""
    saved = payload.get("agent_config")
    if not saved:
        raise CheckpointError(f"checkpoint {path} records no agent config (made before checkpoints carried it): "
                              "give the agent's settings on the command line")
    agent = dict(saved)
    if agent.get("encoder") == "pretrained":
        agent["encoder_weights"] = str(Path(path) / "checkpoint.pt" if Path(path).is_dir() else Path(path))
    critic_only = list(agent.get("critic_only_keys") or [])
    if critic_only and not set(critic_only) & set(observation_space.spaces):
        agent["critic_only_keys"], agent["actor_only_keys"] = [], []
    agent.update(explicit or {})
    return agent


def explicit_agent_overrides(task_overrides: list[str], agent_cfg) -> dict:
    """The agent keys a command line set by name (`agent.lr=...`), with their composed values; `agent=<group>`
    counts as every key. Hydra's override strings in, a dict out."""
    import dataclasses

    values = dataclasses.asdict(agent_cfg) if dataclasses.is_dataclass(agent_cfg) else dict(agent_cfg)
    chosen: dict = {}
    for override in task_overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key.split("@", 1)[0] == "agent":
            return values
        if key.startswith("agent."):
            name = key[len("agent."):].split(".", 1)[0]
            if name in values:
                chosen[name] = values[name]
    return chosen


def actor_input_keys(agent, payload: dict) -> list[str]:
    """The order of the vector keys a checkpoint's actor reads: recorded in it (`actor_keys`), or for older
    checkpoints as robolearn.agents.drq.DrQAgent ordered them (actor-only keys first, then the shared ones, in
    the then sorted order of the learning space's keys)."""
    if payload.get("actor_keys"):
        return list(payload["actor_keys"])
    agent_config = payload.get("agent_config") or {}
    vectors = sorted(k for k in agent.learning_space.spaces if k not in agent.image_keys)
    actor_only = set(agent_config.get("actor_only_keys") or [])
    critic_only = set(agent_config.get("critic_only_keys") or [])
    return [k for k in vectors if k in actor_only] + [k for k in vectors if k not in actor_only and k not in critic_only]


def load_policy_for(agent, payload: dict) -> bool:
    """A checkpoint's state into an agent built with `checkpoint_agent_config`: everything when the critic
    reads the same keys, else the policy only, its first layer's inputs reordered when the agent's actor
    reads the same keys in another order (a checkpoint made before the features came first in the learning
    space, loaded with another actor_only_keys). Returns whether the critic was loaded."""
    from robolearn.agents.weights import load_agent_state

    saved_order = actor_input_keys(agent, payload)
    if saved_order == agent.actor_keys:
        return load_agent_state(agent, payload)
    if sorted(saved_order) != sorted(agent.actor_keys):
        raise CheckpointError(f"the checkpoint's policy reads {saved_order}, this agent's reads {agent.actor_keys}")
    model = dict(payload["agent"]["model"])
    weight = model["actor.net.0.weight"]
    offset = weight.shape[1] - agent.actor_vector_dim  # the image trunk's features come first
    width = {k: int(np.prod(agent.learning_space[k].shape)) for k in saved_order}
    start, saved_cols = offset, {}
    for k in saved_order:
        saved_cols[k] = list(range(start, start + width[k]))
        start += width[k]
    columns = list(range(offset)) + [c for k in agent.actor_keys for c in saved_cols[k]]
    for name in ("actor.net.0.weight", "actor_average.net.0.weight"):
        if name in model:
            model[name] = model[name][:, columns]
    from robolearn.agents.weights import load_policy_weights

    load_policy_weights(agent, model)
    return False


def replay_server_overrides(path: str | Path) -> list[str]:
    """The Hydra overrides that make a replay server store what actors starting from this checkpoint send
    (with a frozen encoder: its features, computed by the encoder the checkpoint carries)."""
    payload = load_checkpoint(path)
    agent = checkpoint_agent_config(payload, path, spaces.Dict({}))
    weights = agent.get("encoder_weights")
    return [f"agent.encoder={agent['encoder']}", f"agent.encoder_weights={'null' if weights is None else weights}"]


if __name__ == "__main__":
    # python -m robolearn.checkpoint server-overrides <checkpoint>: what launch/learner_box.sh gives its replay server
    import sys

    if sys.argv[1:2] != ["server-overrides"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m robolearn.checkpoint server-overrides <checkpoint or run dir>")
    try:
        print("\n".join(replay_server_overrides(sys.argv[2])))
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}") from None


def run_agent_config(cfg, observation_space: spaces.Dict, task_overrides: list[str] | None = None):
    """The agent config of an asynchronous role (robolearn.roles.config.AsyncConfig `cfg`): with
    `learner.init_from` set, the checkpoint's (`checkpoint_agent_config`) with the agent keys the command
    line named on top; else the config's own. `task_overrides` default: this Hydra run's command line.
    Every role calls it with the same config, so learner, replay server and actors agree."""
    from robolearn.agents.drq import AgentConfig
    from robolearn.config import load_typed

    init_from = cfg.learner.init_from
    if not init_from:
        return cfg.agent
    if task_overrides is None:
        from hydra.core.hydra_config import HydraConfig

        task_overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    explicit = explicit_agent_overrides(task_overrides, cfg.agent)
    payload = load_checkpoint(init_from)
    return load_typed(AgentConfig, checkpoint_agent_config(payload, init_from, observation_space, explicit), f"{init_from}: agent")
