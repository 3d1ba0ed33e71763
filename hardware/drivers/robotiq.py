"""Robotiq 2F-85 / 2F-140 gripper on a Universal Robots arm, through the Robotiq URCap's socket server.

On a UR arm the gripper hangs off the controller (tool connector or control box), so the PC has no Modbus
link of its own to it. The Robotiq URCap, installed on the controller, already drives the gripper and
exposes it as a small ASCII server on TCP port 63352 (the one its own URScript functions talk to). That is
how most labs drive this gripper on UR arms: no extra cable, no URScript program, and it runs next to
ur_rtde without disturbing it.

Protocol, one request then one reply, in order:
    "SET <VAR> <int> [<VAR> <int> ...]\\n"  ->  "ack"        (several variables set at once)
    "GET <VAR>\\n"                          ->  "<VAR> <int>\\n"
Variables: ACT activate (1), GTO go to the requested position (1), POS requested (SET) or measured (GET)
position 0..255 (0 open, 255 closed), SPE speed and FOR force 0..255, STA 0 reset / 1 activating / 3
active, OBJ 0 moving / 1 contact while opening / 2 contact while closing / 3 at the requested position,
FLT fault code, PRE the position request echoed.

Every reply is checked. A reply that is not the one expected (or none, or a closed socket) raises
DriverError and drops the connection: the stream may be out of step, and the next request must not read
the previous one's late reply. `connect()` again to go on.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time

from hardware.drivers.base import DriverConnectError, DriverError

# gFLT codes of the 2F-85/2F-140 manual (section 4.4, "Gripper status").
FAULTS = {
    5: "action delayed: the activation must finish first",
    7: "the activation bit must be set before any action",
    8: "maximum operating temperature exceeded; let the gripper cool down",
    9: "no communication for at least 1 s",
    10: "supply voltage under the minimum",
    11: "automatic release in progress",
    12: "internal fault; contact Robotiq support",
    13: "activation fault: check that nothing blocks the fingers",
    14: "overcurrent triggered",
    15: "automatic release completed",
}
_GET_REPLY = re.compile(r"([A-Z]{3}) (\d+)")


class _BadReply(Exception):
    """What came back (or did not); turned into a DriverError naming the request."""


class RobotiqGripper:
    kind = "robotiq"

    def __init__(
        self,
        host: str,
        port: int = 63352,
        *,
        max_width: float = 0.085,
        timeout_s: float = 1.0,
        speed: int = 255,
        force: int = 100,
    ):
        if not (math.isfinite(max_width) and max_width > 0):
            raise ValueError(f"robotiq: max_width must be > 0 m, got {max_width}")
        if not timeout_s > 0:
            raise ValueError(f"robotiq: timeout_s must be > 0, got {timeout_s}")
        for name, value in (("speed", speed), ("force", force)):
            if not (isinstance(value, int) and 0 <= value <= 255):
                raise ValueError(f"robotiq: {name} must be an integer in 0..255, got {value!r}")
        self.host, self.port = host, int(port)
        self.max_width, self.timeout_s = float(max_width), float(timeout_s)
        self.speed, self.force = speed, force
        self._sock: socket.socket | None = None
        self._buf = b""
        # One request/reply pair at a time (control thread and safety watchdog); re-entrant for status().
        self._lock = threading.RLock()

    @property
    def name(self) -> str:
        return f"robotiq {self.host}:{self.port}"

    @property
    def is_connected(self) -> bool:
        return self._sock is not None

    # -- lifecycle ---------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the connection within `timeout_s` or raise DriverConnectError."""
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise DriverConnectError(
                f"{self.name}: cannot connect within {self.timeout_s:.1f} s: {exc or type(exc).__name__} "
                "(Robotiq URCap installed and the gripper connected?)"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sock, self._buf = sock, b""

    def close(self) -> None:
        """Release the connection. Safe to call twice, and from another thread while a request waits
        (that request then fails with DriverError); deliberately not behind the lock."""
        sock, self._sock = self._sock, None
        if sock is not None:
            _shut(sock)

    def activate(self, timeout_s: float = 5.0) -> None:
        """Activate the gripper unless it is active (STA 3); raise DriverError if it is not within `timeout_s`.
        The lock is taken per request, so a watchdog can still talk to the gripper meanwhile."""
        if self._get("STA") == 3:
            return
        self._set(ACT=1, GTO=1)
        deadline = time.monotonic() + timeout_s
        while (sta := self._get("STA")) != 3:
            if time.monotonic() >= deadline:
                flt = self._get("FLT")
                raise DriverError(
                    f"{self.name}: not active {timeout_s:.1f} s after 'SET ACT 1 GTO 1' (STA {sta}, FLT {flt}); "
                    "check the gripper's power and that nothing blocks the fingers"
                )
            time.sleep(0.01)

    # -- commands and state ------------------------------------------------------------------------
    def move_to_width(self, width_m: float) -> None:
        """Start moving to the finger opening `width_m` (clamped to [0, max_width]); returns at once."""
        if not math.isfinite(width_m):
            raise ValueError(f"{self.name}: width must be finite, got {width_m}")
        self._set(POS=self.width_to_position(width_m), SPE=self.speed, FOR=self.force, GTO=1)

    def width(self) -> float:
        """The measured finger opening (m)."""
        return self.position_to_width(self._get("POS"))

    def status(self) -> dict[str, int]:
        """STA, OBJ, FLT and the measured POS, read back to back."""
        with self._lock:
            return {var.lower(): self._get(var) for var in ("STA", "OBJ", "FLT", "POS")}

    def fault(self) -> str | None:
        """None when FLT is 0, else a message naming the code."""
        code = self._get("FLT")
        if code == 0:
            return None
        return f"{self.name}: fault {code} (0x{code:02X}): {FAULTS.get(code, 'unknown code; see the gripper manual')}"

    def width_to_position(self, width_m: float) -> int:
        """0 m -> 255 (closed), max_width -> 0 (open), linear in between, clamped."""
        width = min(max(float(width_m), 0.0), self.max_width)
        return round(255 * (1.0 - width / self.max_width))

    def position_to_width(self, position: int) -> float:
        return (255 - min(max(position, 0), 255)) / 255 * self.max_width

    # -- the wire ----------------------------------------------------------------------------------
    def _set(self, **values: int) -> None:
        self._request("SET " + " ".join(f"{var} {int(value)}" for var, value in values.items()), None)

    def _get(self, var: str) -> int:
        return int(self._request(f"GET {var}", var))

    def _request(self, line: str, var: str | None) -> str:
        """Send one line and read its reply: "ack" for a SET (var None), the value for a GET."""
        with self._lock:
            sock = self._sock
            if sock is None:
                raise DriverError(f"{self.name}: not connected (request {line!r} not sent; call connect())")
            try:
                sock.sendall(line.encode("ascii") + b"\n")
                reply = self._read_reply(sock, var is None)
                if var is None:
                    if reply != "ack":
                        raise _BadReply(f"got {reply!r} instead of 'ack'")
                    return reply
                match = _GET_REPLY.fullmatch(reply)
                if match is None or match.group(1) != var:
                    raise _BadReply(f"got {reply!r} instead of '{var} <integer>'")
                return match.group(2)
            except (OSError, _BadReply) as exc:
                if self._sock is sock:
                    self.close()
                what = str(exc) if isinstance(exc, _BadReply) else f"{type(exc).__name__}: {exc}"
                raise DriverError(f"{self.name}: sent {line!r}, {what}; connection dropped, connect() again") from None

    def _read_reply(self, sock: socket.socket, is_set: bool) -> str:
        """One reply: a line, or a bare "ack" (the URCap sends it without a newline)."""
        deadline = time.monotonic() + self.timeout_s
        buf = self._buf
        while True:
            buf = buf.lstrip(b"\r\n")
            if b"\n" in buf:
                reply, self._buf = buf.split(b"\n", 1)
                return reply.rstrip(b"\r").decode("ascii", "replace")
            if is_set and buf.startswith(b"ack"):
                self._buf = buf[3:]
                return "ack"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _BadReply(f"no reply within {self.timeout_s:.1f} s (got {buf!r} so far)")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(256)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                raise _BadReply(f"the server closed the connection (got {buf!r} before)")
            buf += chunk or b""


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a recv() waiting in another thread
    except OSError:
        pass
    sock.close()
