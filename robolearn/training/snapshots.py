"""Eval snapshots: the learner writes its policy on the eval schedule, the evaluator evaluates the newest.
One naming, shared by both roles (neither imports the other)."""

from __future__ import annotations

import re
from pathlib import Path

SNAPSHOTS = "snapshots"  # the folder under the run directory the learner writes snapshots to
_SNAPSHOT_NAME = re.compile(r"step_(\d+)\.pt")


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    """Where the learner writes the eval snapshot of `step` (with robolearn.checkpoint.save_checkpoint)."""
    return Path(run_dir) / SNAPSHOTS / f"step_{step:09d}.pt"


def list_snapshots(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete snapshots in `folder`, oldest first (a save's .tmp file is not one)."""
    if not folder.is_dir():
        return []
    found = ((_SNAPSHOT_NAME.fullmatch(p.name), p) for p in folder.iterdir())
    return sorted((int(m.group(1)), p) for m, p in found if m)
