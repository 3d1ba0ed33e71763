"""Pre-flight check: everything that must hold before a policy is allowed to move the arm. One module
per check (`*_check.py`), the report, the options and the runner; `python -m hardware.preflight` runs it.

    config       the env and hardware config validate; limits are within the robot's datasheet
    calibration  the tracker's camera calibration exists, loads and fits the camera's resolution
    robot        the arm answers within its connect timeout, reports no error, sends fresh state, sits
                 inside its soft joint limits and the workspace box, at rest
    cameras      each camera delivers new frames at (nearly) its configured rate, with fresh timestamps
    tracker      the kettle and sink markers are seen, and their poses give the shared reward
    watchdog     self-test with the arm held: a creep command (default 0.02 rad/s on the last joint for
                 at most the vendor hold time, < 0.01 rad) then silence: the safety layer's watchdog must
                 trip within its timeout, and the vendor's own watchdog must stop the arm when our
                 watchdog is out of the way

Checks that do not depend on each other all run, so one report shows every problem; the robot-moving
self-test runs only when the config and the robot passed. Nothing here clears a robot error: a faulted
arm fails the check with the vendor's message.
"""

from hardware.preflight.options import PreflightOptions
from hardware.preflight.report import FAIL, PASS, SKIP, WARN, CheckResult, PreflightReport
from hardware.preflight.runner import Preflight, run_preflight

__all__ = ["FAIL", "PASS", "SKIP", "WARN", "CheckResult", "Preflight", "PreflightOptions", "PreflightReport", "run_preflight"]
