"""Non-blocking keyboard input for teleop: a thread reads key presses from a terminal (or any file
descriptor, e.g. a pipe in tests) and queues them; the control loop drains the queue once per step.

The terminal is put in cbreak mode (keys arrive without Enter, Ctrl-C still interrupts) and restored on
`close()`. The control loop never blocks on input: no `input()`, no blocking read on its thread.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading

class InputUnavailable(RuntimeError):
    """No input device a person can drive the arm with: refused before anything moves."""


def stdin_fd() -> int | None:
    """Standard input's descriptor, or None when there is none (closed, or replaced by an object without one)."""
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def terminal_problem(fd: int | None) -> str | None:
    """Why keys cannot be read from `fd` by a person at a terminal, or None.

    Not a terminal (a pipe, /dev/null, a service): nobody is typing. A terminal whose foreground is another
    process group (started with `&`, or under `timeout` without `--foreground`): the kernel stops this
    process (SIGTTOU/SIGTTIN) the moment it sets cbreak mode or reads, silently."""
    if fd is None or not os.isatty(fd):
        return "standard input is not a terminal (no TTY: a pipe, a file or a service); run it in a terminal, or use a gamepad (device=gamepad)"
    try:
        foreground = os.tcgetpgrp(fd)
    except OSError as exc:
        return f"cannot ask the terminal for its foreground process group: {exc}"
    if foreground != os.getpgrp():
        return ("this process is not in the terminal's foreground (started in the background, or under `timeout` without "
                "`--foreground`): the terminal would stop it when it reads keys; run it in the foreground (`timeout --foreground ...`)")
    return None


# Escape sequences terminals send for the arrow keys.
_ESCAPES = {b"\x1b[A": "up", b"\x1b[B": "down", b"\x1b[C": "right", b"\x1b[D": "left"}


def decode_keys(data: bytes) -> list[str]:
    """Bytes from a terminal -> key names: printable characters as themselves, arrows as up/down/left/right,
    a lone escape as 'esc', space as 'space', Enter as 'enter'."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        chunk = data[i : i + 3]
        if chunk in _ESCAPES:
            keys.append(_ESCAPES[chunk])
            i += 3
            continue
        byte = data[i : i + 1]
        i += 1
        if byte == b"\x1b":
            keys.append("esc")
        elif byte == b" ":
            keys.append("space")
        elif byte in (b"\n", b"\r"):
            keys.append("enter")
        else:
            try:
                char = byte.decode("ascii")
            except UnicodeDecodeError:
                continue
            if char.isprintable():
                keys.append(char)
    return keys


class KeyboardReader:
    """Key presses from `fd` (default: stdin), read by a background thread."""

    def __init__(self, fd: int | None = None, poll_s: float = 0.02):
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.poll_s = poll_s
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved_tty = None
        self.closed_input = False  # the other end went away (EOF)

    def start(self, require_terminal: bool = False) -> KeyboardReader:
        """require_terminal: raise InputUnavailable unless a person can type into `fd` (a foreground terminal).
        Otherwise a terminal this process does not own (in the background) is left alone, with no keys read:
        setting its mode or reading it would stop the process."""
        problem = terminal_problem(self.fd)
        if require_terminal and problem:
            raise InputUnavailable(f"keyboard: {problem}")
        if os.isatty(self.fd) and problem:
            self.closed_input = True
            return self
        if os.isatty(self.fd):
            import termios
            import tty

            self._saved_tty = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        self._thread = threading.Thread(target=self._read_loop, name="teleop-keyboard", daemon=True)
        self._thread.start()
        return self

    def poll(self) -> list[str]:
        """Keys pressed since the last poll, oldest first. Never blocks."""
        keys = []
        while True:
            try:
                keys.append(self._queue.get_nowait())
            except queue.Empty:
                return keys

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        if self._saved_tty is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None

    def __enter__(self) -> KeyboardReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], self.poll_s)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 64)
            except OSError:
                data = b""
            if not data:
                self.closed_input = True
                return
            for key in decode_keys(data):
                self._queue.put(key)


class ScriptedKeys:
    """A key source that replays a script: {step index: [keys]} (tests and dry runs)."""

    def __init__(self, script: dict[int, list[str]]):
        self.script = {int(k): list(v) for k, v in script.items()}
        self.calls = 0

    def poll(self) -> list[str]:
        keys = self.script.get(self.calls, [])
        self.calls += 1
        return keys

    def close(self) -> None:
        pass
