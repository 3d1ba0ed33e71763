"""A simulated UR e-Series controller behind ur_rtde's three classes: dry runs and tests of the UR driver.

UR's own simulator (URSim) needs Docker, which these machines do not have. So `driver.simulated: true`
hands the UR driver (hardware/drivers/ur.py) these stand-ins for `RTDEControlInterface`,
`RTDEReceiveInterface` and `DashboardClient`: the driver's own code runs unchanged, and the controller
behaves like the real one wherever the driver relies on it:

- `speedJ`: every joint tracks its target speed at the given acceleration; `speedStop` decelerates.
- `directTorque` (PolyScope >= 5.23 only, as on the real controller): a damped inertia per joint on top
  of gravity compensation; `getMassMatrix` / `getCoriolisAndCentrifugalTorques` report that same model.
- The RTDE watchdog: not kicked within 1 / min_frequency, the control script stops and the arm stops.
- A joint past its range or over its speed limit: protective stop. A protective stop unlocks through the
  dashboard only 5 s after it happened; an emergency stop only by releasing it (`release_emergency_stop`).
- Dashboard answers in the controller's words (robot mode, safety status, remote control, PolyScope
  version, model); the payload is read over RTDE.

Time is the clock the driver runs on, so on a `VirtualClock` a dry run repeats bit for bit. Fault hooks
(`protective_stop`, `emergency_stop`, `cut_link`, `freeze_state`, `power_off`, ...) inject what real arms do.
"""

from __future__ import annotations

import threading
import types
from collections import deque

import numpy as np

from hardware.drivers.joint_motion import damped_inertia, track_velocity
from hardware.timing import Clock
from robolearn.robots import RobotDescription

# RTDE numbering (ur_rtde's getSafetyMode / getRobotMode docs).
NORMAL, PROTECTIVE_STOP, ROBOT_EMERGENCY_STOP = 1, 3, 7
POWER_OFF, RUNNING = 3, 7
_ROBOT_MODE_WORDS = {3: "POWER_OFF", 4: "POWER_ON", 5: "IDLE", 7: "RUNNING"}
_SAFETY_WORDS = {1: "NORMAL", 3: "PROTECTIVE_STOP", 7: "ROBOT_EMERGENCY_STOP"}
UNLOCK_DELAY_S = 5.0  # the controller refuses to unlock a protective stop sooner
TORQUE_SINCE = (5, 23)  # PolyScope release that added direct torque control
_STOP_ACCELERATION = 4.0  # rad/s^2 when the script stops (watchdog) or on speedStop without one
_MODELS = {"ur3e": "UR3", "ur5e": "UR5", "ur10e": "UR10", "ur16e": "UR16"}


