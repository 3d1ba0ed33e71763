"""`control` benchmark: policy-loop period jitter, safety-layer cost per command, watchdog trip latency.

- Jitter: the real-robot env on the fake driver and fake cameras (capture threads running) steps at
  10 Hz on the wall clock with random actions; jitter is |period - nominal| between successive deadline
  wake-ups. Baseline, same env and work: plain sleep to the same absolute deadlines (no final spin).
  Also reported: the same loop with the opt-in `loop.realtime_priority` (SCHED_FIFO), where permitted, and
  the same loop with the live view on (robolearn/display.py, saving to a temporary .rrd): its jitter beside
  the loop's without it, the view's own cost per step on the loop's side, and the frames it dropped.
- Safety cost: the seven layers on velocity and torque commands against a driver that does nothing
  (read_state returns a prepared state), so only the layer is timed; the median of rounds of 1000
  commands. Baselines: the bare driver calls, and one `RobotDescription.forward_kinematics` (numpy).
- Watchdog: commands at 10 Hz stop; the time from the last command to the latched stop, on the wall
  clock with the watchdog thread, over several trials (the maximum is reported).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from robolearn.config import ConfigError


def run(quick: bool = False, argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m robolearn.bench control")
    parser.add_argument("--steps", type=int, default=100 if quick else 600, help="env steps per loop variant")
    parser.add_argument("--commands", type=int, default=20000 if quick else 100000, help="safety-layer commands timed")
    parser.add_argument("--trips", type=int, default=8 if quick else 30, help="watchdog trials")
    parser.add_argument("--realtime-priority", type=int, default=10, help="SCHED_FIFO priority of the extra loop variant")
    args = parser.parse_args(argv or [])
    print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)

    jitter = _jitter(args.steps, spin_s=0.001)
    print(f"loop (sleep + 1 ms spin): period jitter p50 {jitter['p50']:.3f} p99 {jitter['p99']:.3f} max {jitter['max']:.3f} ms", flush=True)
    viewed = _jitter(args.steps, spin_s=0.001, live_view=True)
    view = viewed["view"]
    print(f"loop with the live view on: period jitter p50 {viewed['p50']:.3f} p99 {viewed['p99']:.3f} max {viewed['max']:.3f} ms "
          f"(off: {jitter['p50']:.3f} / {jitter['p99']:.3f} / {jitter['max']:.3f}); the view's cost on the loop "
          f"{view['loop_us_mean']:.1f} µs/step (p99 {view['loop_us_p99']:.1f}, max {view['loop_us_max']:.1f}), "
          f"{view['dropped']} of {view['frames']} frames dropped", flush=True)
    sleep_only = _jitter(args.steps, spin_s=0.0)
    print(f"baseline (sleep only):    period jitter p50 {sleep_only['p50']:.3f} p99 {sleep_only['p99']:.3f} max {sleep_only['max']:.3f} ms", flush=True)
    try:
        realtime = _jitter(args.steps, spin_s=0.001, realtime_priority=args.realtime_priority)
        print(f"loop at SCHED_FIFO {args.realtime_priority}:    period jitter p50 {realtime['p50']:.3f} p99 {realtime['p99']:.3f} max {realtime['max']:.3f} ms", flush=True)
    except ConfigError as exc:  # not permitted on this machine: report it rather than guess
        realtime = None
        print(f"loop at SCHED_FIFO: skipped ({exc})", flush=True)
    safety = _safety_cost(args.commands)
    print(
        f"safety layer: {safety['velocity_mean_us']:.1f} µs/velocity command (p99 {safety['velocity_p99_us']:.1f}), "
        f"{safety['torque_mean_us']:.1f} µs/torque command; bare driver {safety['driver_only_us']:.2f} µs, numpy FK {safety['numpy_fk_us']:.1f} µs",
        flush=True,
    )
    trips, timeout = _watchdog(args.trips)
    print(f"watchdog (timeout {timeout * 1000:.0f} ms): trip after the last command median {statistics.median(trips):.1f} ms, max {max(trips):.1f} ms "
          f"(two control periods: 200 ms)", flush=True)
    tight = _tight_loop()
    print(f"tight loop ({tight['commands']} commands in {tight['seconds']:.2f} s, {tight['too_fast']} refused as faster than 1 kHz): "
          f"peak acceleration {tight['peak_accel_ratio']:.3f} x the limit", flush=True)
    torques = _random_torques(300 if quick else 2000)
    print(f"random torques on the fake arm ({torques['commands']} at 10 Hz, {torques['limited']} limited by the prediction, "
          f"{torques['restarts']} restarts after a workspace fault): peak joint speed {torques['peak_speed_ratio']:.3f} x the limit "
          f"(bound {torques['headroom']:.2f}), least room to a soft joint limit {torques['min_room_rad']:.3f} rad", flush=True)
    return {
        "benchmark": "control",
        "torque_random_peak_speed_ratio": round(torques["peak_speed_ratio"], 4),
        "torque_random_min_room_rad": round(torques["min_room_rad"], 4),
        "torque_random_restarts": torques["restarts"],
        "jitter_p50_ms": round(jitter["p50"], 3),
        "jitter_p99_ms": round(jitter["p99"], 3),
        "jitter_max_ms": round(jitter["max"], 3),
        "safety_us_per_command": round(safety["velocity_mean_us"], 2),
        "watchdog_trip_ms": round(max(trips), 2),
        "watchdog_trip_median_ms": round(statistics.median(trips), 2),
        "watchdog_timeout_ms": round(timeout * 1000, 1),
        "watchdog_trip_periods": round(max(trips) / 100.0, 3),
        "tight_loop_peak_accel_ratio": round(tight["peak_accel_ratio"], 4),
        "tight_loop_commands": tight["commands"],
        "tight_loop_too_fast": tight["too_fast"],
        "control_hz": 10.0,
        "lateness_p99_ms": round(jitter["lateness_p99"], 3),
        "deadline_misses": jitter["misses"],
        # The same loop (sleep + 1 ms spin) with the live view saving every step; its cost on the loop's side.
        "live_view_jitter_p50_ms": round(viewed["p50"], 3),
        "live_view_jitter_p99_ms": round(viewed["p99"], 3),
        "live_view_jitter_max_ms": round(viewed["max"], 3),
        "live_view_us_per_step": view["loop_us_mean"],
        "live_view_us_p99": view["loop_us_p99"],
        "live_view_us_max": view["loop_us_max"],
        "live_view_frames": view["frames"],
        "live_view_dropped": view["dropped"],
        "baseline_sleep_only_jitter_p50_ms": round(sleep_only["p50"], 3),
        "baseline_sleep_only_jitter_p99_ms": round(sleep_only["p99"], 3),
        "baseline_sleep_only_jitter_max_ms": round(sleep_only["max"], 3),
        # The same loop with env.hardware.loop.realtime_priority set (opt-in; None where not permitted).
        "realtime_jitter_p50_ms": None if realtime is None else round(realtime["p50"], 3),
        "realtime_jitter_p99_ms": None if realtime is None else round(realtime["p99"], 3),
        "realtime_jitter_max_ms": None if realtime is None else round(realtime["max"], 3),
        "safety_us_p99": round(safety["velocity_p99_us"], 2),
        "safety_torque_us_per_command": round(safety["torque_mean_us"], 2),
        "driver_only_us_per_command": round(safety["driver_only_us"], 3),
        "numpy_fk_us": round(safety["numpy_fk_us"], 2),
        "steps": args.steps,
        "commands": args.commands,
        "watchdog_trials": args.trips,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other processes on the machine during the run
        "machine": platform.machine(),
        "quick": quick,
    }


def _real_fake_config(*overrides: str) -> dict:
    """configs/env/real_fake.yaml as Hydra composes it (with its driver, camera and safety groups)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robolearn.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(config_name=None, overrides=["+env=real_fake", *overrides])
    return OmegaConf.to_container(cfg.env, resolve=True)


