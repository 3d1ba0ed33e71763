"""Replay files (`.npz`): the format, written crash-safely, read back with every defect named.

A file holds the rows a store holds, one array per field (observations named by robolearn.replay.codec),
and a JSON `meta` array: the format version, the observation/action spec and the store's counters. What
rows to write and how to take them back is the store's (ReplayStorage.save / load); this module owns the
file: a save goes to a temporary file, is fsynced, then renamed, so a crash mid-save leaves the old file.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


class ReplayFormatError(RuntimeError):
    """A replay file that cannot be read back (corrupt, truncated, or for another observation spec)."""


def write_replay_file(path: str | Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file, fsync, then rename: a crash mid-save leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    meta = {"format_version": FORMAT_VERSION, **meta}
    with open(tmp, "wb") as f:
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_replay_file(path: str | Path, expected_spec: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a replay file written for `expected_spec`; ReplayFormatError naming what is wrong."""
    path = Path(path)
    if not path.exists():
        raise ReplayFormatError(f"replay file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            arrays = {k: data[k] for k in data.files if k != "meta"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, io.UnsupportedOperation) as exc:
        raise ReplayFormatError(f"replay file {path} is corrupt or truncated: {exc}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ReplayFormatError(f"replay file {path}: format version {meta.get('format_version')}, expected {FORMAT_VERSION}")
    if meta["spec"] != expected_spec:
        raise ReplayFormatError(
            f"replay file {path} was written for a different observation/action spec: "
            f"file {meta['spec']}, expected {expected_spec}"
        )
    return meta, arrays
