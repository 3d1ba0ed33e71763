"""Kettle-to-sink reward and success, computed from poses.

Shared by the sim (poses from MuJoCo) and the real-robot env (poses from a marker tracker and forward
kinematics), so both score an episode the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robolearn.config import TaskConfig


@dataclass(frozen=True)
class SinkGeometry:
    """Basin interior, in the robot base frame. `centre` is the centre of the basin floor."""

    centre: np.ndarray
    half_size: tuple[float, float]  # interior half extents in x and y (m)
    depth: float  # from counter top to basin floor (m)

    @property
    def rim_height(self) -> float:
        return float(self.centre[2] + self.depth)


@dataclass(frozen=True)
class KettleGeometry:
    radius: float  # body radius (m)
    bottom_offset: float  # from the kettle's frame origin down to its base (m)


@dataclass(frozen=True)
class TaskState:
    kettle_pos: np.ndarray  # kettle frame origin
    kettle_lin_vel: np.ndarray
    handle_pos: np.ndarray
    tcp_pos: np.ndarray


def kettle_on_basin_floor(state: TaskState, sink: SinkGeometry, kettle: KettleGeometry, tol: float = 0.01) -> bool:
    """The kettle's footprint lies within the basin and its base is on (within `tol` of) the basin floor."""
    offset = np.abs(state.kettle_pos[:2] - sink.centre[:2])
    inside = np.all(offset <= np.asarray(sink.half_size) - 0.5 * kettle.radius)
    base_height = state.kettle_pos[2] - kettle.bottom_offset - sink.centre[2]
    return bool(inside and -tol < base_height < tol)


def compute_reward(
    state: TaskState, sink: SinkGeometry, kettle: KettleGeometry, cfg: TaskConfig, kettle_fell: bool = False
) -> tuple[float, dict[str, float], bool]:
    """Return (reward, reward terms, success).

    Every step costs (the terms are negative distances), so an episode that ends early would look
    attractive: ending it by knocking the kettle off the counter costs `fall_penalty` instead.
    """
    target = sink.centre + np.array([0.0, 0.0, kettle.bottom_offset])
    kettle_to_sink = float(np.linalg.norm(state.kettle_pos - target))
    tcp_to_handle = float(np.linalg.norm(state.tcp_pos - state.handle_pos))
    speed = float(np.linalg.norm(state.kettle_lin_vel))
    success = kettle_on_basin_floor(state, sink, kettle) and speed < cfg.max_settle_speed
    terms = {
        "kettle_to_sink": -kettle_to_sink,
        # Shaping toward the handle until the task is done; afterwards the arm may leave.
        "reach_handle": 0.0 if success else -cfg.reach_weight * tcp_to_handle,
        "success_bonus": cfg.success_bonus if success else 0.0,
        "fall_penalty": -cfg.fall_penalty if kettle_fell else 0.0,
    }
    return sum(terms.values()), terms, success