class SimulatedURController:
    """The robot side: joints, the running control script, its watchdog, safety and robot modes."""

    def __init__(
        self,
        robot: RobotDescription,
        clock: Clock,
        *,
        polyscope: str = "5.23.0",
        remote_control: bool = True,
        payload_kg: float = 1.0,
        inertia: tuple[float, ...] = (2.5, 2.5, 1.2, 0.3, 0.3, 0.15),
        damping: tuple[float, ...] = (20.0, 20.0, 10.0, 3.0, 3.0, 1.5),
        initial_q=None,
    ):
        n = robot.n_joints
        self.robot = robot
        self.clock = clock
        self.polyscope = polyscope
        self.remote_control = remote_control
        self.payload_kg = payload_kg
        self.payload_cog = [0.0, 0.0, 0.05]
        self.inertia = np.resize(np.asarray(inertia, dtype=np.float64), n)
        self.damping = np.resize(np.asarray(damping, dtype=np.float64), n)
        self.q = np.array(robot.home if initial_q is None else initial_q, dtype=np.float64)
        self.qd = np.zeros(n)
        self.safety_mode = NORMAL
        self.robot_mode = RUNNING
        self.program_running = True
        self.link_up = True
        self.link_generation = 0  # a cut link kills every client made before it, as a dead socket does
        self.clients = 0  # RTDE control clients connected (the controller takes one)
        self.calls: deque[tuple] = deque(maxlen=4096)  # what the driver asked, newest last
        self._boot = clock.now()
        self._t = self._boot
        self._mode = "speed"  # speed | torque
        self._target = np.zeros(n)
        self._accel = _STOP_ACCELERATION
        self._tau = np.zeros(n)
        self._watchdog_period: float | None = None
        self._last_kick = self._t
        self._protective_since: float | None = None
        self._frozen: tuple | None = None
        self.lock = threading.RLock()

    # -- what the classes below call ---------------------------------------------------------------
    @property
    def torque_supported(self) -> bool:
        return _version(self.polyscope) >= TORQUE_SINCE

    def advance(self) -> None:
        """Integrate to now, stopping the script where its watchdog expired on the way."""
        with self.lock:
            now = self.clock.now()
            if self._watchdog_period is not None and self.program_running:
                expiry = self._last_kick + self._watchdog_period
                if expiry < now:
                    self._integrate(max(expiry - self._t, 0.0))
                    self._t = max(self._t, expiry)
                    self.stop_script()
            self._integrate(now - self._t)
            self._t = max(self._t, now)

    def record(self, *call) -> None:
        with self.lock:
            self.advance()
            self.calls.append(call)

    def require_link(self, what: str, generation: int | None = None) -> None:
        if not self.link_up or (generation is not None and generation != self.link_generation):
            raise RuntimeError(f"{what}: RTDE connection lost (simulated)")

    def kick(self) -> None:
        self._last_kick = self.clock.now()

    def arm_watchdog(self, min_frequency: float) -> None:
        self._watchdog_period = 1.0 / float(min_frequency)
        self.kick()

    def speed(self, qd, acceleration: float) -> bool:
        if not self._accepting():
            return False
        self._mode, self._target, self._accel = "speed", np.asarray(qd, dtype=np.float64).copy(), float(acceleration)
        self._tau[:] = 0.0
        return True

    def speed_stop(self, deceleration: float) -> None:
        self._mode, self._target, self._accel = "speed", np.zeros_like(self.q), float(deceleration) or _STOP_ACCELERATION

    def torque(self, tau) -> bool:
        if not self.torque_supported or not self._accepting():
            return False
        self._mode, self._tau = "torque", np.asarray(tau, dtype=np.float64).copy()
        return True

    def measured_torque(self) -> np.ndarray:
        return self._tau.copy() if self._mode == "torque" else np.zeros_like(self.q)

    def stop_script(self) -> None:
        """The script ends (its watchdog fired, or it was stopped): the arm decelerates to rest."""
        self.program_running = False
        self.speed_stop(_STOP_ACCELERATION)
        self._tau[:] = 0.0

    def restart_script(self) -> bool:
        if self.safety_mode != NORMAL or self.robot_mode != RUNNING:
            return False
        self.program_running = True
        self.kick()
        return True

    def unlock_protective_stop(self) -> str:
        if self.safety_mode != PROTECTIVE_STOP:
            return "Protective stop releasing"  # nothing to unlock: the controller answers the same
        if self.clock.now() - self._protective_since < UNLOCK_DELAY_S:
            return f"Cannot unlock protective stop until {UNLOCK_DELAY_S:.0f}s after occurrence. Always inspect cause of protective stop before unlocking"
        self.safety_mode, self._protective_since = NORMAL, None
        return "Protective stop releasing"

    def sample(self) -> tuple[float, list[float], list[float]]:
        """(controller time, q, qd); a frozen link keeps answering its last sample."""
        if self._frozen is not None:
            return self._frozen
        return self._t - self._boot, self.q.tolist(), self.qd.tolist()

    # -- fault hooks ---------------------------------------------------------------------------------
    def protective_stop(self) -> None:
        """The controller stops the arm (a collision, a limit, the operator's protective stop input)."""
        with self.lock:
            self.advance()
            self._brake()
            self.safety_mode, self._protective_since = PROTECTIVE_STOP, self.clock.now()

    def emergency_stop(self) -> None:
        with self.lock:
            self.advance()
            self._brake()
            self.safety_mode = ROBOT_EMERGENCY_STOP

    def release_emergency_stop(self) -> None:
        """The operator twists the e-stop button out; the arm stays off until powered on again."""
        with self.lock:
            self.advance()
            self.safety_mode, self.robot_mode = NORMAL, POWER_OFF

    def power_off(self) -> None:
        with self.lock:
            self.advance()
            self._brake()
            self.robot_mode = POWER_OFF

    def power_on(self) -> None:
        """Power on and release the brakes (pendant or dashboard)."""
        with self.lock:
            self.advance()
            self.robot_mode = RUNNING

    def cut_link(self) -> None:
        """The network to the controller goes down; the arm goes on until the RTDE watchdog stops it."""
        with self.lock:
            self.advance()
            self.link_up = False
            self.link_generation += 1

    def restore_link(self) -> None:
        with self.lock:
            self.advance()
            self.link_up = True

    def freeze_state(self) -> None:
        """Receive keeps answering with the current sample (same timestamp): state gone stale."""
        with self.lock:
            self.advance()
            self._frozen = self.sample()

    def unfreeze_state(self) -> None:
        with self.lock:
            self._frozen = None

    def move_by_hand(self, q) -> None:
        """Freedrive by an operator (e.g. back inside the limits after a stop)."""
        with self.lock:
            self.advance()
            self.q = np.asarray(q, dtype=np.float64).copy()
            self.qd[:] = 0.0

    # -- simulation ----------------------------------------------------------------------------------
    def _accepting(self) -> bool:
        return self.program_running and self.safety_mode == NORMAL and self.robot_mode == RUNNING

    def _brake(self) -> None:
        self.qd[:] = 0.0
        self.stop_script()

    def _integrate(self, dt: float) -> None:
        if dt <= 0:
            return
        if self._mode == "torque":
            self.q, self.qd = damped_inertia(self.q, self.qd, self._tau, self.inertia, self.damping, dt)
        else:
            self.q, self.qd = track_velocity(self.q, self.qd, self._target, self._accel, dt)
        r = self.robot
        if np.any(self.q < r.q_min) or np.any(self.q > r.q_max) or np.any(np.abs(self.qd) > r.dq_max + 1e-9):
            self.q = np.clip(self.q, r.q_min, r.q_max)
            self._brake()
            self.safety_mode, self._protective_since = PROTECTIVE_STOP, self.clock.now()

    # -- ur_rtde's classes, bound to this controller ---------------------------------------------------
    def rtde(self) -> types.SimpleNamespace:
        """A stand-in for the `rtde_control` / `rtde_receive` / `dashboard_client` modules' classes."""
        return types.SimpleNamespace(
            RTDEControlInterface=lambda host, frequency: _Control(self, host, frequency),
            RTDEReceiveInterface=lambda host, frequency: _Receive(self, host, frequency),
            DashboardClient=lambda host: _Dashboard(self, host),
        )


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


