"""Joint motion in closed form, shared by the simulated arms (the fake driver, the simulated UR controller):
exact over any interval, so a run on a VirtualClock repeats bit for bit whatever the step sizes."""

from __future__ import annotations

import numpy as np


def track_velocity(q: np.ndarray, dq: np.ndarray, target: np.ndarray, accel, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Each joint ramps toward its target speed at `accel` (per joint or one value), then holds it."""
    diff = target - dq
    t_reach = np.abs(diff) / accel
    t_ramp = np.minimum(t_reach, dt)
    a = np.sign(diff) * accel
    q_next = q + dq * t_ramp + 0.5 * a * t_ramp**2 + target * (dt - t_ramp)
    dq_next = np.where(t_reach <= dt, target, dq + a * dt)
    return q_next, dq_next


def damped_inertia(q: np.ndarray, dq: np.ndarray, tau: np.ndarray, inertia: np.ndarray, damping: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Torque on a damped, gravity-compensated inertia per joint: dq -> tau / b at rate b / m."""
    k = damping / inertia
    dq_inf = tau / damping
    decay = np.exp(-k * dt)
    q_next = q + dq_inf * dt + (dq - dq_inf) * (1.0 - decay) / k
    dq_next = dq_inf + (dq - dq_inf) * decay
    return q_next, dq_next
