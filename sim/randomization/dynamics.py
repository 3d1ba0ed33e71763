"""Dynamics randomisation: kettle mass and friction, gripper friction, joint damping, actuator gain.

Every key is a scale of a nominal model value, remembered when the part is built, so an episode's draw never
compounds on the last one and no randomisation (None) restores the compiled model exactly.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robolearn.config import DynamicsRandomization
from sim.kettle import GRIP_GEOMS
from sim.scene import Scene

KEYS = ("kettle_mass", "kettle_friction", "gripper_friction", "joint_damping", "actuator_gain")


class DynamicsRandomizer:
    # Every model array an episode's draw writes (the sim benchmark's ceiling replays them).
    MODEL_FIELDS = ("body_mass", "body_inertia", "geom_friction", "dof_damping", "actuator_gainprm", "actuator_biasprm",
                    "actuator_gear", "body_subtreemass", "body_invweight0", "dof_invweight0")

    def __init__(self, scene: Scene, cfg: DynamicsRandomization):
        self.scene, self.cfg = scene, cfg
        m = scene.model
        self.model = m
        self.kettle_body = scene.kettle_body
        self.kettle_geoms = scene.kettle_geoms  # shell, lid, spout, handle posts and the handle bar
        # The kettle's geoms have contact priority (sim/kettle.py): their friction is the contacts' friction. The
        # grip's is the handle's and its posts', which both keys scale.
        self.grip_geoms = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"kettle/{name}") for name in GRIP_GEOMS])
        assert (self.grip_geoms >= 0).all() and np.isin(self.grip_geoms, self.kettle_geoms).all(), "the kettle has no handle geoms"
        self.arm_dof = scene.arm_dof
        self.arm_actuators = scene.arm_actuators
        # A velocity servo (force = kv * (ctrl - qvel)) keeps its target if gain and bias scale together: a gain
        # scale is a weaker or stiffer servo. A motor's gear scales the torque the joint gets from the same command.
        self.velocity_servo = m.actuator_biastype[self.arm_actuators[0]] == mujoco.mjtBias.mjBIAS_AFFINE
        self.nominal = {
            "body_mass": m.body_mass.copy(),
            "body_inertia": m.body_inertia.copy(),
            "geom_friction": m.geom_friction.copy(),
            "dof_damping": m.dof_damping.copy(),
            "actuator_gainprm": m.actuator_gainprm.copy(),
            "actuator_biasprm": m.actuator_biasprm.copy(),
            "actuator_gear": m.actuator_gear.copy(),
        }
        # What MuJoCo derived from the kettle's mass when it compiled: subtree masses, and the inverse weights that
        # set contact softness. The kettle hangs under a massless frame body that holds its free joint, so the free
        # tree's mass matrix scales with the kettle's mass and these scale exactly (mass, or 1 / mass).
        self.kettle_tree = np.flatnonzero(m.body_rootid == m.body_rootid[self.kettle_body])
        assert m.body_mass[self.kettle_tree].sum() == m.body_mass[self.kettle_body], "the kettle's free tree has other masses"
        self.kettle_dofs = np.flatnonzero(np.isin(m.dof_bodyid, self.kettle_tree))
        for name in ("body_subtreemass", "body_invweight0", "dof_invweight0"):
            self.nominal[name] = getattr(m, name).copy()
        self.drawn: dict[str, float] = {}

    def apply(self, rng: np.random.Generator | None) -> None:
        """Draw this episode's scales and write them into the model; None: the nominal model values."""
        if rng is None:
            scales = {key: 1.0 for key in KEYS}
        else:
            # One draw per key in a fixed order, so changing one key's range leaves the others' draws unchanged.
            scales = {key: float(rng.uniform(*getattr(self.cfg, key))) for key in KEYS}
        self._write(scales)
        self.drawn = dict(scales) if rng is not None else {}

    def _write(self, s: dict[str, float]) -> None:
        m, n = self.model, self.nominal
        k = self.kettle_body
        # Mass and inertia together: the same shape made denser, so its centre of mass and radii of gyration stay.
        m.body_mass[k] = n["body_mass"][k] * s["kettle_mass"]
        m.body_inertia[k] = n["body_inertia"][k] * s["kettle_mass"]
        m.geom_friction[self.kettle_geoms, 0] = n["geom_friction"][self.kettle_geoms, 0] * s["kettle_friction"]
        m.geom_friction[self.grip_geoms, 0] *= s["gripper_friction"]
        m.dof_damping[self.arm_dof] = n["dof_damping"][self.arm_dof] * s["joint_damping"]
        acts = self.arm_actuators
        if self.velocity_servo:
            m.actuator_gainprm[acts, 0] = n["actuator_gainprm"][acts, 0] * s["actuator_gain"]
            m.actuator_biasprm[acts, 1:3] = n["actuator_biasprm"][acts, 1:3] * s["actuator_gain"]
        else:
            m.actuator_gear[acts, 0] = n["actuator_gear"][acts, 0] * s["actuator_gain"]
        mass = s["kettle_mass"]
        tree = self.kettle_tree
        m.body_subtreemass[tree] = n["body_subtreemass"][tree] * mass
        m.body_subtreemass[0] = n["body_subtreemass"][0] + n["body_mass"][k] * (mass - 1.0)  # the world holds everything
        m.body_invweight0[tree] = n["body_invweight0"][tree] / mass
        m.dof_invweight0[self.kettle_dofs] = n["dof_invweight0"][self.kettle_dofs] / mass