class _Control:
    def __init__(self, c: SimulatedURController, host: str, frequency: float):
        c.require_link(f"RTDEControlInterface({host})")
        self.c = c
        self._generation = c.link_generation
        c.record("control_connect", host, frequency)
        c.clients += 1
        c.restart_script()  # ur_rtde uploads and starts its control script on connect
        self._connected = True

    def _call(self, *call):
        self.c.require_link(call[0], self._generation)
        self.c.record(*call)

    def setWatchdog(self, min_frequency=10.0):
        with self.c.lock:
            self._call("setWatchdog", min_frequency)
            self.c.arm_watchdog(min_frequency)
            return True

    def kickWatchdog(self):
        with self.c.lock:
            self._call("kickWatchdog")
            self.c.kick()
            return True

    def speedJ(self, qd, acceleration=0.5, time=0.0):
        with self.c.lock:
            self._call("speedJ", list(qd), acceleration, time)
            return self.c.speed(qd, acceleration)

    def speedStop(self, a=10.0):
        with self.c.lock:
            self._call("speedStop", a)
            self.c.speed_stop(a)
            return True

    def directTorque(self, torque, viscous_scale=None, coulomb_scale=None):
        with self.c.lock:
            self._call("directTorque", list(torque))
            return self.c.torque(torque)

    def getMassMatrix(self, q=(), include_rotors_inertia=False):
        with self.c.lock:
            self._call("getMassMatrix")
            if not self.c.torque_supported:
                raise RuntimeError("unable to get state data for specified key: output_double_register_24")
            return np.diag(self.c.inertia).ravel().tolist()

    def getCoriolisAndCentrifugalTorques(self, q=(), qd=()):
        with self.c.lock:
            self._call("getCoriolisAndCentrifugalTorques")
            if not self.c.torque_supported:
                raise RuntimeError("unable to get state data for specified key: output_double_register_24")
            # The model's velocity-dependent torque: here the joints' viscous damping.
            return (self.c.damping * np.asarray(qd if len(qd) else self.c.qd, dtype=np.float64)).tolist()

    def getJointTorques(self):
        with self.c.lock:
            self.c.require_link("getJointTorques", self._generation)
            self.c.advance()
            return self.c.measured_torque().tolist()

    def isProgramRunning(self):
        with self.c.lock:
            self.c.require_link("isProgramRunning", self._generation)
            self.c.advance()
            return self.c.program_running

    def isConnected(self):
        return self._connected and self.c.link_up and self._generation == self.c.link_generation

    def reuploadScript(self):
        with self.c.lock:
            self._call("reuploadScript")
            return self.c.restart_script()

    def stopScript(self):
        with self.c.lock:
            self._call("stopScript")
            self.c.stop_script()

    def disconnect(self):
        with self.c.lock:
            if self._connected:
                self.c.clients -= 1
            self._connected = False
            self.c.calls.append(("control_disconnect",))


