"""A fake of the Robotiq URCap's socket server (port 63352) on loopback, for the gripper client's tests
and the UR driver's: STA goes 0 -> 1 -> 3 after ACT, POS follows the request a step per read, FLT and any
reply can be planted."""

from __future__ import annotations

import socket
import threading

CLOSE, SILENT = object(), object()


class FakeURCap:
    def __init__(self, activation_reads: int = 2, step: int = 100):
        self.activation_reads, self.step = activation_reads, step
        self.vars = dict(ACT=0, GTO=0, POS=0, PRE=0, SPE=0, FOR=0, STA=0, OBJ=0, FLT=0)
        self.lines: list[str] = []  # every request line, in order
        self.overrides: dict[str, object] = {}  # request line -> raw reply bytes, CLOSE or SILENT
        self.connections = 0
        self._sta_reads = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="fake-urcap", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buf = b""
        while not self._stop.is_set():
            try:
                data = conn.recv(256)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode()
                self.lines.append(line)
                reply = self.overrides.get(line) or self._handle(line)
                if reply is CLOSE:
                    return
                if reply is not SILENT:
                    conn.sendall(reply)

    def _handle(self, line: str) -> bytes:
        verb, *words = line.split()
        v = self.vars
        if verb == "SET":
            for var, value in zip(words[::2], words[1::2]):
                if var == "POS":
                    v["PRE"] = int(value)  # the request; GET POS answers the measured position
                else:
                    v[var] = int(value)
                if var == "ACT" and int(value) == 1 and v["STA"] == 0:
                    v["STA"], self._sta_reads = 1, 0
            return b"ack"
        (var,) = words
        if var == "STA" and v["STA"] == 1:
            self._sta_reads += 1
            if self._sta_reads >= self.activation_reads:
                v["STA"] = 3
        if var == "POS" and v["STA"] == 3 and v["GTO"] == 1:
            error = v["PRE"] - v["POS"]
            v["POS"] += max(-self.step, min(self.step, error))
            v["OBJ"] = 3 if v["POS"] == v["PRE"] else 0
        return f"{var} {v[var]}\n".encode()
