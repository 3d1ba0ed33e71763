"""Kettle-to-sink reward and success from poses (shared by sim and hardware)."""

from __future__ import annotations

import numpy as np
import pytest

from robolearn.config import TaskConfig
from robolearn.task import KettleGeometry, SinkGeometry, TaskState, compute_reward

SINK = SinkGeometry(centre=np.array([0.5, 0.3, -0.15]), half_size=(0.15, 0.15), depth=0.15)
KETTLE = KettleGeometry(radius=0.07, bottom_offset=0.06)
CFG = TaskConfig(reach_weight=0.5, success_bonus=10.0, max_settle_speed=0.05)
RESTING = np.array([0.5, 0.3, -0.15 + 0.06])


def state(kettle_pos, vel=(0, 0, 0), handle=None, tcp=None):
    kettle_pos = np.asarray(kettle_pos, float)
    handle = kettle_pos + [0, 0, 0.13] if handle is None else np.asarray(handle, float)
    tcp = handle if tcp is None else np.asarray(tcp, float)
    return TaskState(kettle_pos, np.asarray(vel, float), handle, tcp)


def test_resting_on_the_basin_floor_is_success_with_bonus():
    reward, terms, success = compute_reward(state(RESTING), SINK, KETTLE, CFG)
    assert success
    assert terms["kettle_to_sink"] == pytest.approx(0.0)
    assert terms["success_bonus"] == 10.0
    assert terms["reach_handle"] == 0.0
    assert reward == pytest.approx(10.0)


@pytest.mark.parametrize(
    "pos, vel",
    [
        (RESTING + [0, 0, 0.05], (0, 0, 0)),  # held 5 cm above the floor
        (RESTING, (0, 0, -0.2)),  # still moving
        (RESTING + [0.12, 0, 0], (0, 0, 0)),  # footprint over the basin's edge
        ([0.5, -0.2, 0.06], (0, 0, 0)),  # on the counter
    ],
    ids=["above-floor", "moving", "over-edge", "on-counter"],
)
def test_not_success(pos, vel):
    _, terms, success = compute_reward(state(pos, vel), SINK, KETTLE, CFG)
    assert not success
    assert terms["success_bonus"] == 0.0


def test_dense_terms_are_negative_distances():
    kettle = np.array([0.5, -0.2, 0.06])
    tcp = kettle + [0.1, 0, 0.33]  # 20 cm above the handle, 10 cm aside
    reward, terms, _ = compute_reward(state(kettle, tcp=tcp), SINK, KETTLE, CFG)
    assert terms["kettle_to_sink"] == pytest.approx(-np.linalg.norm(kettle - RESTING))
    assert terms["reach_handle"] == pytest.approx(-0.5 * np.hypot(0.1, 0.2))
    assert terms["fall_penalty"] == 0.0
    assert reward == pytest.approx(terms["kettle_to_sink"] + terms["reach_handle"])
