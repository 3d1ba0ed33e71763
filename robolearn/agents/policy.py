"""An agent as a Policy for an env (evaluation, actors, deploy): keeps the frame stack it was trained with."""

from __future__ import annotations

from collections import deque

import numpy as np

from robolearn.agents.drq import DrQAgent


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
    from robolearn.agents.drq import AgentConfig
    from robolearn.checkpoint import load_policy_checkpoint, load_policy_for
    from robolearn.config import load_typed

    payload = load_policy_checkpoint(path, env.observation_space, env.action_space)
    cfg = load_typed(AgentConfig, payload["agent_config"], f"{path}: agent")
    # A frozen encoder is rebuilt from the checkpoint, which carries its weights: the file is not needed.
    agent = DrQAgent(env.observation_space, env.action_space, cfg, device=device, encoder_meta=payload.get("encoder_meta"))
    load_policy_for(agent, payload)  # load_agent_state, with the policy's inputs in the order the checkpoint recorded
    agent.eval()
    return AgentPolicy(agent, deterministic=deterministic)
