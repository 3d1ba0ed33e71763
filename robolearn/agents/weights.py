"""What of an agent's state is needed to act, and moving it: checkpoints into agents, the learner's
broadcast out, an actor's copy in."""

from __future__ import annotations

import numpy as np

from robolearn.agents.drq import DrQAgent

# What choosing an action needs: no critics, no optimisers (the actor's weight average where the agent keeps one).
ACTING_MODULES = ("encoders.", "actor.", "actor_average.")
FROZEN_MODULES = ("frozen_encoder.",)  # also needed to act, but never changes: actors load it from its file


def load_agent_state(agent: DrQAgent, payload: dict) -> bool:
    """A checkpoint's whole training state, or only its policy when its critic read keys this agent's
    does not (the sim's privileged state on an arm without a tracker: the critic's shapes differ, and
    acting needs none of it). Returns whether the critic and optimisers were loaded too."""
    saved_critic_only = list((payload.get("agent_config") or {}).get("critic_only_keys") or [])
    if saved_critic_only == agent.critic_only_keys:
        agent.load_training_state(payload["agent"])
        return True
    load_policy_weights(agent, payload["agent"]["model"])
    return False


def load_policy_weights(agent: DrQAgent, model_state: dict) -> None:
    """Load only what acting needs from a checkpoint's model state."""
    model_state = agent.with_policy_average(model_state)
    wanted = {k: v for k, v in model_state.items() if k.startswith(ACTING_MODULES + FROZEN_MODULES)}
    missing = [k for k in agent.state_dict() if k.startswith(ACTING_MODULES + FROZEN_MODULES) and k not in wanted]
    if missing:
        raise ValueError(f"checkpoint lacks acting weights {missing[:5]}")
    agent.load_state_dict(wanted, strict=False)


def acting_weights(agent: DrQAgent) -> dict[str, np.ndarray]:
    """The acting networks' parameters as numpy arrays (what the learner broadcasts to actors)."""
    # A copy: the learner keeps training while the network thread sends these.
    return {k: v.detach().to("cpu", copy=True).contiguous().numpy() for k, v in agent.state_dict().items() if k.startswith(ACTING_MODULES)}


def load_acting_weights(agent: DrQAgent, arrays: dict[str, np.ndarray]) -> None:
    """Copy broadcast weights into an actor's agent; names and shapes must match exactly."""
    import torch

    own = {k: v for k, v in agent.state_dict().items() if k.startswith(ACTING_MODULES)}
    if set(arrays) != set(own):
        raise ValueError(f"weights do not fit this agent: missing {sorted(set(own) - set(arrays))[:5]}, "
                         f"unexpected {sorted(set(arrays) - set(own))[:5]}")
    with torch.no_grad():
        for name, tensor in own.items():
            array = np.asarray(arrays[name])
            value = torch.from_numpy(array if array.flags.writeable else array.copy())  # wire buffers are read-only
            if value.shape != tensor.shape:
                raise ValueError(f"weights {name!r}: shape {tuple(value.shape)}, this agent has {tuple(tensor.shape)}")
            tensor.copy_(value)
