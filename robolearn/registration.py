"""The env under gymnasium's registry, for other frameworks: `gymnasium.make("robolearn/KettleSink-v0", **keys)`.

The keys are those of the env config (robolearn.config.EnvConfig), nested dicts or dotted names:
`randomization={"enabled": False}`, `**{"randomization.camera.pos": 0.0}`, `control_mode="joint_torque"`.
The entry point is named by string and the env is built through the config's factory, so importing robolearn
still imports neither `sim` nor `hardware`. No TimeLimit is registered: the env truncates its own episodes
after `episode_seconds * control_hz` steps, and a second limit could only disagree with it.
"""

from __future__ import annotations

from typing import Any

import gymnasium

KETTLE_SINK_ID = "robolearn/KettleSink-v0"


def make_kettle_sink(render_mode: str | None = None, **keys: Any) -> gymnasium.Env:
    """gymnasium's entry point: the env config from `keys`, checked against the schema (an unknown key or a
    bad value raises robolearn.config.ConfigError naming it), then built by the factory it names."""
    from omegaconf import OmegaConf

    from robolearn.config import ConfigError, load_env_config
    from robolearn.envs import make_env

    try:
        # One node per key, a dotted name as its nested path, merged in order (a later key wins).
        node = OmegaConf.merge({}, *(_nested(key.split("."), value) for key, value in keys.items()))
    except Exception as exc:  # omegaconf raises several types for values it cannot hold
        raise ConfigError(f"env config: {exc}") from None
    return make_env(load_env_config(node), render_mode=render_mode)


def _nested(path: list[str], value: Any) -> dict:
    return {path[0]: value} if len(path) == 1 else {path[0]: _nested(path[1:], value)}


def register_envs() -> None:
    if KETTLE_SINK_ID not in gymnasium.registry:
        gymnasium.register(KETTLE_SINK_ID, entry_point="robolearn.registration:make_kettle_sink")
