"""Agents: SAC with DrQ augmentation (pixels, multi-camera + proprioception) or state only."""

from robolearn.process.llvm_order import load_triton_first

load_triton_first()  # before any EGL context in this process (see robolearn.process.llvm_order)

from robolearn.agents.drq import AgentConfig, DrQAgent  # noqa: E402

__all__ = ["AgentConfig", "DrQAgent"]
