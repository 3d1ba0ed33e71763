"""LeRobot's dataset format v3.0: the layout robolearn writes and reads, without importing lerobot.

Followed: LeRobot's own description (docs/source/lerobot-dataset-v3.mdx) and the code that writes and reads
it (src/lerobot/datasets/utils.py for the paths and DatasetInfo, io_utils.py, dataset_metadata.py for the
episodes table, feature_utils.py for how features become parquet columns, video_utils.py for the video
info), checked against v3.0 datasets on the Hub:

- `meta/info.json`: codebase_version "v3.0", robot_type, fps (an int), features {name: {dtype, shape,
  names[, info]}}, total_episodes / total_frames / total_tasks, chunks_size (1000), data_files_size_in_mb,
  video_files_size_in_mb, splits {"train": "0:N"}, and the path templates
  `data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet` and
  `videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4` (null when there is no video).
- A feature of shape [1] is a scalar parquet column, a vector a fixed-size list; a `video` feature has no
  column: its frames are in the mp4 of its key, episodes one after another (a v3 file holds many episodes).
- `meta/tasks.parquet`: a task_index column, the task strings as the pandas index named "task".
- `meta/episodes/chunk-000/file-000.parquet`: one row per episode: episode_index, tasks (list of strings),
  length, data/chunk_index, data/file_index, dataset_from_index, dataset_to_index (the global frame rows
  [from, to)), per video key videos/<key>/chunk_index, videos/<key>/file_index, videos/<key>/from_timestamp
  and videos/<key>/to_timestamp (seconds into that mp4), meta/episodes/chunk_index, meta/episodes/file_index.
- `meta/stats.json`: per feature min, max, mean, std, count (images per channel, scaled to [0, 1], shape [3, 1, 1]).

Everything read from a dataset goes through `DatasetError` naming the file and the field, never a bare
KeyError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CODEBASE_VERSION = "v3.0"
TASK = "place the kettle in the sink"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"

# Feature names (LeRobot's where it has one: observation.state, observation.environment_state, action,
# next.reward, next.done, next.truncated, next.success).
STATE = "observation.state"
ENV_STATE = "observation.environment_state"
IMAGES = "observation.images."
ACTION = "action"
REWARD, DONE, TERMINATED, TRUNCATED, SUCCESS = "next.reward", "next.done", "next.terminated", "next.truncated", "next.success"
INTERVENTION = "intervention"
IS_LAST = "is_last"  # RLDS's name: the frame holds an episode's final observation, no action was taken from it
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")


class DatasetError(ValueError):
    """A dataset or recording that cannot be exported or imported; the message names the file and the field."""


# -- writing ---------------------------------------------------------------------------------------------------
def feature(dtype: str, shape: tuple[int, ...], names: list[str] | None = None) -> dict:
    return {"dtype": dtype, "shape": list(shape), "names": names}


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4) + "\n")


def arrow_column(values) -> pa.Array:
    """A numpy column as arrow: (n,) a plain column, (n, k) a fixed-size list (datasets' Sequence(length=k))."""
    if isinstance(values, list):  # lists of strings (the episodes' tasks)
        return pa.array(values, type=pa.list_(pa.string()))
    values = np.ascontiguousarray(values)
    if values.ndim == 1:
        return pa.array(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def write_parquet(path: Path, columns: dict[str, Any], metadata: dict[bytes, bytes] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({name: arrow_column(values) for name, values in columns.items()})
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)


def write_tasks(path: Path, tasks: list[str]) -> None:
    """LeRobot reads this with pandas and looks tasks up by the index: the pandas metadata makes "task" it."""
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"task_index": pa.array(np.arange(len(tasks), dtype=np.int64)), "task": pa.array(tasks, pa.string())})
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}), path)