def _jitter(steps: int, spin_s: float, realtime_priority: int = 0, live_view: bool = False) -> dict:
    import tempfile

    from robolearn.display import DisplayConfig, LiveView
    from robolearn.envs import make_env

    cfg = _real_fake_config(
        "env.hardware.loop.clock=real", f"env.hardware.loop.spin_s={spin_s}", f"env.hardware.loop.realtime_priority={realtime_priority}"
    )
    env = make_env(cfg)
    rng = np.random.default_rng(0)
    periods, lateness, misses = [], [], 0
    tmp = tempfile.TemporaryDirectory(prefix="bench_control_") if live_view else None
    view = LiveView(DisplayConfig(enabled=True, save=f"{tmp.name}/bench.rrd"), "bench control") if tmp is not None else None
    try:
        obs, info = env.reset(seed=0)
        if view is not None:
            view.start(obs, info)
        for _ in range(steps):
            # Small actions: the arm wanders without reaching a limit during the run.
            action = (0.2 * rng.uniform(-1, 1, size=env.action_space.shape)).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            if view is not None:
                view.step(obs, action, reward, info)  # as run_episode calls it
            timing = info["timing"]
            periods.append(timing["period_ms"])
            lateness.append(timing["lateness_ms"])
            misses += int(timing["deadline_missed"])
            if terminated or truncated:
                if env.latched:
                    raise RuntimeError(f"the benchmark run latched the e-stop: {info['safety']['fault']}")
                env.reset()
    finally:
        stats = view.close() if view is not None else None
        env.close()
        if tmp is not None:
            tmp.cleanup()
    nominal = 1000.0 / cfg["control_hz"]
    deviation = np.abs(np.asarray(periods[1:]) - nominal)  # the first period starts at reset
    return {
        "p50": float(np.percentile(deviation, 50)),
        "p99": float(np.percentile(deviation, 99)),
        "max": float(np.max(deviation)),
        "lateness_p99": float(np.percentile(lateness, 99)),
        "misses": misses,
        "view": stats,
    }


