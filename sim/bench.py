"""`sim` benchmark: env steps/s with random actions against the raw-MuJoCo ceiling on the same scene.

The ceiling steps the env's own compiled model with `mj_step(nstep=substeps)` and renders the same
cameras with the same renderer settings, with no Python around it: what any env on this scene pays.
It replays the env round exactly (same actions, and the env's post-reset states restored at the same
steps), so both render the same views and simulate the same contacts. At those restarts it also puts back the
episode's randomised scene (the model arrays the randomisation writes: textures, colours, lights, cameras,
clutter; re-uploading textures and setting the shadow flag as the env does), so the ceiling renders the same
randomised scene, shadows in the same episodes. The env and the ceiling alternate in rounds and each reports
its median round, to ride out noise; the ratio is the median of the rounds' own ratios, since rounds differ in
content (episodes with and without shadows cost several times apart) and only a round's pair sees the same frames.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import mujoco
import numpy as np

from robolearn.config import load_env_config
from robolearn.envs import make_env


def run(quick: bool = False, argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m robolearn.bench sim")
    parser.add_argument("--steps", type=int, default=300 if quick else 1000, help="env steps per round")
    parser.add_argument("--rounds", type=int, default=3 if quick else 5)
    parser.add_argument("--control-mode", default="joint_velocity")
    parser.add_argument("overrides", nargs="*", metavar="env.KEY=VALUE", help="env config overrides, e.g. env.robot=ur5e")
    args = parser.parse_args(argv or [])

    cfg = load_env_config({"control_mode": args.control_mode, **_env_overrides(args.overrides)})
    env = make_env(cfg)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(args.steps, env.action_space.shape[0])).astype(np.float32)
    obs, _ = env.reset(seed=0)
    env_rates, ceiling_rates = [], []
    resets = 0
    ceiling = _Ceiling(env.unwrapped)
    try:
        for r in range(args.rounds):
            restarts = {0: ceiling.snapshot(env.unwrapped)}
            start = time.perf_counter()
            for i, a in enumerate(actions):
                obs, _, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    env.reset()
                    resets += 1
                    restarts[i + 1] = ceiling.snapshot(env.unwrapped)
            env_rates.append(args.steps / (time.perf_counter() - start))
            ceiling_rates.append(ceiling.rate(actions, restarts))
            print(f"round {r + 1}/{args.rounds}: env {env_rates[-1]:.0f} steps/s, ceiling {ceiling_rates[-1]:.0f} steps/s", flush=True)
    finally:
        ceiling.close()
        env.close()
    env_rate, ceiling_rate = statistics.median(env_rates), statistics.median(ceiling_rates)
    ratio = statistics.median(e / c for e, c in zip(env_rates, ceiling_rates))
    return {
        "benchmark": "sim",
        "env_steps_per_s": round(env_rate, 1),
        "ceiling_steps_per_s": round(ceiling_rate, 1),
        "ratio": round(ratio, 3),
        "cameras": [f"{name} {w}x{h}" for name, h, w in env.unwrapped.contract.cameras],
        "robot": cfg.robot,
        "control_mode": cfg.control_mode.value,
        "control_hz": cfg.control_hz,
        "physics_hz": cfg.physics_hz,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "episode_resets": resets,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "mujoco": mujoco.__version__,
        "quick": quick,
    }


def _env_overrides(items: list[str]) -> dict:
    """`env.robot=ur5e env.physics_hz=1000` -> a nested dict for load_env_config (values parsed as YAML)."""
    from omegaconf import OmegaConf

    from robolearn.config import ConfigError

    bad = [item for item in items if not item.startswith("env.") or "=" not in item]
    if bad:
        raise ConfigError(f"bench sim: overrides must read env.KEY=VALUE, got {bad}")
    dotlist = [item[len("env."):] for item in items]
    return OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))


class _Ceiling:
    """The same scene stepped and rendered by raw mujoco calls."""

    def __init__(self, env):
        from sim.rendering import make_renderer

        self.model, self.substeps = env.model, env.cfg.substeps
        self.data = mujoco.MjData(self.model)
        self.actuators = env.scene.arm_actuators
        self.limits = env.contract.command_limits
        self.cameras = [(env.scene.camera_ids[name], h, w) for name, h, w in env.contract.cameras]
        # One renderer per image size, created once: a discarded renderer frees the current GL context.
        self.renderers = {}
        for _, h, w in self.cameras:
            if (h, w) not in self.renderers:
                self.renderers[(h, w)] = make_renderer(self.model, h, w, env.cfg.render)
        parts = env._randomizer
        # The model arrays an episode's randomisation writes (a part lists its own in MODEL_FIELDS).
        self.fields = tuple(dict.fromkeys(f for part in (parts.visual, parts.dynamics) for f in getattr(part, "MODEL_FIELDS", ())))
        self.always_shadows = env.cfg.render.shadows
        self.textures = -1  # the env's textures_version these renderers hold (-1: unknown, upload at the first restart)

    def snapshot(self, env) -> dict:
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, env.data, state, spec)
        scene = {name: getattr(self.model, name).copy() for name in self.fields}
        visual = env._randomizer.visual
        return {"state": state, "scene": scene, "shadows": env._randomizer.shadows, "textures": visual.textures_version}

    def _restart(self, restart: dict) -> None:
        from sim.rendering import upload_textures

        mujoco.mj_setState(self.model, self.data, restart["state"], mujoco.mjtState.mjSTATE_INTEGRATION)
        for name, value in restart["scene"].items():
            getattr(self.model, name)[:] = value
        for renderer in self.renderers.values():
            if restart["textures"] != self.textures:
                upload_textures(renderer, self.model)
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.always_shadows or restart["shadows"]
        self.textures = restart["textures"]

    def rate(self, actions: np.ndarray, restarts: dict[int, np.ndarray]) -> float:
        m, d = self.model, self.data
        start = time.perf_counter()
        for i, a in enumerate(actions):
            if i in restarts:
                self._restart(restarts[i])
            d.ctrl[self.actuators] = a[:-1] * self.limits
            mujoco.mj_step(m, d, nstep=self.substeps)
            for cam, h, w in self.cameras:
                renderer = self.renderers[(h, w)]
                renderer.update_scene(d, camera=cam)
                renderer.render()
        return len(actions) / (time.perf_counter() - start)

    def close(self) -> None:
        for renderer in self.renderers.values():
            renderer.close()