def vector_stats(values: np.ndarray) -> dict[str, list]:
    """min/max/mean/std/count over frames (axis 0); a scalar column gets vectors of length 1."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(), "count": [len(values)]}


class ImageStats:
    """Per-channel image statistics in [0, 1], accumulated episode by episode (LeRobot's [3, 1, 1] layout)."""

    def __init__(self):
        self.frames, self.n, self.total, self.squares = 0, 0, np.zeros(3), np.zeros(3)
        self.low, self.high = np.full(3, np.inf), np.full(3, -np.inf)

    def add(self, frames: np.ndarray) -> None:
        pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
        self.n += len(pixels)
        self.total += pixels.sum(0)
        self.squares += (pixels**2).sum(0)
        self.low, self.high = np.minimum(self.low, pixels.min(0)), np.maximum(self.high, pixels.max(0))
        self.frames += len(frames)

    def as_dict(self) -> dict[str, list]:
        mean = self.total / self.n
        std = np.sqrt(np.maximum(self.squares / self.n - mean**2, 0.0))
        shaped = lambda v: [[[float(x)]] for x in v]  # (3, 1, 1)
        return {"min": shaped(self.low), "max": shaped(self.high), "mean": shaped(mean), "std": shaped(std),
                "count": [self.frames]}


# -- reading ---------------------------------------------------------------------------------------------------
def read_info(root: Path) -> dict:
    """meta/info.json of a v3.0 dataset, with the keys the importer relies on present."""
    path = root / INFO_PATH
    if not root.is_dir():
        raise DatasetError(f"dataset {root}: no such directory")
    if not path.is_file():
        raise DatasetError(f"{path}: missing (a LeRobot dataset has meta/info.json)")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: not a JSON object")
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise DatasetError(f"{path}: field codebase_version is {version!r}, expected {CODEBASE_VERSION!r} "
                           "(older datasets: convert with lerobot's convert_dataset_v21_to_v30)")
    for key, kind, what in (("fps", (int, float), "number"), ("features", dict, "JSON object"), ("data_path", str, "string")):
        if not isinstance(info.get(key), kind):
            raise DatasetError(f"{path}: field {key} is missing or not a {what}")
    for name, ft in info["features"].items():
        if not isinstance(ft, dict) or "dtype" not in ft or not isinstance(ft.get("shape"), list):
            raise DatasetError(f"{path}: feature {name!r} has no dtype or shape")
    return info


def read_table(path: Path, what: str) -> pa.Table:
    if not path.is_file():
        raise DatasetError(f"{path}: missing ({what})")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{path}: unreadable parquet ({exc})") from None


def column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    """A column as numpy ((n,) or (n, k) for list columns); a missing, null or ragged one is named."""
    if name not in table.column_names:
        raise DatasetError(f"{path}: column {name!r} is missing (it has {table.column_names})")
    col = table.column(name).combine_chunks()
    if col.null_count:
        raise DatasetError(f"{path}: column {name!r} has {col.null_count} null values")
    kind = col.type
    if pa.types.is_fixed_size_list(kind):
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), kind.list_size)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        rows = col.to_pylist()
        if len({len(r) for r in rows}) > 1:
            raise DatasetError(f"{path}: column {name!r} holds lists of different lengths")
        return np.asarray(rows)
    return col.to_numpy(zero_copy_only=False)


def read_episodes(root: Path) -> tuple[pa.Table, Path]:
    """All rows of meta/episodes/chunk-*/file-*.parquet, in file order (and the first file, to name in errors)."""
    paths = sorted((root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not paths:
        raise DatasetError(f"{root / EPISODES_DIR}: no episodes table (chunk-*/file-*.parquet)")
    tables = [read_table(p, "episodes table") for p in paths]
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except pa.ArrowException as exc:
        raise DatasetError(f"{root / EPISODES_DIR}: episodes tables do not share columns ({exc})") from None
    return table, paths[0] if len(paths) == 1 else root / EPISODES_DIR


def resolve(root: Path, template: str, info_path: Path, field: str, **values) -> Path:
    try:
        return root / template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise DatasetError(f"{info_path}: field {field} ({template!r}) cannot be filled with {sorted(values)}: {exc}") from None
