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
        self.speed = np.zeros(env.robot.n_joints)  # the peak |dq| per joint seen
        clock = env.clock
        sleep = clock.sleep_until

        def sampled_sleep(t: float) -> None:
            while clock.now() < t:
                sleep(min(t, clock.now() + self.sample_s))
                self.sample()

        clock.sleep_until = sampled_sleep

    def sample(self) -> float:
        state = self.env.driver.read_state()
        np.maximum(self.speed, np.abs(state.dq), out=self.speed)
        p = self.kin.position(state.q.tolist())
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


def drive_joint(env, joint: int, direction: float, steps: int = 40, runup: int = 20, seed: int = 0, tcp: TrueTcp | None = None,
                torque_at_full_speed: bool = False) -> dict:
    """Joint `joint` at its full allowed speed (action +-1), the others at rest: first `runup` steps the
    other way from home (to the far side: a long run-up), then `steps` steps toward `direction` into the
    box wall. The worst excess of the true TCP over the run, the joint's peak speed over its limit, and
    the fault if the e-stop latched.

    torque_at_full_speed (a torque-mode env): the run-up and the approach are velocity commands through the
    same safety layer, at the full velocity limit, and the first time the layer scales one for the box the
    run switches to full torque onward: torque mode's workspace check then has to brake a joint moving at
    full speed (on its own it seldom gets there: its speed prediction holds joints well under the limit)."""
    tcp = tcp or TrueTcp(env)
    env.reset(seed=seed)
    tcp.worst, tcp.worst_at = tcp.sample(), None
    tcp.speed[:] = 0.0
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    safety = env.safety
    velocity = torque_at_full_speed
    clipped = safety.counters["workspace_clipped"]
    info = {}
    for k in range(runup + steps):
        sign = -direction if k < runup else direction
        if velocity:
            if k >= runup and safety.counters["workspace_clipped"] != clipped:
                velocity = False  # the box is in reach: full torque onward from here
            else:
                clipped = safety.counters["workspace_clipped"]
                command = [0.0] * env.robot.n_joints
                command[joint] = sign * safety.limits.velocity[joint]
                safety.command_velocity(command)
                env.loop.wait()
                safety.poll()
                if safety.latched:
                    info = {"safety": {"fault": f"{safety.fault.layer}: {safety.fault.message}"}}
                    break
                continue
        action[joint] = sign
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    safety.hold()
    return {"excess_m": float(tcp.worst), "at": tcp.worst_at, "estop": info.get("safety", {}).get("fault"),
            "peak_speed_ratio": float(tcp.speed[joint] / safety.limits.velocity[joint])}


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


def joint_table(arm: str, mode: str, steps: int = 40, runup: int = 20, torque_at_full_speed: bool = False) -> list[dict]:
    """Every joint, both directions, at full speed: one row per joint (a fresh env per run, so an e-stop in
    one does not end the others)."""
    rows = []
    n = 6 if arm == "ur" else 7
    for j in range(n):
        row = {"arm": arm, "mode": mode + (" from full speed" if torque_at_full_speed else ""), "joint": j + 1}
        for name, direction in (("plus", 1.0), ("minus", -1.0)):
            env = make_env(arm, mode)
            try:
                r = drive_joint(env, j, direction, steps, runup, torque_at_full_speed=torque_at_full_speed)
            finally:
                env.close()
            row[name] = r["excess_m"]
            row[f"{name}_speed"] = r["peak_speed_ratio"]
            row[f"{name}_estop"] = r["estop"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--runup", type=int, default=20, help="steps the other way first")
    parser.add_argument("--random", type=int, default=0, help="episodes of random actions per arm and mode")
    parser.add_argument("--arms", default="fake,ur")
    parser.add_argument("--modes", default="velocity,torque")
    args = parser.parse_args(argv)
    out = {"joints": [], "random": []}
    runs = [(arm, mode, False) for arm in args.arms.split(",") for mode in args.modes.split(",")]
    if "torque" in args.modes:
        runs += [(arm, "torque", True) for arm in args.arms.split(",")]
    for arm, mode, full in runs:
        if True:
            for row in joint_table(arm, mode, args.steps, args.runup, full):
                out["joints"].append(row)
                print(f"{arm:5s} {row['mode']:8s} joint {row['joint']}: + {row['plus'] * 1000:6.1f} mm (peak {row['plus_speed']:.2f} of its speed limit)"
                      f"  - {row['minus'] * 1000:6.1f} mm (peak {row['minus_speed']:.2f})"
                      + (f"  e-stop: {row['plus_estop'] or row['minus_estop']}" if row["plus_estop"] or row["minus_estop"] else ""), flush=True)
            if args.random and not full:
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
