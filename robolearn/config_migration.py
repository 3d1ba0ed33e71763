"""Env configs recorded before the transfer randomisation schema, turned into today's schema.

Checkpoints carry the env config they trained on (`env_config`). Those written before the schema of
issue 27 hold `randomization.colours: bool`, `lighting: bool`, `camera_pos_jitter` and `camera_angle_jitter`,
which today's schema refuses; read as they are, the missing parts would also take today's much wider defaults.
`migrate_env_config` writes every part out explicitly, as close as the new keys allow to what the old sim drew,
so "as trained" still means what the policy trained on.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

log = logging.getLogger(__name__)

OLD_RANDOMIZATION_KEYS = ("colours", "camera_pos_jitter", "camera_angle_jitter")
# What the old schema's kettle ranges were when a record lacks them.
OLD_KETTLE_RANGES = {"kettle_x_range": [-0.05, 0.05], "kettle_y_range": [-0.08, 0.08], "kettle_yaw_range": [-0.5, 0.5]}


def is_old_randomization(node: Any) -> bool:
    """The old schema: one of its keys, or `lighting` as a switch where today it is a section."""
    return isinstance(node, dict) and (any(k in node for k in OLD_RANDOMIZATION_KEYS) or isinstance(node.get("lighting"), bool))


def migrate_randomization(old: dict) -> dict:
    """The old node as a complete new `env.randomization` node."""
    pos_jitter = float(old.get("camera_pos_jitter", 0.01))
    return {
        "enabled": True,  # the old sim always drew the kettle start; its switches were per part
        **{key: list(old.get(key, default)) for key, default in OLD_KETTLE_RANGES.items()},
        "kettle_start_edge": False,
        # Old colours: brightness x0.8-1.2 and a hue shift of +-0.04 per object, about +-0.1 per channel on the
        # scene's mid-tone colours; no textures.
        "materials": {"enabled": bool(old.get("colours", True)), "pool": "train", "texture_probability": 0.0,
                      "colour_jitter": 0.1, "kettle_colour_jitter": 0.1},
        # Old lighting: both lights on, brightness x0.7-1.3, directions tilted by N(0, 0.15) per component
        # (what `direction: 0.3` drew in the sim of that day), white light, no shadows.
        "lighting": {"enabled": bool(old.get("lighting", True)), "count": [2, 2], "intensity": [0.7, 1.3],
                     "tint": 0.0, "direction": 0.3, "shadow_probability": 0.0},
        # Old camera offsets were uniform in a box of +-jitter per axis: the ball reaching its corners.
        "camera": {"pos": pos_jitter * math.sqrt(3), "angle": float(old.get("camera_angle_jitter", 0.02)),
                   "fovy": 0.0, "exact": False},
        "distractors": {"count": [0, 0]},
        "image": {"brightness": 0.0, "contrast": 0.0, "noise_std": 0.0, "blur_probability": 0.0},
        "dynamics": {key: [1.0, 1.0] for key in ("kettle_mass", "kettle_friction", "gripper_friction",
                                                 "joint_damping", "actuator_gain")},
        "latency_ms": [0.0, 0.0],
        "joint_pos_noise": 0.0,
        "joint_vel_noise": 0.0,
    }


def migrate_env_config(env_config: dict | None, where: str = "env config") -> dict | None:
    """A recorded env config (plain data) in today's schema; unchanged when it already is. Logs one line
    naming `where` when it migrates."""
    if not isinstance(env_config, dict) or not is_old_randomization(env_config.get("randomization")):
        return env_config
    migrated = copy.deepcopy(env_config)
    migrated["randomization"] = migrate_randomization(env_config["randomization"])
    migrated["room_walls"] = False  # the room came with the new randomisation
    log.warning("%s: env config migrated from the pre-transfer randomisation schema (colours, lighting, camera jitter)", where)
    return migrated


def checkpoint_env_config(payload: dict, path: Any) -> dict | None:
    """The env config a checkpoint (robolearn.checkpoint.load_checkpoint's payload) trained on, in today's
    schema; None for a checkpoint that records none."""
    return migrate_env_config(payload.get("env_config"), where=f"checkpoint {path}")
