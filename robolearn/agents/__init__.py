"""Agents: SAC with DrQ augmentation (pixels, multi-camera + proprioception) or state only."""

from robolearn.agents.drq import AgentConfig, DrQAgent

__all__ = ["AgentConfig", "DrQAgent"]
