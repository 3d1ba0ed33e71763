"""Turns an agent into a Policy for an env: keeps the frame stack the agent was trained with."""

from __future__ import annotations

from collections import deque

import numpy as np

from robolearn.agents import DrQAgent


class FrameStacker:
    """Keeps the last K frames of each image key; the first frame of an episode fills the stack."""

    def __init__(self, image_keys: list[str], frames: int):
        self.image_keys, self.frames = list(image_keys), frames
        self._history: dict[str, deque] = {}

    def reset(self) -> None:
        self._history = {}

    def __call__(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(obs)
        for key in self.image_keys:
            history = self._history.get(key)
            if history is None:
                history = self._history[key] = deque([obs[key]] * self.frames, maxlen=self.frames)
            else:
                history.append(obs[key])
            out[key] = np.stack(history)  # (K, H, W, C), oldest first, as the replay stacks them
        return out


class AgentPolicy:
    """The Policy interface over a DrQAgent: stochastic while collecting, the mean action for evaluation."""

    def __init__(self, agent: DrQAgent, deterministic: bool = True):
        self.agent, self.deterministic = agent, deterministic
        self.stacker = FrameStacker(agent.image_keys, agent.cfg.frame_stack)

    def reset(self) -> None:
        self.stacker.reset()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.agent.act(self.stacker(obs), deterministic=self.deterministic)


def load_checkpoint_policy(env, path: str, deterministic: bool = True, device: str = "cpu") -> AgentPolicy:
    """A trained agent from a run directory or checkpoint file, checked against this env's spec.

    Used by `python -m robolearn.eval policy=checkpoint policy.path=...` and by deploy.
    """
    from omegaconf import OmegaConf

    from robolearn.agents import AgentConfig
    from robolearn.checkpoint import load_policy_checkpoint

    payload = load_policy_checkpoint(path, env.observation_space, env.action_space)
    cfg = AgentConfig(**OmegaConf.to_container(OmegaConf.create(payload["agent_config"])))
    # A frozen encoder is rebuilt from the checkpoint, which carries its weights: the file is not needed.
    agent = DrQAgent(env.observation_space, env.action_space, cfg, device=device, encoder_meta=payload.get("encoder_meta"))
    load_agent_state(agent, payload)
    agent.eval()
    return AgentPolicy(agent, deterministic=deterministic)


ACTING_MODULES = ("encoders.", "actor.")  # what choosing an action needs: no critics, no optimisers
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
