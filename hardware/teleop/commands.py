"""Key presses -> a velocity command in joint or end-effector space -> an action in the policy's space.

A terminal reports key repeats, not key releases, so a press drives its axis for `hold_s` after the
last repeat (longer than the terminal's initial repeat delay) and then stops: letting go of a key stops
the arm within `hold_s`. Space stops every axis at once. Commands are expressed as normalised actions
(`EnvSpec.normalise_command`), so the env scales them exactly as it scales a policy's, and the safety
layer filters them like any other command.

Joint mode: q/a w/s e/d r/f t/g y/h u/j move joints 1..7 up/down (a gamepad sends joint1+ .. joint7-).
End-effector mode: w/s +x/-x, a/d +y/-y, r/f +z/-z (robot base frame; arrows also move x/y); the hand's
orientation is held. Joint velocities come from a damped least-squares inverse of the 6-D Jacobian of
the shared robot description, scaled down uniformly so no joint exceeds its share of the action limit.
Both modes: o open / c close the gripper, +/- speed up/down.
"""

from __future__ import annotations

import numpy as np

from hardware.safety.kinematics import jacobian
from robolearn.spec import EnvSpec

JOINT_KEYS = {k: (i, s) for i, (up, down) in enumerate(["qa", "ws", "ed", "rf", "tg", "yh", "uj"]) for k, s in ((up, 1.0), (down, -1.0))}
# The gamepad's names for the same motions (hardware/teleop/gamepad.py): no terminal sends them, so a
# stick can never be read as a control key (the reset prompt's y/s, say) the way these letters can.
JOINT_KEYS |= {f"joint{i + 1}{'+' if s > 0 else '-'}": (i, s) for i in range(7) for s in (1.0, -1.0)}
EE_KEYS = {
    "w": (0, 1.0), "s": (0, -1.0), "up": (0, 1.0), "down": (0, -1.0),
    "a": (1, 1.0), "d": (1, -1.0), "left": (1, 1.0), "right": (1, -1.0),
    "r": (2, 1.0), "f": (2, -1.0),
}
MODES = ("joint", "ee")


class TeleopCommander:
    def __init__(self, spec: EnvSpec, mode: str = "joint", *, speed: float = 0.3, ee_speed: float = 0.05,
                 hold_s: float = 0.6, damping: float = 0.05):
        if mode not in MODES:
            raise ValueError(f"teleop mode must be one of {MODES}, got {mode!r}")
        if not 0 < speed <= 1:
            raise ValueError(f"teleop speed must be in (0, 1] of the action limit, got {speed!r}")
        if ee_speed <= 0 or hold_s <= 0 or damping <= 0:
            raise ValueError(f"teleop ee_speed, hold_s and damping must be positive, got {ee_speed!r}, {hold_s!r}, {damping!r}")
        if spec.command_unit != "rad/s":
            raise ValueError("teleop drives joint or end-effector velocities: it needs env.control_mode=joint_velocity")
        self.spec, self.mode = spec, mode
        self.speed, self.ee_speed, self.hold_s, self.damping = float(speed), float(ee_speed), float(hold_s), float(damping)
        self.gripper = -1.0  # open
        self.commands = 0  # motion and gripper keys handled: a teleop episode without any was driven by nobody
        n_axes = spec.n_joints if mode == "joint" else 3
        self._direction = np.zeros(n_axes)
        self._until = np.full(n_axes, -np.inf)
        # A 6-joint arm (UR) has no joint 7: its keys (u/j, joint7+/-) are not motion keys there.
        self.keys = {k: v for k, v in JOINT_KEYS.items() if v[0] < n_axes} if mode == "joint" else EE_KEYS

    def press(self, key: str, now: float) -> bool:
        """Handle a motion key; False if the key is not a motion key (the caller may use it)."""
        if key == "space":
            self.stop()
        elif key == "o":
            self.gripper = -1.0
            self.commands += 1
        elif key == "c":
            self.gripper = 1.0
            self.commands += 1
        elif key in ("+", "="):
            self.speed = min(1.0, self.speed * 1.25)
        elif key in ("-", "_"):
            self.speed = max(0.05, self.speed / 1.25)
        elif key in self.keys:
            axis, sign = self.keys[key]
            if self._direction[axis] != sign:
                self._direction[axis] = sign  # a reversal takes over at once
            self._until[axis] = now + self.hold_s
            self.commands += 1
        else:
            return False
        return True

    def stop(self) -> None:
        self._direction[:] = 0.0
        self._until[:] = -np.inf

    def active(self, now: float) -> bool:
        return bool(np.any(self._direction * (self._until >= now)))

    def joint_command(self, now: float, q: np.ndarray) -> np.ndarray:
        """Joint command (rad/s or N·m as the spec's control mode means) for the keys held at `now`."""
        live = self._direction * (self._until >= now)
        limits = self.spec.command_limits * self.speed
        if self.mode == "joint":
            return live * limits
        twist = np.zeros(6)
        twist[:3] = live * self.ee_speed
        if not twist.any():
            return np.zeros(self.spec.n_joints)
        J = jacobian(self.spec.robot, q)
        dq = J.T @ np.linalg.solve(J @ J.T + self.damping**2 * np.eye(6), twist)
        over = np.max(np.abs(dq) / limits)
        return dq / over if over > 1.0 else dq

    def action(self, now: float, q: np.ndarray) -> np.ndarray:
        """The command as a normalised action (float32, shape of the action space)."""
        return self.spec.normalise_command(self.joint_command(now, q), self.gripper)
