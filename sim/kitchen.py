"""Kitchen counter with a sink basin recessed into it, lighting and the fixed `front` camera."""

from __future__ import annotations

import numpy as np
from dm_control import mjcf

from robolearn.task import SinkGeometry
from sim.geometry import look_at_xyaxes

COUNTER_THICKNESS = 0.04
COUNTER_X = (-0.3, 0.85)  # counter top extent in the robot base frame (m); the top is at z = 0
COUNTER_Y = (-0.6, 0.65)
SINK_CENTRE_XY = (0.5, 0.3)
SINK_HALF = (0.15, 0.15)  # basin interior half extents
SINK_DEPTH = 0.15
WALL = 0.01
COUNTER_COLOUR = (0.55, 0.5, 0.45, 1.0)
BASIN_COLOUR = (0.7, 0.72, 0.75, 1.0)
KETTLE_NOMINAL_XY = (0.5, -0.22)

SINK = SinkGeometry(
    centre=np.array([SINK_CENTRE_XY[0], SINK_CENTRE_XY[1], -SINK_DEPTH]), half_size=SINK_HALF, depth=SINK_DEPTH
)
SINK.centre.setflags(write=False)


FRONT_CAMERA_POS = (1.2, 0.04, 0.75)
FRONT_CAMERA_TARGET = (0.42, 0.04, 0.08)


def _box(body, name: str, x: tuple[float, float], y: tuple[float, float], z: tuple[float, float], rgba) -> None:
    body.add(
        "geom", name=name, type="box", rgba=rgba,
        size=[(x[1] - x[0]) / 2, (y[1] - y[0]) / 2, (z[1] - z[0]) / 2],
        pos=[(x[0] + x[1]) / 2, (y[0] + y[1]) / 2, (z[0] + z[1]) / 2],
    )


def build_kitchen(shadows: bool) -> mjcf.RootElement:
    kitchen = mjcf.RootElement(model="kitchen")
    kitchen.compiler.angle = "radian"
    world = kitchen.worldbody
    kitchen.asset.add("texture", name="grid", type="2d", builtin="checker", rgb1=[0.3, 0.32, 0.35], rgb2=[0.25, 0.27, 0.3], width=64, height=64)
    kitchen.asset.add("material", name="floor", texture="grid", texrepeat=[6, 6])
    # A plane is drawn as a grid of quads, one per `size[2]` metres: a coarse grid keeps it cheap.
    world.add("geom", name="floor", type="plane", size=[3, 3, 1.0], pos=[0, 0, -0.9], material="floor")
    world.add("light", name="top", pos=[0.4, 0.0, 2.0], dir=[0, 0, -1], directional=True, diffuse=[0.5, 0.5, 0.5], castshadow=shadows)
    world.add("light", name="side", pos=[1.5, -1.0, 1.5], dir=[-1, 0.6, -1], directional=True, diffuse=[0.25, 0.25, 0.25], castshadow=False)
    world.add("camera", name="front", pos=list(FRONT_CAMERA_POS), xyaxes=look_at_xyaxes(FRONT_CAMERA_POS, FRONT_CAMERA_TARGET), fovy=50)

    counter = world.add("body", name="counter")
    z_top = (-COUNTER_THICKNESS, 0.0)
    sx, sy = SINK_CENTRE_XY
    hx, hy = SINK_HALF
    hole_x, hole_y = (sx - hx, sx + hx), (sy - hy, sy + hy)
    # The counter top is four slabs around the sink's opening.
    _box(counter, "top_near", (COUNTER_X[0], hole_x[0]), COUNTER_Y, z_top, COUNTER_COLOUR)
    _box(counter, "top_far", (hole_x[1], COUNTER_X[1]), COUNTER_Y, z_top, COUNTER_COLOUR)
    _box(counter, "top_left", hole_x, (COUNTER_Y[0], hole_y[0]), z_top, COUNTER_COLOUR)
    _box(counter, "top_right", hole_x, (hole_y[1], COUNTER_Y[1]), z_top, COUNTER_COLOUR)
    # Basin: four walls and a floor hanging below the opening.
    z_basin = (-SINK_DEPTH, -COUNTER_THICKNESS)
    _box(counter, "basin_near", (hole_x[0] - WALL, hole_x[0]), (hole_y[0] - WALL, hole_y[1] + WALL), z_basin, BASIN_COLOUR)
    _box(counter, "basin_far", (hole_x[1], hole_x[1] + WALL), (hole_y[0] - WALL, hole_y[1] + WALL), z_basin, BASIN_COLOUR)
    _box(counter, "basin_left", hole_x, (hole_y[0] - WALL, hole_y[0]), z_basin, BASIN_COLOUR)
    _box(counter, "basin_right", hole_x, (hole_y[1], hole_y[1] + WALL), z_basin, BASIN_COLOUR)
    _box(counter, "basin_floor", (hole_x[0] - WALL, hole_x[1] + WALL), (hole_y[0] - WALL, hole_y[1] + WALL), (-SINK_DEPTH - WALL, -SINK_DEPTH), BASIN_COLOUR)
    counter.add("site", name="robot_mount", pos=[0, 0, 0], size=[0.01], group=4)
    counter.add("site", name="sink", pos=list(SINK.centre), size=[0.01], group=4)
    return kitchen
