"""The kettle: a free body with a graspable handle bar on top, built from primitives."""

from __future__ import annotations

from dm_control import mjcf

from robolearn.task import KettleGeometry

RADIUS = 0.07
HALF_HEIGHT = 0.06
GEOMETRY = KettleGeometry(radius=RADIUS, bottom_offset=HALF_HEIGHT)
# The handle bar runs along the kettle's local x axis; a gripper closes across it (local y).
HANDLE_POS = (0.0, 0.0, HALF_HEIGHT + 0.07)
HANDLE_HALF = (0.05, 0.009, 0.009)
BODY_COLOUR = (0.75, 0.2, 0.15, 1.0)
HANDLE_COLOUR = (0.1, 0.1, 0.1, 1.0)
GRIP_FRICTION = [1.5, 0.02, 0.001]  # where the pads hold it: rubber on the handle
GRIP_GEOMS = ("handle", "handle_post_front", "handle_post_back")


def build_kettle() -> mjcf.RootElement:
    kettle = mjcf.RootElement(model="kettle")
    kettle.compiler.angle = "radian"
    body = kettle.worldbody.add("body", name="kettle")
    # The kettle's geoms take priority in their contacts, so their own friction is what the contacts use (MuJoCo
    # otherwise takes the larger of the two, and the counter's or the pads' would hide every change of the
    # kettle's: the friction randomisation scales these). The values are what the contacts had before: the
    # counter's 1.0 under the shell, the pads' 1.5 on the handle.
    kettle.default.geom.priority = 1
    # ~1 kg in all: an empty stovetop kettle.
    body.add("geom", name="shell", type="cylinder", size=[RADIUS, HALF_HEIGHT], mass=0.75, rgba=BODY_COLOUR, friction=[1.0, 0.005, 0.0001])
    body.add("geom", name="lid", type="cylinder", size=[0.035, 0.008], pos=[0, 0, HALF_HEIGHT + 0.008], mass=0.05, rgba=HANDLE_COLOUR)
    body.add("geom", name="spout", type="capsule", fromto=[0.05, 0, 0.0, 0.11, 0, 0.05], size=[0.014], mass=0.05, rgba=BODY_COLOUR)
    post_height = HANDLE_POS[2] - HANDLE_HALF[2] - HALF_HEIGHT
    for side, x in (("front", HANDLE_HALF[0] - 0.008), ("back", -HANDLE_HALF[0] + 0.008)):
        body.add(
            "geom", name=f"handle_post_{side}", type="box", size=[0.008, 0.008, post_height / 2],
            pos=[x, 0, HALF_HEIGHT + post_height / 2], mass=0.02, rgba=HANDLE_COLOUR, friction=GRIP_FRICTION,
        )
    body.add("geom", name="handle", type="box", size=list(HANDLE_HALF), pos=list(HANDLE_POS), mass=0.1, rgba=HANDLE_COLOUR, friction=GRIP_FRICTION, condim=4)
    body.add("site", name="handle", pos=list(HANDLE_POS), size=[0.005], group=4)
    return kettle
