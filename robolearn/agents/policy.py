"""An agent as a Policy for an env (evaluation, actors, deploy): keeps the frame stack it was trained with.

On an arm the policy must answer well inside the control period, every step: the watchdog counts the
policy's time. `prepare_for_control` sets torch's thread count (one by default: beside another busy
process, torch's default threads made a small policy's first calls take 113-140 ms against a 100 ms
period), warms the policy up on a zero observation (the first calls allocate and pick kernels), and
measures its latency; `LatencyMeter` keeps measuring it while the arm moves; `PolicyTooSlow` refuses a
policy whose p99 is above a share of the control period, naming the figure, before anything moves.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

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


def load_checkpoint_policy(env, path: str, deterministic: bool = True, device: str = "cpu", *, spaces=None) -> AgentPolicy:
    """A trained agent from a run directory or checkpoint file, checked against this env's spec.
    `spaces`: (observation_space, action_space) instead of an env's (a policy loaded before any env exists).

    Used by `python -m robolearn.eval policy=checkpoint policy.path=...` and by deploy.
    """
    from robolearn.agents.drq import AgentConfig
    from robolearn.checkpoint import load_policy_checkpoint, load_policy_for
    from robolearn.config import load_typed

    observation_space, action_space = spaces if spaces is not None else (env.observation_space, env.action_space)
    payload = load_policy_checkpoint(path, observation_space, action_space)
    cfg = load_typed(AgentConfig, payload["agent_config"], f"{path}: agent")
    # A frozen encoder is rebuilt from the checkpoint, which carries its weights: the file is not needed.
    agent = DrQAgent(observation_space, action_space, cfg, device=device, encoder_meta=payload.get("encoder_meta"))
    load_policy_for(agent, payload)  # load_agent_state, with the policy's inputs in the order the checkpoint recorded
    agent.eval()
    return AgentPolicy(agent, deterministic=deterministic)


# -- acting on an arm: threads, warm-up, latency -----------------------------------------------------------
@dataclass
class ActingConfig:
    """How a policy is prepared to act on an arm (the `policy` node of deploy and pre-flight; the actor's
    `actor.policy_threads` and `actor.warmup_calls`)."""

    threads: int = 1  # torch threads while acting (0: torch's default, one per core)
    warmup_calls: int = 3  # act() calls on a zero observation before the first step
    latency_calls: int = 20  # timed act() calls after the warm-up: the figure checked against the period
    max_period_fraction: float = 0.5  # refuse a policy whose p99 latency is above this share of the control period

    def __post_init__(self) -> None:
        from robolearn.config import check

        check(self.threads >= 0, "policy.threads", self.threads, "must be >= 0 (0: torch's default)")
        check(self.warmup_calls >= 0, "policy.warmup_calls", self.warmup_calls, "must be >= 0")
        check(self.latency_calls >= 1, "policy.latency_calls", self.latency_calls, "must be at least 1")
        check(0 < self.max_period_fraction <= 1, "policy.max_period_fraction", self.max_period_fraction, "must be in (0, 1]")


class PolicyTooSlow(RuntimeError):
    """The policy's latency leaves too little of the control period: refused before the arm moves."""


def set_acting_threads(threads: int) -> int:
    """torch's intra-op threads for acting (0 leaves torch's default); returns the count in force."""
    import torch

    if threads > 0:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def zero_observation(space) -> dict[str, np.ndarray]:
    """An observation of `space` (a gymnasium Dict) with every array zero: what a warm-up acts on."""
    return {k: np.zeros(s.shape, dtype=s.dtype) for k, s in space.spaces.items()}


class LatencyMeter:
    """Durations of the policy's calls (seconds on `now`, any monotonic clock), summarised against a period."""

    def __init__(self, now: Callable[[], float] = time.perf_counter, keep: int = 100_000):
        self.now = now
        self.samples: deque[float] = deque(maxlen=keep)

    def time(self, fn: Callable, *args):
        start = self.now()
        try:
            return fn(*args)
        finally:
            self.samples.append(self.now() - start)

    def summary(self, period_s: float | None = None) -> dict:
        """{calls, p50_ms, p99_ms, max_ms} and, given the control period, its share and the calls over it."""
        if not self.samples:
            return {"calls": 0}
        ms = np.asarray(self.samples) * 1000.0
        out = {"calls": int(len(ms)), "p50_ms": round(float(np.percentile(ms, 50)), 2),
               "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2)}
        if period_s:
            out["period_ms"] = round(period_s * 1000.0, 2)
            out["p99_share_of_period"] = round(out["p99_ms"] / (period_s * 1000.0), 3)
            out["calls_over_period"] = int(np.sum(ms > period_s * 1000.0))
        return out


class TimedPolicy:
    """A policy whose every act() is timed (`meter`), for the report of a run on an arm."""

    def __init__(self, policy, meter: LatencyMeter):
        self.policy, self.meter = policy, meter

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs):
        return self.meter.time(self.policy.act, obs)

    def __getattr__(self, name):  # intervening, quit, ... of a wrapped InterventionPolicy
        return getattr(self.policy, name)


def prepare_for_control(policy, observation_space, period_s: float, cfg: ActingConfig | None = None, *,
                        now: Callable[[], float] = time.perf_counter, act: Callable | None = None, refuse: bool = True) -> dict:
    """Set the acting threads, warm the policy up on a zero observation, time `cfg.latency_calls` more calls,
    and return the figures (p50/p99 against `period_s`, threads). `act`: what one control step computes
    (default `policy.act`; an actor also turns images into features first). With `refuse`, a p99 above
    `cfg.max_period_fraction` of the period raises PolicyTooSlow naming both figures. The policy is reset
    afterwards (its frame stack forgets the zero observations)."""
    cfg = cfg or ActingConfig()
    threads = set_acting_threads(cfg.threads)
    act = act or policy.act
    obs = zero_observation(observation_space)
    policy.reset()
    for _ in range(cfg.warmup_calls):
        act(obs)
    meter = LatencyMeter(now)
    for _ in range(cfg.latency_calls):
        meter.time(act, obs)
    policy.reset()
    figures = {**meter.summary(period_s), "threads": threads, "warmup_calls": cfg.warmup_calls,
               "max_period_fraction": cfg.max_period_fraction}
    figures["ok"] = figures["p99_ms"] <= cfg.max_period_fraction * period_s * 1000.0
    if refuse and not figures["ok"]:
        raise PolicyTooSlow(too_slow_message(figures))
    return figures


def too_slow_message(figures: dict) -> str:
    return (f"policy too slow for the control rate: p99 latency {figures['p99_ms']:.1f} ms (p50 {figures['p50_ms']:.1f} ms, "
            f"{figures['calls']} calls, {figures['threads']} torch thread(s)) is above {figures['max_period_fraction']:g} "
            f"of the {figures['period_ms']:.0f} ms control period ({figures['max_period_fraction'] * figures['period_ms']:.0f} ms); "
            "free the CPU, use fewer policy threads, a smaller policy or a lower control rate")
