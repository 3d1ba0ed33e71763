"""How a command that moves an arm ends: one exit code per outcome, and known errors as one line on stderr.

| code | meaning |
| --- | --- |
| 0 | done as asked |
| 1 | a pre-flight check failed (as `python -m hardware.preflight`), or an unexpected error (traceback) |
| 2 | refused at start-up, nothing moved: a config error, a checkpoint for another spec, keys, a calibration, no readable input device, a policy too slow for the control rate |
| 3 | a latched safety fault ended the run (the arm is held; the report names the fault) |
| 4 | stopped before finishing: the operator quit, a reset prompt went unanswered, a scripted reset failed, the input device was lost |

`reported(known=...)` wraps a Hydra main: an exception of a known kind (ConfigError, CheckpointError,
CurveKeyError, EncoderFileError, and what the caller adds: CalibrationError, EStopLatched, ...) prints
`<command>: <message>` on stderr and exits 2, instead of a traceback under Hydra's wrapper.
`HYDRA_FULL_ERROR=1` lets it through with its traceback, as Hydra does for everything else.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

OK, FAILED, REFUSED, FAULT, STOPPED = 0, 1, 2, 3, 4


def known_errors() -> tuple[type[BaseException], ...]:
    from robolearn.agents.policy import PolicyTooSlow
    from robolearn.agents.pretrained import EncoderFileError
    from robolearn.checkpoint import CheckpointError
    from robolearn.config import ConfigError
    from robolearn.transport.security import CurveKeyError

    return (ConfigError, CheckpointError, CurveKeyError, EncoderFileError, PolicyTooSlow)


def reported(command: str, known: tuple[type[BaseException], ...] = (), code: int = REFUSED) -> Callable:
    """Decorate a command's main(cfg): known errors are one line on stderr and exit `code`."""

    def wrap(main: Callable) -> Callable:
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except (*known_errors(), *known) as exc:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"{command}: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr, flush=True)
                sys.exit(code)

        return run

    return wrap


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