class _NullDriver:
    """Accepts commands and returns a prepared state: times the safety layer alone."""

    kind = "null"

    def __init__(self, robot, clock):
        from hardware.drivers.base import RobotState

        self.robot, self.clock = robot, clock
        self.fault = None
        self.is_connected = True
        self.state = RobotState(robot.home.copy(), np.zeros(robot.n_joints), np.zeros(robot.n_joints), 0.04, 0.0, 0)
        from hardware.config import FakeDriverConfig
        from hardware.drivers.base import JointDynamics

        inertia = np.asarray(FakeDriverConfig().inertia)
        self.dynamics = JointDynamics(np.diag(inertia), np.diag(1.0 / inertia), np.zeros(robot.n_joints))

    def read_state(self):
        self.state.host_time = self.clock.now()
        self.state.seq += 1  # a new sample every read, as a 1 kHz robot gives
        return self.state

    def joint_dynamics(self, state):
        return self.dynamics  # a fixed model: times the torque prediction's arithmetic, not a model library

    def set_joint_velocity(self, dq):
        pass

    def set_joint_torque(self, tau):
        pass

    def stop(self):
        pass


def _safety_cost(commands: int) -> dict:
    from hardware.config import SafetyConfig
    from hardware.safety.layer import SafetyLayer
    from hardware.safety.limits import SafetyLimits
    from hardware.timing import VirtualClock
    from robolearn.robots import PANDA

    # The null arm never moves: its tracking check runs on every command but must not latch.
    limits = SafetyLimits.from_config(SafetyConfig(tracking_timeout_s=1e9), PANDA, command_hold_s=0.2, control_hz=10)
    clock = VirtualClock()  # a control period between commands (outside the timed part): the full path, not refusals
    driver = _NullDriver(PANDA, clock)
    layer = SafetyLayer(driver, limits, clock, watchdog_thread=False)
    rng = np.random.default_rng(0)
    # Policy-like commands: mostly inside the limits, some over (clamped), each a fresh array.
    velocity = [rng.uniform(-1.2, 1.2, 7) * np.asarray(limits.velocity) for _ in range(256)]
    torque = [rng.uniform(-1.2, 1.2, 7) * np.asarray(limits.torque) for _ in range(256)]
    timer = time.perf_counter
    out = {}
    for name, batch, send in (("velocity", velocity, layer.command_velocity), ("torque", torque, layer.command_torque)):
        for i in range(1000):  # warm up
            clock.advance(0.1)
            send(batch[i % 256])
        samples = np.empty(commands)
        for i in range(commands):
            command = batch[i & 255]
            clock.advance(0.1)
            start = timer()
            send(command)
            samples[i] = timer() - start
        if layer.latched:
            raise RuntimeError(f"the benchmark latched the safety layer: {layer.fault}")
        # Mean per command = the median over rounds of 1000 commands: a noisy machine preempts us in
        # bursts, and one burst should not move the figure. p99 is over single commands.
        rounds = samples[: commands - commands % 1000].reshape(-1, 1000).mean(axis=1)
        out[f"{name}_mean_us"] = float(np.median(rounds) * 1e6)
        out[f"{name}_p99_us"] = float(np.percentile(samples, 99) * 1e6)
        layer.hold()
    layer.close()
    start = timer()
    for i in range(commands):
        driver.read_state()
        driver.set_joint_velocity(velocity[i & 255])
    out["driver_only_us"] = (timer() - start) / commands * 1e6
    start = timer()
    for _ in range(2000):
        PANDA.forward_kinematics(PANDA.home)
    out["numpy_fk_us"] = (timer() - start) / 2000 * 1e6
    return out


