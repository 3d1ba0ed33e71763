"""How far the true tool goes past the workspace box: the measurement behind docs/deploy.md's table.

The true TCP is the driver's joint state through forward kinematics, sampled every `sample_s` of virtual
time between the policy's steps (not only at them), on the dry-run arms (`env=real_fake`,
`env=real_ur_simulated`) with a virtual clock. `excess` is the signed distance past the box: positive
outside (by that much past the nearest face), negative inside.

    python -m hardware.safety.margin            # the per-joint table, both arms, both modes
    python -m hardware.safety.margin --random 5 # plus 5 episodes of random actions each
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from hardware.safety.kinematics import TcpKinematics

ARMS = {"fake": "real_fake", "ur": "real_ur_simulated"}  # a Panda on the fake driver; a UR5e
MODES = {"velocity": ("env.control_mode=joint_velocity",), "torque": ("env.control_mode=joint_torque",)}


def excess(p, lo, hi) -> float:
    """Signed distance of `p` past the box [lo, hi]: > 0 outside (the largest overshoot of a face), < 0 inside."""
    return max(max(lo[k] - p[k], p[k] - hi[k]) for k in range(3))


class TrueTcp:
    """Samples the driver's true TCP while the env's virtual clock runs (it wraps the clock's sleep)."""

    def __init__(self, env, sample_s: float = 0.005):
        self.env, self.sample_s = env, sample_s
        self.kin = TcpKinematics(env.robot)
        limits = env.safety.limits
        self.lo, self.hi = limits.workspace_min, limits.workspace_max
        self.worst = -np.inf
        self.worst_at: tuple[float, ...] | None = None
        clock = env.clock
        sleep = clock.sleep_until

        def sampled_sleep(t: float) -> None:
            while clock.now() < t:
                sleep(min(t, clock.now() + self.sample_s))
                self.sample()

        clock.sleep_until = sampled_sleep

    def sample(self) -> float:
        q = self.env.driver.read_state().q.tolist()
        p = self.kin.position(q)
        e = excess(p, self.lo, self.hi)
        if e > self.worst:
            self.worst, self.worst_at = e, tuple(round(x, 4) for x in p)
        return e


def make_env(arm: str, mode: str, *overrides: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import robolearn.config  # noqa: F401  (registers the env schema)
    from hardware import make_real_robot_env
    from robolearn.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(config_name=None, overrides=[f"+env={ARMS[arm]}", *MODES[mode],
                      *(("env.hardware.driver.torque_control=true",) if arm == "ur" and mode == "torque" else ()), "env.hardware.loop.clock=virtual", *overrides])
    return make_real_robot_env(OmegaConf.to_container(cfg.env, resolve=True))


def drive_joint(env, joint: int, direction: float, steps: int = 40, seed: int = 0, tcp: TrueTcp | None = None) -> dict:
    """Joint `joint` at its full allowed speed (action +-1) from home for `steps` steps, the others at rest.
    The worst excess of the true TCP over the run, whether the e-stop latched, and the layer's counters."""
    tcp = tcp or TrueTcp(env)
    env.reset(seed=seed)
    tcp.worst, tcp.worst_at = tcp.sample(), None
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    action[joint] = direction
    info = {}
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    env.safety.hold()
    return {"excess_m": float(tcp.worst), "at": tcp.worst_at, "estop": info.get("safety", {}).get("fault")}


def drive_random(env, episodes: int, seed: int = 0, tcp: TrueTcp | None = None) -> dict:
    """Uniform random actions for whole episodes: the worst excess of the true TCP and any e-stop."""
    tcp = tcp or TrueTcp(env)
    rng = np.random.default_rng(seed)
    worst, fault = -np.inf, None
    for i in range(episodes):
        env.reset(seed=seed + i)
        tcp.worst = tcp.sample()
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32))
            done = terminated or truncated
        worst = max(worst, tcp.worst)
        fault = fault or info["safety"]["fault"]
        if fault:
            break
    return {"excess_m": float(worst), "estop": fault}


def joint_table(arm: str, mode: str, steps: int = 40) -> list[dict]:
    """Every joint, both directions, at full speed from home: one row per joint (a fresh env per run, so an
    e-stop in one does not end the others)."""
    rows = []
    n = 6 if arm == "ur" else 7
    for j in range(n):
        row = {"arm": arm, "mode": mode, "joint": j + 1}
        for name, direction in (("plus", 1.0), ("minus", -1.0)):
            env = make_env(arm, mode)
            try:
                r = drive_joint(env, j, direction, steps)
            finally:
                env.close()
            row[name] = r["excess_m"]
            row[f"{name}_estop"] = r["estop"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--random", type=int, default=0, help="episodes of random actions per arm and mode")
    parser.add_argument("--arms", default="fake,ur")
    parser.add_argument("--modes", default="velocity,torque")
    args = parser.parse_args(argv)
    out = {"joints": [], "random": []}
    for arm in args.arms.split(","):
        for mode in args.modes.split(","):
            for row in joint_table(arm, mode, args.steps):
                out["joints"].append(row)
                print(f"{arm:5s} {mode:8s} joint {row['joint']}: +{row['plus'] * 1000:7.1f} mm  -{row['minus'] * 1000:7.1f} mm"
                      + (f"  e-stop: {row['plus_estop'] or row['minus_estop']}" if row["plus_estop"] or row["minus_estop"] else ""), flush=True)
            if args.random:
                env = make_env(arm, mode)
                try:
                    r = {"arm": arm, "mode": mode, **drive_random(env, args.random)}
                finally:
                    env.close()
                out["random"].append(r)
                print(f"{arm:5s} {mode:8s} random x{args.random}: worst {r['excess_m'] * 1000:.1f} mm, e-stop {r['estop']}", flush=True)
    print(json.dumps(out, default=str))
    return out


if __name__ == "__main__":
    main()
