"""What the safety layer records: one event per intervention or fault, and counters per kind."""

from __future__ import annotations

from typing import NamedTuple

# Counter names, one per kind of intervention; every one starts at zero so reports have a fixed shape.
COUNTERS = (
    "commands",  # commands offered to the layer (velocity, torque, gripper)
    "sent",  # commands that reached the driver
    "too_fast",  # refused: closer to the last command than the driver's command period (the last one stays in effect)
    "ignored_while_latched",
    "input_rejected",  # layer 1
    "clamped",  # layer 2
    "rate_limited",  # layer 3
    "overspeed_limited",  # layer 2, torque mode: measured speed over the limit, push along it removed
    "overspeed",  # layer 2, torque mode: far over the speed limit (fatal)
    "joint_tapered",  # layer 4
    "joint_limit_breach",
    "workspace_clipped",  # layer 5
    "workspace_breach",
    "deadline_misses",  # layer 6: a command later than one control period after the last one (not a fault: it stands)
    "watchdog_trips",  # layer 6
    "stale_state",
    "tracking_error",
    "driver_faults",
    "external_faults",  # cameras, loop, operator
    "latched",  # layer 7
    "resets",
    "reset_refused",
    "holds",
)


class SafetyEvent(NamedTuple):
    """Immutable, and a tuple: cheap to make on the command path (a frozen dataclass cost ~3 µs each)."""

    time: float  # monotonic (or virtual) seconds
    layer: str  # input | clamp | rate_limit | joint_limit | workspace | watchdog | state | driver | external | estop
    kind: str  # what happened, e.g. clamped, tapered, breach, tripped, latched, reset
    message: str
    fatal: bool  # True: latched the e-stop

    def as_dict(self) -> dict:
        return self._asdict()
