"""Kitchen counter with a sink basin recessed into it, walls, lights, distractor objects and the `front` camera.

Everything the visual randomisation changes at run time is declared here once: one procedural texture and
material per surface (sim/randomization/visual.py rewrites the texels), three lights (two on by default: the
scene as it was before randomisation), and distractor bodies kept below the floor until an episode places them.
"""

from __future__ import annotations

from dataclasses import dataclass

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
FLOOR_Z = -0.9
COUNTER_COLOUR = (0.55, 0.5, 0.45, 1.0)
BASIN_COLOUR = (0.7, 0.72, 0.75, 1.0)
FLOOR_COLOUR = (0.3, 0.32, 0.35, 1.0)
ROOM_WALL_COLOUR = (0.78, 0.76, 0.72, 1.0)
KETTLE_NOMINAL_XY = (0.5, -0.22)

SINK = SinkGeometry(
    centre=np.array([SINK_CENTRE_XY[0], SINK_CENTRE_XY[1], -SINK_DEPTH]), half_size=SINK_HALF, depth=SINK_DEPTH
)
SINK.centre.setflags(write=False)


FRONT_CAMERA_POS = (1.2, 0.04, 0.75)
FRONT_CAMERA_TARGET = (0.42, 0.04, 0.08)

# Surfaces whose texture and colour are randomised: name -> (base colour, texture repeats on its material).
TEXTURE_SIZE = 64
SURFACES = {
    "counter": (COUNTER_COLOUR, (2, 2)),
    "basin": (BASIN_COLOUR, (1, 1)),
    "floor": (FLOOR_COLOUR, (6, 6)),
    "walls": (ROOM_WALL_COLOUR, (3, 3)),
}

# The lights, in the order the randomisation switches them on (`count` 2 = top and side: the old scene).
LIGHTS = ("top", "side", "fill")

HIDDEN_Z = -5.0  # distractors not placed this episode wait here, below the floor and out of every view


@dataclass(frozen=True)
class Distractor:
    """A visual-only clutter object built from primitives; `radius` is its footprint for placement."""

    name: str
    radius: float
    geoms: tuple[dict, ...]


DISTRACTORS = (
    Distractor("cup", 0.045, ({"type": "cylinder", "size": [0.04, 0.05], "pos": [0, 0, 0.05]},
                              {"type": "box", "size": [0.006, 0.012, 0.025], "pos": [0.045, 0, 0.055]})),
    Distractor("bottle", 0.04, ({"type": "cylinder", "size": [0.035, 0.08], "pos": [0, 0, 0.08]},
                                {"type": "cylinder", "size": [0.014, 0.03], "pos": [0, 0, 0.19]})),
    Distractor("cutting_board", 0.14, ({"type": "box", "size": [0.13, 0.08, 0.008], "pos": [0, 0, 0.008]},)),
    Distractor("cereal_box", 0.09, ({"type": "box", "size": [0.035, 0.08, 0.12], "pos": [0, 0, 0.12]},)),
    Distractor("bowl", 0.08, ({"type": "cylinder", "size": [0.075, 0.025], "pos": [0, 0, 0.025]},)),
    Distractor("can", 0.035, ({"type": "cylinder", "size": [0.033, 0.06], "pos": [0, 0, 0.06]},)),
)
DISTRACTOR_COLOUR = (0.5, 0.5, 0.5, 1.0)


def _box(body, name: str, x: tuple[float, float], y: tuple[float, float], z: tuple[float, float], **attrs) -> None:
    body.add(
        "geom", name=name, type="box",
        size=[(x[1] - x[0]) / 2, (y[1] - y[0]) / 2, (z[1] - z[0]) / 2],
        pos=[(x[0] + x[1]) / 2, (y[0] + y[1]) / 2, (z[0] + z[1]) / 2], **attrs,
    )


def _add_surface_materials(kitchen: mjcf.RootElement) -> None:
    """One texture per surface; the material's white rgba lets the texels carry the colour."""
    for name, (colour, repeat) in SURFACES.items():
        dark = [0.85 * c for c in colour[:3]]
        # A gentle checker as the nominal texture; the randomisation replaces the texels.
        kitchen.asset.add("texture", name=name, type="2d", builtin="checker", rgb1=list(colour[:3]), rgb2=dark,
                          width=TEXTURE_SIZE, height=TEXTURE_SIZE)
        kitchen.asset.add("material", name=name, texture=name, texrepeat=list(repeat), texuniform=True, rgba=[1, 1, 1, 1])


