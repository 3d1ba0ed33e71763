"""Resets on hardware: homing (the env's `reset()`), scripted safe motions between episodes, and a timed
prompt for a human to reset the scene (put the kettle back) when needed. Settings: `env.hardware.resets`
(hardware.config.ResetConfig, configs/resets/).

Homing and scripted motions go through the safety layer (`Homing`; `RealRobotEnv.move_joints` for
waypoints); the home pose and every waypoint pass the one safe-pose check
(`SafetyLimits.pose_problems`) at start-up.
The human prompt never blocks on `input()`: the arm is held (the safety layer's `hold`), the prompt polls
a key source at a few Hz until the operator answers or its timeout passes, and says which happened.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hardware.config import HUMAN_WHEN, ResetConfig
from hardware.safety.kinematics import TcpKinematics, jacobian
from hardware.safety.limits import SafetyLimits
from robolearn.config import ConfigError
from robolearn.robots import RobotDescription


class ResetFailed(RuntimeError):
    """The arm did not reach its home configuration."""


def home_pose(cfg: ResetConfig, robot: RobotDescription, limits: SafetyLimits) -> np.ndarray:
    """The configured home (the robot's by default), checked so that it is safe with any seeded noise."""
    home = np.asarray(cfg.home if cfg.home is not None else robot.home, dtype=np.float64)
    key = "env.hardware.resets.home"
    if home.shape != (robot.n_joints,):
        raise ConfigError(f"invalid value for {key}: {home.tolist()} (needs {robot.n_joints} joint angles)")
    problems = limits.pose_problems(home, robot.tcp_position(home), joint_margin=cfg.joint_noise_rad)
    if problems:
        raise ConfigError(f"invalid value for {key}: {home.tolist()} ({problems[0]}, with joint_noise_rad {cfg.joint_noise_rad:g})")
    return home


class Homing:
    """Joint-space P motion to a target at the control rate, every command through the safety layer.

    The motion ramps up over about a second, well inside the configured acceleration limits, so the
    rate-limit layer never clips joints one by one (which bends the path, and at a workspace face can
    bend it outward: the workspace layer then stops it and the reset stalls). Near a face the path is
    also bent to slide along it (`_keep_in_box`)."""

    def __init__(self, cfg: ResetConfig, robot: RobotDescription, safety, loop, *, virtual: bool):
        self.cfg, self.robot, self.safety, self.loop, self.virtual = cfg, robot, safety, loop, virtual
        self.clock = loop.clock
        self._kin = TcpKinematics(robot)

    def move_to(self, target: np.ndarray) -> None:
        r = self.cfg
        safety = self.safety
        limits = safety.limits
        ramp_step = limits.nominal_period * min(0.5 * a / r.max_speed for a in limits.acceleration)
        ramp = 0.0
        clipped = safety.counters["workspace_clipped"]
        safety.command_gripper(-1.0)  # open
        deadline = self.clock.now() + r.timeout_s
        self.loop.restart()
        while True:
            if self.virtual:
                safety.poll()
            state = safety.read_state()
            if state is None:
                raise ResetFailed(f"reset aborted: {safety.fault.message}")
            error = target - state.q
            if np.max(np.abs(error)) < r.tolerance_rad:
                break
            if self.clock.now() > deadline:
                safety.hold()
                raise ResetFailed(f"home not reached within {r.timeout_s:g} s; joint errors (rad): {np.round(error, 4).tolist()}")
            if safety.counters["workspace_clipped"] != clipped:  # the last command was cut short: ramp again
                clipped, ramp = safety.counters["workspace_clipped"], 0.0
            ramp = min(1.0, ramp + ramp_step)
            command = ramp * self._keep_in_box(state.q, np.clip(r.gain * error, -r.max_speed, r.max_speed), r.max_speed)
            if not safety.command_velocity(command):
                raise ResetFailed(f"reset aborted: {safety.fault.message if safety.fault else 'command refused'}")
            self.loop.wait()
        safety.hold()

    def _keep_in_box(self, q: np.ndarray, dq: np.ndarray, max_speed: float) -> np.ndarray:
        """Bend a scripted joint motion so the TCP slides along a workspace face instead of pushing out.

        A straight joint-space path home can leave the box when the policy parked the TCP at a face; the
        workspace layer (which predicts the TCP one horizon ahead) then scales the whole command to zero and
        the reset stalls. Here the predicted TCP is kept at least a little inside every face it would cross:
        a least-squares joint correction through the position Jacobian, repeated a few times because the
        arm's motion is curved. The safety layer still checks the result as usual."""
        limits = self.safety.limits
        lo, hi = np.asarray(limits.workspace_min), np.asarray(limits.workspace_max)
        h = limits.horizon
        p = np.asarray(self._kin.position(q.tolist()))
        inward = 0.02 * h  # 2 cm/s into the box on a face that would be crossed
        floor, ceiling = np.minimum(p, lo) + inward, np.maximum(p, hi) - inward
        jac = None
        for _ in range(5):
            ahead = np.asarray(self._kin.position((q + dq * h).tolist()))
            target = np.where(ahead < lo, np.maximum(ahead, floor), np.where(ahead > hi, np.minimum(ahead, ceiling), ahead))
            if np.allclose(target, ahead):
                break
            if jac is None:
                jac = jacobian(self.robot, q)[:3]
            dq = np.clip(dq + np.linalg.lstsq(jac, (target - ahead) / h, rcond=None)[0], -max_speed, max_speed)
        return dq


class HumanResetPrompt:
    """Asks the operator to reset the scene; answered with a key: enter/y = done, s = skip, esc = quit."""

    def __init__(self, keys, clock, timeout_s: float, say: Callable[[str], None] = print, poll_s: float = 0.1):
        if not timeout_s > 0:
            raise ConfigError(f"invalid value for env.hardware.resets.human_timeout_s: {timeout_s!r} (must be positive)")
        self.keys, self.clock, self.timeout_s, self.say, self.poll_s = keys, clock, timeout_s, say, poll_s

    def ask(self, reason: str) -> str:
        """'done' | 'skip' | 'quit' | 'timeout'. The caller holds the arm while this runs."""
        self.keys.poll()  # keys pressed before the question are not answers
        self.say(f"RESET THE SCENE ({reason}): press Enter or y when done, s to skip, Esc to stop "
                 f"(waiting up to {self.timeout_s:.0f} s; the arm is held)")
        deadline = self.clock.now() + self.timeout_s
        last_reminder = self.clock.now()
        while True:
            for key in self.keys.poll():
                if key in ("enter", "y"):
                    return "done"
                if key == "s":
                    return "skip"
                if key == "esc":
                    return "quit"
            now = self.clock.now()
            if now >= deadline:
                self.say(f"no answer within {self.timeout_s:.0f} s")
                return "timeout"
            if now - last_reminder >= 15.0:
                self.say(f"... still waiting for the scene reset ({deadline - now:.0f} s left)")
                last_reminder = now
            self.clock.sleep_until(min(deadline, now + self.poll_s))


class ResetRoutine:
    """Between episodes: scripted waypoints through the safety layer, then (when needed) the human prompt.
    The env's own `reset()` then homes, also through the safety layer."""

    def __init__(self, env, plan: ResetConfig, prompt: HumanResetPrompt | None):
        # plan: the env's own settings (env.hw.resets) in deploy and teleop.
        if plan.human not in HUMAN_WHEN:
            raise ConfigError(f"invalid value for env.hardware.resets.human: {plan.human!r} (one of {list(HUMAN_WHEN)})")
        if plan.human != "never" and prompt is None:
            raise ConfigError(f"invalid value for env.hardware.resets.human: {plan.human!r} (needs a keyboard for the prompt; use resets@env.hardware.resets=unattended for unattended runs)")
        self.env, self.plan, self.prompt = env, plan, prompt
        self.waypoints = [self._checked(i, w) for i, w in enumerate(plan.waypoints)]

    def _checked(self, i: int, waypoint) -> np.ndarray:
        env = self.env
        q = np.asarray(waypoint, dtype=np.float64)
        key = f"env.hardware.resets.waypoints[{i}]"
        if q.shape != env.home.shape or not np.all(np.isfinite(q)):
            raise ConfigError(f"invalid value for {key}: {list(waypoint)!r} (needs {env.home.shape[0]} finite joint angles)")
        problems = env.safety.limits.pose_problems(q, env.robot.tcp_position(q))
        if problems:
            raise ConfigError(f"invalid value for {key}: {problems[0]}")
        return q

    def between_episodes(self, previous_success: bool | None) -> str:
        """Run the scripted motions and the prompt if needed: 'ok' | 'skip' | 'quit' | 'timeout'."""
        for q in self.waypoints:
            self.env.move_joints(q)
        human = self.plan.human
        needed = human == "every_episode" or (human == "after_success" and bool(previous_success))
        if not needed:
            return "ok"
        self.env.safety.hold()
        reason = "the kettle is in the sink" if previous_success else "before the next episode"
        answer = self.prompt.ask(reason)
        return "ok" if answer == "done" else answer
