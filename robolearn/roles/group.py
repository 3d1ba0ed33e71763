"""A group of role processes on one machine: per-run keys, each role started as `python -m <module> <args>`
with its output in `<run_dir>/<name>.log`, the replay server's endpoints awaited, the roles stopped in order,
and a role that fails named with its log's last lines.

Used by every launcher of roles: the main job's asynchronous runner (robolearn.training.async_runner), the
launcher of hand-written role configs (robolearn.roles.launch) and the transport soak (robolearn.transport.soak).
"""

from __future__ import annotations

import ctypes
import json
import logging
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable

from robolearn.interventions import DEMO_STREAM_SUFFIX
from robolearn.transport.security import generate_keys

log = logging.getLogger(__name__)

LOG_LINES = 20  # a failed role's last log lines, in the error that names it


class RoleFailed(RuntimeError):
    """A role process exited when it should not have: named, with its log's last lines."""


def run_keys(run_dir: Path, actors: int) -> Path:
    """Per-run CURVE keys: the server's, the learner's and one per actor bound to its own name, in a folder
    only the owner can read (kept across a resume in the same run directory, so the roles find them again)."""
    keys = run_dir / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    keys.chmod(0o700)
    names = [f"actor{i}" for i in range(actors)]
    # Each actor's key may also send its interventions' demo stream (robolearn/interventions.py).
    generate_keys(keys, ["learner", *names], names={name: [name, name + DEMO_STREAM_SUFFIX] for name in names})
    return keys


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the launcher dies (even by SIGKILL), so no role outlives its run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class RoleProcess:
    """One role: `python -m <module> <args>`, its output appended to `<run_dir>/<name>.log`.

    `own_session`: the role runs in its own session, so a Ctrl-C at the terminal reaches the launcher only, which
    stops the roles in order (the main job's runner); without it the terminal's signal reaches every role too."""

    def __init__(self, name: str, module: str, run_dir: Path, args: list[str], *, own_session: bool = True):
        self.name, self.log_path = name, run_dir / f"{name}.log"
        cmd = [sys.executable, "-m", module, *args]
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=own_session,
                                         preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def code(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> bool:
        try:
            self.proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(deque(f, maxlen=lines)).rstrip()
        except OSError:
            return "(no log)"

    def failure(self, lines: int = LOG_LINES, what: str | None = None) -> RoleFailed:
        what = what or f"exited with code {self.code}"
        return RoleFailed(f"the {self.name} {what}; the last lines of {self.log_path}:\n{self.tail(lines)}")


def wait_for_endpoints(run_dir: Path, server: RoleProcess, since: float, *, timeout_s: float = 120.0, log_lines: int = LOG_LINES,
                       interrupted: Callable[[], bool] = lambda: False) -> dict:
    """The endpoints the replay server started at `since` bound (`<run_dir>/replay/endpoints.json`); fails naming
    the server when it exits first or does not come up, and raises KeyboardInterrupt when `interrupted()`."""
    path = run_dir / "replay" / "endpoints.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.running():
            raise server.failure(log_lines)
        if interrupted():
            raise KeyboardInterrupt
        if path.exists() and path.stat().st_mtime >= since:
            return json.loads(path.read_text())
        time.sleep(0.1)
    raise server.failure(log_lines, f"did not come up within {timeout_s:.0f} s")


def port_overrides(endpoints: dict) -> list[str]:
    """The overrides that point the other roles at the server's bound ports."""
    return [f"transport.port={endpoints['router'].rsplit(':', 1)[1]}", f"transport.weights_port={endpoints['weights'].rsplit(':', 1)[1]}"]


def stop_in_order(roles: dict[str, RoleProcess], grace_s: float, evaluator_grace_s: float | None = None) -> None:
    """Actors first (they finish their episodes and flush), then the learner (saves, final snapshot), the
    evaluator (evaluates it), the server last (every acknowledged transition stored). A role that does not
    stop within `grace_s` of its SIGTERM (the evaluator: `evaluator_grace_s`, default the same) is killed."""
    order = [[r for n, r in roles.items() if n.startswith("actor")]]
    order += [[roles[n]] for n in ("learner", "evaluator", "replay_server") if n in roles]
    for group in order:
        for role in group:
            role.stop()
        for role in group:
            wait_s = evaluator_grace_s if role.name == "evaluator" and evaluator_grace_s is not None else grace_s
            if not role.wait(wait_s):
                log.error("the %s did not stop within %.0f s; killing it", role.name, wait_s)
                role.kill()


def kill_all(roles: dict[str, RoleProcess]) -> None:
    for role in roles.values():
        role.kill()
