"""Pre-flight `policy latency` (when a checkpoint is given): the policy answers well inside the control
period, with the threads and warm-up it will act with (robolearn.agents.policy.prepare_for_control).

The env's own watchdog counts the policy's time: a policy whose p99 is above `policy.max_period_fraction`
of the period fails here, with its figures, before anything moves under it. Deploy measures before its
pre-flight (it refuses a slow policy even with preflight.run=false) and hands its figures in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hardware.preflight.report import FAIL, PASS
from robolearn.agents.policy import ActingConfig, load_checkpoint_policy, prepare_for_control, too_slow_message


@dataclass
class PolicySource:
    checkpoint: str | None = None  # measured here, loaded against the env's contract
    acting: ActingConfig = field(default_factory=ActingConfig)
    figures: dict | None = None  # already measured (deploy)


def check_policy_latency(pf, source: PolicySource) -> bool:
    figures = source.figures
    if figures is None:
        contract = pf.contract
        spaces = (contract.observation_space(), contract.action_space())
        policy = load_checkpoint_policy(None, source.checkpoint, spaces=spaces)
        figures = prepare_for_control(policy, spaces[0], 1.0 / contract.control_hz, source.acting, refuse=False)
    data = {k: v for k, v in figures.items() if k != "ok"}
    if not figures["ok"]:
        pf.add("policy latency", FAIL, too_slow_message(figures), **data)
        return False
    pf.add("policy latency", PASS, f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms of the {figures['period_ms']:.0f} ms period "
           f"(limit {figures['max_period_fraction'] * figures['period_ms']:.0f} ms; {figures['threads']} torch thread(s), "
           f"{figures['calls']} calls after {figures['warmup_calls']} warm-up)", **data)
    return True