def _fake_arm(watchdog_thread: bool):
    """The configured fake Panda behind a default safety layer, on the wall clock, at 10 Hz."""
    from hardware.config import FakeDriverConfig, SafetyConfig
    from hardware.drivers.fake import FakeDriver
    from hardware.safety.layer import SafetyLayer
    from hardware.safety.limits import SafetyLimits
    from hardware.timing import MonotonicClock
    from robolearn.robots import PANDA

    clock = MonotonicClock()
    driver = FakeDriver(PANDA, clock, FakeDriverConfig(command_hold_s=0.2))
    driver.connect()
    limits = SafetyLimits.from_config(SafetyConfig(), PANDA, command_hold_s=0.2, control_hz=10)
    return driver, SafetyLayer(driver, limits, clock, watchdog_thread=watchdog_thread)


def _random_torques(commands: int, seed: int = 0) -> dict:
    """Uniform random torques over the whole torque range at 10 Hz on the fake arm (virtual clock, sampled
    at 1 kHz between commands): the highest joint speed against its limit and the least room left to a
    soft joint limit. (On franky-sim: tests/test_hardware_franka.py and docs/hardware.md.)"""
    from hardware.config import FakeDriverConfig, SafetyConfig
    from hardware.drivers.fake import FakeDriver
    from hardware.safety.layer import SafetyLayer
    from hardware.safety.limits import SafetyLimits
    from hardware.timing import VirtualClock
    from robolearn.robots import PANDA

    clock = VirtualClock()
    driver = FakeDriver(PANDA, clock, FakeDriverConfig(command_hold_s=0.2))
    driver.connect()
    limits = SafetyLimits.from_config(SafetyConfig(), PANDA, command_hold_s=0.2, control_hz=10)
    layer = SafetyLayer(driver, limits, clock, watchdog_thread=False)
    vmax, tmax = np.asarray(limits.velocity), np.asarray(limits.torque)
    lo, hi = np.asarray(limits.soft_q_min), np.asarray(limits.soft_q_max)
    rng = np.random.default_rng(seed)
    worst, room, restarts = 0.0, np.inf, 0
    for _ in range(commands):
        layer.command_torque(rng.uniform(-1.0, 1.0, 7) * tmax)
        for _ in range(100):
            clock.advance(0.001)
            s = driver.read_state()
            worst = max(worst, float(np.max(np.abs(s.dq) / vmax)))
            room = min(room, float(np.min(np.minimum(s.q - lo, hi - s.q))))
        layer.poll()
        if layer.latched or driver.fault is not None:  # a random walk leaves the box now and then: start over
            restarts += 1
            layer.hold()
            driver.move_by_hand(PANDA.home)
            clock.advance(1.0)
            layer.reset(recover_robot_errors=True)
    layer.close()
    return {"commands": commands, "peak_speed_ratio": worst, "min_room_rad": room, "restarts": restarts,
            "limited": layer.counters["overspeed_limited"], "headroom": limits.torque_speed_headroom}


def _tight_loop(seconds: float = 0.5) -> dict:
    """A caller commanding a step to full speed as fast as it can, on the wall clock: the peak acceleration
    between commands the driver received, against the layer's limit (the old 1 ms floor on the interval let
    such a loop reach 4x)."""
    driver, layer = _fake_arm(watchdog_thread=False)
    clock, limits = layer.clock, layer.limits
    command = [0.0] * 6 + [limits.velocity[6]]
    sent = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if layer.command_velocity(command):
                # Stamped when the layer admitted it (as its rate limit is): a stamp taken after the call
                # returns includes whatever preempted us in between.
                sent.append((layer._t_prev, driver.last_command[1][6]))
    finally:
        layer.hold()
        layer.close()
    ratio = max(abs(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(sent, sent[1:])) / limits.acceleration[6]
    return {"commands": len(sent), "seconds": seconds, "too_fast": layer.counters["too_fast"], "peak_accel_ratio": ratio}


def _watchdog(trials: int) -> tuple[list[float], float]:
    driver, layer = _fake_arm(watchdog_thread=True)
    limits = layer.limits
    spin = [0.0] * 6 + [0.3]  # flange roll: moves the arm, not the TCP
    trips = []
    try:
        for _ in range(trials):
            for _ in range(3):
                layer.command_velocity(spin)
                last = time.monotonic()
                time.sleep(0.1)
            while not layer.latched and time.monotonic() - last < 2.0:
                time.sleep(0.0005)
            if layer.fault is None or layer.fault.layer != "watchdog":
                raise RuntimeError(f"expected a watchdog trip, got {layer.fault}")
            trips.append((layer.fault.time - last) * 1000.0)
            layer.reset()
            spin[6] = -spin[6]  # back and forth
    finally:
        layer.hold()
        layer.close()
    return trips, limits.watchdog_timeout