def build_kitchen(walls: bool = True) -> mjcf.RootElement:
    kitchen = mjcf.RootElement(model="kitchen")
    kitchen.compiler.angle = "radian"
    world = kitchen.worldbody
    _add_surface_materials(kitchen)
    # The old floor looked like this grid; it keeps its texture in the nominal scene.
    kitchen.asset.find("texture", "floor").rgb1 = [0.3, 0.32, 0.35]
    kitchen.asset.find("texture", "floor").rgb2 = [0.25, 0.27, 0.3]
    # A plane is drawn as a grid of quads, one per `size[2]` metres: a coarse grid keeps it cheap.
    world.add("geom", name="floor", type="plane", size=[3, 3, 1.0], pos=[0, 0, FLOOR_Z], material="floor")
    # Lights: castshadow only matters while the shadow render flag is on (env.render.shadows or the episode's draw).
    world.add("light", name="top", pos=[0.4, 0.0, 2.0], dir=[0, 0, -1], directional=True, diffuse=[0.5, 0.5, 0.5], castshadow=True)
    world.add("light", name="side", pos=[1.5, -1.0, 1.5], dir=[-1, 0.6, -1], directional=True, diffuse=[0.25, 0.25, 0.25], castshadow=False)
    world.add("light", name="fill", pos=[1.0, 1.2, 1.5], dir=[-0.6, -1, -1], directional=True, diffuse=[0.3, 0.3, 0.3], castshadow=False, active=False)
    world.add("camera", name="front", pos=list(FRONT_CAMERA_POS), xyaxes=look_at_xyaxes(FRONT_CAMERA_POS, FRONT_CAMERA_TARGET), fovy=50)
    if walls:
        _add_room_walls(world)

    counter = world.add("body", name="counter")
    z_top = (-COUNTER_THICKNESS, 0.0)
    sx, sy = SINK_CENTRE_XY
    hx, hy = SINK_HALF
    hole_x, hole_y = (sx - hx, sx + hx), (sy - hy, sy + hy)
    # The counter top is four slabs around the sink's opening.
    # Plain colours in the nominal scene (as before randomisation); an episode may switch a surface to its material.
    top = {"rgba": COUNTER_COLOUR}
    _box(counter, "top_near", (COUNTER_X[0], hole_x[0]), COUNTER_Y, z_top, **top)
    _box(counter, "top_far", (hole_x[1], COUNTER_X[1]), COUNTER_Y, z_top, **top)
    _box(counter, "top_left", hole_x, (COUNTER_Y[0], hole_y[0]), z_top, **top)
    _box(counter, "top_right", hole_x, (hole_y[1], COUNTER_Y[1]), z_top, **top)
    # Basin: four walls and a floor hanging below the opening.
    z_basin = (-SINK_DEPTH, -COUNTER_THICKNESS)
    basin = {"rgba": BASIN_COLOUR}
    _box(counter, "basin_near", (hole_x[0] - WALL, hole_x[0]), (hole_y[0] - WALL, hole_y[1] + WALL), z_basin, **basin)
    _box(counter, "basin_far", (hole_x[1], hole_x[1] + WALL), (hole_y[0] - WALL, hole_y[1] + WALL), z_basin, **basin)
    _box(counter, "basin_left", hole_x, (hole_y[0] - WALL, hole_y[0]), z_basin, **basin)
    _box(counter, "basin_right", hole_x, (hole_y[1], hole_y[1] + WALL), z_basin, **basin)
    _box(counter, "basin_floor", (hole_x[0] - WALL, hole_x[1] + WALL), (hole_y[0] - WALL, hole_y[1] + WALL), (-SINK_DEPTH - WALL, -SINK_DEPTH), **basin)
    counter.add("site", name="robot_mount", pos=[0, 0, 0], size=[0.01], group=4)
    counter.add("site", name="sink", pos=list(SINK.centre), size=[0.01], group=4)
    _add_distractors(world)
    return kitchen


def _add_room_walls(world) -> None:
    """A back wall behind the robot and two side walls, so the front camera sees a room, not the void.

    Visual only (no contacts): the arm never reaches them and the physics stays as it was."""
    visual = {"rgba": ROOM_WALL_COLOUR, "contype": 0, "conaffinity": 0}
    x0, x1 = COUNTER_X[0] - 0.15, COUNTER_X[1] + 1.0
    y0, y1 = COUNTER_Y[0] - 0.35, COUNTER_Y[1] + 0.35
    z = (FLOOR_Z, 1.4)
    _box(world, "wall_back", (x0 - 0.02, x0), (y0, y1), z, **visual)
    _box(world, "wall_left", (x0, x1), (y0 - 0.02, y0), z, **visual)
    _box(world, "wall_right", (x0, x1), (y1, y1 + 0.02), z, **visual)


def _add_distractors(world) -> None:
    """Clutter bodies without joints, parked below the floor; an episode moves some onto the counter (body_pos).

    Visual only (contype/conaffinity 0): placed out of the kettle's path, they never touch the task's physics."""
    for d in DISTRACTORS:
        body = world.add("body", name=f"distractor_{d.name}", pos=[0, 0, HIDDEN_Z])
        for i, geom in enumerate(d.geoms):
            body.add("geom", name=f"distractor_{d.name}_{i}", rgba=DISTRACTOR_COLOUR, contype=0, conaffinity=0, mass=0.1, **geom)