class _Receive:
    def __init__(self, c: SimulatedURController, host: str, frequency: float):
        c.require_link(f"RTDEReceiveInterface({host})")
        self.c = c
        self._generation = c.link_generation
        self._connected = True

    def _get(self, what: str):
        self.c.require_link(what, self._generation)
        self.c.advance()
        return self.c.sample()

    def getTimestamp(self):
        with self.c.lock:
            return self._get("getTimestamp")[0]

    def getActualQ(self):
        with self.c.lock:
            return self._get("getActualQ")[1]

    def getActualQd(self):
        with self.c.lock:
            return self._get("getActualQd")[2]

    def getSafetyMode(self):
        with self.c.lock:
            self._get("getSafetyMode")
            return self.c.safety_mode

    def getRobotMode(self):
        with self.c.lock:
            self._get("getRobotMode")
            return self.c.robot_mode

    def getPayload(self):
        return self.c.payload_kg

    def getPayloadCog(self):
        return list(self.c.payload_cog)

    def isConnected(self):
        return self._connected and self.c.link_up and self._generation == self.c.link_generation

    def disconnect(self):
        self._connected = False


class _Dashboard:
    def __init__(self, c: SimulatedURController, host: str):
        self.c = c
        self._connected = False

    def _ask(self, what: str):
        if not self._connected:
            raise RuntimeError(f"dashboard {what}: not connected")
        self.c.require_link(f"dashboard {what}")
        self.c.record(what)

    def connect(self, timeout_ms=2000):
        self.c.require_link("dashboard connect")
        self._connected = True

    def isConnected(self):
        return self._connected and self.c.link_up

    def disconnect(self):
        self._connected = False

    def closeSafetyPopup(self):
        self._ask("closeSafetyPopup")

    def unlockProtectiveStop(self):
        with self.c.lock:
            self._ask("unlockProtectiveStop")
            return self.c.unlock_protective_stop()

    def isInRemoteControl(self):
        self._ask("isInRemoteControl")
        return self.c.remote_control

    def robotmode(self):
        self._ask("robotmode")
        return f"Robotmode: {_ROBOT_MODE_WORDS.get(self.c.robot_mode, self.c.robot_mode)}"

    def safetystatus(self):
        self._ask("safetystatus")
        return f"Safetystatus: {_SAFETY_WORDS.get(self.c.safety_mode, self.c.safety_mode)}"

    def polyscopeVersion(self):
        self._ask("polyscopeVersion")
        return f"URSoftware {self.c.polyscope}.12345 (simulated)"

    def getRobotModel(self):
        self._ask("getRobotModel")
        return _MODELS.get(self.c.robot.name, self.c.robot.name.upper())

    def getSerialNumber(self):
        self._ask("getSerialNumber")
        return "SIMULATED"
