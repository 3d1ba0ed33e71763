"""Visual randomisation: materials and textures, lighting and shadows, camera pose and field of view, distractors.

Every value is drawn around the compiled model's own (the nominal scene, with env.cameras' poses applied), and
`apply(None)` puts that nominal scene back exactly. The four concerns draw from streams of their own, split
off the part's stream in a fixed order, so switching one off leaves the others' draws unchanged.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from robolearn.config import RandomizationConfig
from sim import kettle as kettle_entity
from sim.kitchen import (COUNTER_X, COUNTER_Y, DISTRACTORS, HIDDEN_Z, KETTLE_NOMINAL_XY, LIGHTS, SINK_CENTRE_XY,
                         SINK_HALF, SURFACES)
from sim.randomization.textures import POOLS
from sim.scene import Scene

SURFACE_GEOMS = {  # which geoms wear each surface's texture or colour
    "counter": ("top_near", "top_far", "top_left", "top_right"),
    "basin": ("basin_near", "basin_far", "basin_left", "basin_right", "basin_floor"),
    "floor": ("floor",),
    "walls": ("wall_back", "wall_left", "wall_right"),
}
# Keep-out for distractors (m): clearance from the kettle's path (start area -> sink), and around the robot base.
PATH_CLEARANCE = 0.15
ROBOT_ZONE = ((COUNTER_X[0], 0.35), (-0.3, 0.3))  # in front of and around the base: the arm sweeps through it
# The strip between the front camera and the kettle/sink: clutter there would hide the task from view.
CAMERA_STRIP = ((0.6, COUNTER_X[1]), (-0.45, 0.5))
EDGE = 0.02


class VisualRandomizer:
    """Remembers the nominal model values and perturbs them around those on every reset."""

    # The model arrays this part writes: the sim benchmark's ceiling copies them to render the same scene.
    MODEL_FIELDS = ("geom_rgba", "geom_matid", "tex_data", "light_active", "light_diffuse", "light_dir",
                    "cam_pos", "cam_quat", "cam_fovy", "body_pos", "body_quat")

    def __init__(self, scene: Scene, cfg: RandomizationConfig):
        self.scene, self.cfg = scene, cfg
        m = scene.model
        self._nominal = {name: getattr(m, name).copy() for name in self.MODEL_FIELDS}
        self.surfaces = {
            name: (_ids(m, mujoco.mjtObj.mjOBJ_GEOM, geoms), _id(m, mujoco.mjtObj.mjOBJ_TEXTURE, name),
                   _id(m, mujoco.mjtObj.mjOBJ_MATERIAL, name))
            for name, geoms in SURFACE_GEOMS.items()
            if name != "walls" or mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, geoms[0]) >= 0  # env.room_walls=false
        }
        self.lights = _ids(m, mujoco.mjtObj.mjOBJ_LIGHT, LIGHTS)
        self.distractor_bodies = _ids(m, mujoco.mjtObj.mjOBJ_BODY, [f"distractor_{d.name}" for d in DISTRACTORS])
        self.distractor_geoms = [np.flatnonzero(m.geom_bodyid == b) for b in self.distractor_bodies]
        self.shadows = False
        # Bumped whenever tex_data changes: renderers made earlier must re-upload (sim/rendering.py).
        self.textures_version = 0
        self._textures_nominal = True
        self.drawn: dict[str, Any] = {}

    def apply(self, rng: np.random.Generator | None) -> None:
        """None: the nominal scene."""
        m, cfg = self.scene.model, self.cfg
        for name in self.MODEL_FIELDS:
            if name != "tex_data":
                getattr(m, name)[:] = self._nominal[name]
        if not self._textures_nominal:
            m.tex_data[:] = self._nominal["tex_data"]
            self._textures_nominal, self.textures_version = True, self.textures_version + 1
        self.shadows = False
        self.drawn = {}
        if rng is None:
            return
        materials, lighting, camera, distractors = (np.random.default_rng(s) for s in rng.integers(2**63, size=4))
        if cfg.materials.enabled:
            self._materials(materials)
        if cfg.lighting.enabled:
            self._lighting(lighting)
        self._camera(camera)
        self._distractors(distractors)

    # -- materials -----------------------------------------------------------------------------------
    def _materials(self, rng: np.random.Generator) -> None:
        m, cfg = self.scene.model, self.cfg.materials
        pool = POOLS[cfg.pool]
        families = sorted(pool)
        # The kettle keeps its look (red body, dark handle) under one smaller shift: it stays one object. Drawn
        # first, so the surfaces' draws (how many depend on the texture keys) never change the kettle's colour.
        k = self.scene.kettle_geoms
        kettle_shift = rng.uniform(-cfg.kettle_colour_jitter, cfg.kettle_colour_jitter, size=3)
        m.geom_rgba[k, :3] = np.clip(self._nominal["geom_rgba"][k, :3] + kettle_shift, 0.0, 1.0)
        for name, (geoms, tex, mat) in self.surfaces.items():
            base = np.asarray(SURFACES[name][0][:3])
            colour = np.clip(base + rng.uniform(-cfg.colour_jitter, cfg.colour_jitter, size=3), 0.0, 1.0)
            if rng.random() < cfg.texture_probability:
                family = families[int(rng.integers(len(families)))]
                # A second colour darker or lighter than the first, so the pattern shows on any base.
                second = np.clip(colour * rng.uniform(0.45, 0.85) + rng.uniform(-0.1, 0.1, size=3), 0.0, 1.0)
                if rng.random() < 0.5:
                    colour, second = second, colour
                size = m.tex_height[tex]
                start = m.tex_adr[tex]
                m.tex_data[start : start + size * m.tex_width[tex] * 3] = pool[family](rng, size, colour, second).ravel()
                self._textures_nominal = False
                m.geom_matid[geoms] = mat
                m.geom_rgba[geoms] = 1.0  # the renderer multiplies texels by the geom's rgba: white keeps the texels' colour
                self.drawn[f"texture_{name}"] = family
            else:  # the surface's nominal look (the floor keeps its grid), recoloured
                m.geom_matid[geoms] = self._nominal["geom_matid"][geoms]
                m.geom_rgba[geoms, :3] = colour
                self.drawn[f"texture_{name}"] = "plain"
        if not self._textures_nominal:
            self.textures_version += 1

    # -- lighting ------------------------------------------------------------------------------------
    def _lighting(self, rng: np.random.Generator) -> None:
        m, cfg = self.scene.model, self.cfg.lighting
        count = int(rng.integers(cfg.count[0], cfg.count[1] + 1))
        # In a fixed order (top, side, fill): two lights on is the scene as it was before randomisation.
        m.light_active[self.lights] = np.arange(len(self.lights)) < count
        for light in self.lights:
            scale = rng.uniform(*cfg.intensity)
            tint = 1.0 + rng.uniform(-cfg.tint, cfg.tint, size=3)
            m.light_diffuse[light] = np.clip(self._nominal["light_diffuse"][light] * scale * tint, 0.0, 1.0)
            m.light_dir[light] = _tilt(self._nominal["light_dir"][light], rng.uniform(0.0, cfg.direction), rng)
        # One light casts shadows (the top one, declared so in sim/kitchen.py): each caster is a shadow pass.
        self.shadows = bool(rng.random() < cfg.shadow_probability)
        self.drawn.update(lights_on=count, shadows=self.shadows)

    # -- camera --------------------------------------------------------------------------------------
    def _camera(self, rng: np.random.Generator) -> None:
        m, cam = self.scene.model, self.cfg.camera
        if not (cam.pos > 0 or cam.angle > 0 or cam.fovy > 0):
            return
        unknown = sorted(set(cam.only or []) - set(self.scene.camera_ids))
        if unknown:
            raise ValueError(f"env.randomization.camera.only: no camera {unknown} in the scene (its cameras: {list(self.scene.camera_ids)})")
        for name, idx in self.scene.camera_ids.items():
            offset = _direction(rng) * _length(rng, cam.pos, cam.exact)
            turn = np.empty(4)
            mujoco.mju_axisAngle2Quat(turn, _direction(rng), _length(rng, cam.angle, cam.exact))
            zoom = rng.choice([-1.0, 1.0]) * _length(rng, cam.fovy, cam.exact)
            if cam.only is not None and name not in cam.only:
                continue  # drawn all the same: the listed cameras' moves do not depend on the list
            m.cam_pos[idx] = self._nominal["cam_pos"][idx] + offset
            mujoco.mju_mulQuat(m.cam_quat[idx], self._nominal["cam_quat"][idx], turn)
            m.cam_fovy[idx] = self._nominal["cam_fovy"][idx] + zoom

    # -- distractors ---------------------------------------------------------------------------------
    def _distractors(self, rng: np.random.Generator) -> None:
        m, lo_hi = self.scene.model, self.cfg.distractors.count
        count = int(rng.integers(lo_hi[0], lo_hi[1] + 1))
        chosen = rng.choice(len(DISTRACTORS), size=count, replace=False)
        # The free counter is small: a set that does not fit is laid out again from scratch (a greedy layout can
        # block itself), keeping the fullest layout, so `count` objects are there in nearly every episode.
        best: list[tuple[int, float, float]] = []
        for _ in range(20):
            layout, placed = [], []
            for i in chosen:
                spot = self._free_spot(rng, DISTRACTORS[i].radius, placed)
                if spot is not None:
                    placed.append((*spot, DISTRACTORS[i].radius))
                    layout.append((int(i), *spot))
            if len(layout) > len(best):
                best = layout
            if len(best) == count:
                break
        for i, x, y in best:
            body = self.distractor_bodies[i]
            yaw = rng.uniform(-np.pi, np.pi)
            m.body_pos[body] = [x, y, 0.0]
            m.body_quat[body] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
            m.geom_rgba[self.distractor_geoms[i], :3] = rng.uniform(0.1, 0.95, size=3)
        self.drawn["distractors"] = len(best)  # unplaced ones stay hidden below the floor

    def _free_spot(self, rng, radius: float, placed) -> tuple[float, float] | None:
        for _ in range(100):
            x = rng.uniform(COUNTER_X[0] + radius + EDGE, COUNTER_X[1] - radius - EDGE)
            y = rng.uniform(COUNTER_Y[0] + radius + EDGE, COUNTER_Y[1] - radius - EDGE)
            if self.spot_allowed(x, y, radius) and all(np.hypot(x - px, y - py) > radius + pr + EDGE for px, py, pr in placed):
                return x, y
        return None

    def spot_allowed(self, x: float, y: float, radius: float) -> bool:
        """Out of the kettle's start area and path to the sink, the sink opening, the robot's zone, the camera strip."""
        r = self.cfg
        reach = kettle_entity.RADIUS + radius + EDGE
        start_x = (KETTLE_NOMINAL_XY[0] + r.kettle_x_range[0] - reach, KETTLE_NOMINAL_XY[0] + r.kettle_x_range[1] + reach)
        start_y = (KETTLE_NOMINAL_XY[1] + r.kettle_y_range[0] - reach, KETTLE_NOMINAL_XY[1] + r.kettle_y_range[1] + reach)
        sink_x = (SINK_CENTRE_XY[0] - SINK_HALF[0] - radius - EDGE, SINK_CENTRE_XY[0] + SINK_HALF[0] + radius + EDGE)
        sink_y = (SINK_CENTRE_XY[1] - SINK_HALF[1] - radius - EDGE, SINK_CENTRE_XY[1] + SINK_HALF[1] + radius + EDGE)
        (rx, ry), (cx, cy) = ROBOT_ZONE, CAMERA_STRIP
        blocked = (
            _inside(x, y, start_x, start_y) or _inside(x, y, sink_x, sink_y)
            or _segment_distance((x, y), KETTLE_NOMINAL_XY, SINK_CENTRE_XY) < PATH_CLEARANCE + radius
            or _inside(x, y, (rx[0], rx[1] + radius), (ry[0] - radius, ry[1] + radius))
            or _inside(x, y, (cx[0] - radius, cx[1]), (cy[0] - radius, cy[1] + radius))
        )
        return not blocked


def _inside(x: float, y: float, xs: tuple[float, float], ys: tuple[float, float]) -> bool:
    return xs[0] <= x <= xs[1] and ys[0] <= y <= ys[1]


def _segment_distance(p, a, b) -> float:
    p, a, b = (np.asarray(v, float) for v in (p, a, b))
    t = np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * (b - a))))


def _tilt(direction: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """`direction` turned by `angle` about a random axis perpendicular to it."""
    d = direction / np.linalg.norm(direction)
    axis = np.cross(d, _direction(rng))
    axis /= np.linalg.norm(axis)
    return d * np.cos(angle) + np.cross(axis, d) * np.sin(angle)


def _ids(model, kind, names) -> np.ndarray:
    return np.array([_id(model, kind, n) for n in names])


def _id(model, kind, name: str) -> int:
    idx = mujoco.mj_name2id(model, kind, name)
    if idx < 0:
        raise KeyError(f"the scene has no {kind.name} named {name!r} (sim/kitchen.py)")
    return idx


def _direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _length(rng: np.random.Generator, most: float, exact: bool) -> float:
    return most if exact else rng.uniform(0.0, most)
