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
  and videos/<key>/to_timestamp (seconds into that mp4), the episode's statistics `stats/<feature>/<stat>`
  (LeRobot's flatten_dict of {"stats": ...}), meta/episodes/chunk_index, meta/episodes/file_index.
- Statistics (compute_stats.py; dataset_metadata.save_episode, dataset_tools.delete_episodes read them back):
  per episode and feature min, max, mean, std (population), count and quantiles q01, q10, q50, q90, q99, over
  frames per dimension, shape [k] ([1] for a scalar column), count [1]; cameras per channel over the pixels of
  sampled frames (length ** 0.75 of them, 100..10,000, strided to ~150 px from 300 px), scaled to [0, 1],
  shape [3, 1, 1], count = frames sampled. `meta/stats.json` aggregates the episodes: min of minima, max of
  maxima, count-weighted mean, pooled variance, summed count, quantiles the count-weighted mean of the
  episodes' (LeRobot's approximation).

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
    if isinstance(values, pa.Array):
        return values
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


# -- statistics ------------------------------------------------------------------------------------------------
# LeRobot's writer (compute_stats.py, 0.4.x and 0.6.x) keeps, per episode and per feature, min, max, mean, std
# (over frames, per dimension), count and the quantiles below; meta/stats.json aggregates them. Here the
# quantiles are exact (numpy's linear interpolation); LeRobot estimates them from a 5000-bin histogram.
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_NAMES = ("min", "max", "mean", "std", "count", *QUANTILES)
IMAGE_SAMPLES_MIN, IMAGE_SAMPLES_MAX, IMAGE_SAMPLES_POWER = 100, 10_000, 0.75  # LeRobot's frame sampling
IMAGE_DOWNSAMPLE_FROM, IMAGE_DOWNSAMPLE_TO = 300, 150  # frames this large are strided down to ~150 px


def frame_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """One episode's column over its frames (axis 0), per dimension: float64 arrays of shape (k,) ((1,) for a
    scalar column, as LeRobot keeps them), count of shape (1,)."""
    x = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    stats = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)], np.int64)}
    stats.update(zip(QUANTILES, np.quantile(x, list(QUANTILES.values()), axis=0)))
    return stats


def sampled_frames(length: int) -> np.ndarray:
    """Which of an episode's `length` frames image statistics read: all of a short episode, else
    length ** 0.75 of them (at least 100, at most 10,000) evenly spread, first and last included."""
    wanted = max(min(length, IMAGE_SAMPLES_MIN), min(int(length**IMAGE_SAMPLES_POWER), IMAGE_SAMPLES_MAX))
    return np.round(np.linspace(0, length - 1, wanted)).astype(np.int64)


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """One episode's camera frames (T, H, W, C) uint8 -> per-channel statistics in [0, 1] of shape (C, 1, 1)
    over the pixels of the sampled frames (strided down when a side reaches 300 px); count: frames sampled."""
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"image statistics take (T, H, W, C) uint8 frames, got {frames.shape} {frames.dtype}")
    picked = frames[sampled_frames(len(frames))]
    side = max(picked.shape[1:3])
    if side >= IMAGE_DOWNSAMPLE_FROM:
        step = int(side / IMAGE_DOWNSAMPLE_TO)
        picked = picked[:, ::step, ::step]
    channels = picked.shape[-1]
    pixels = picked.reshape(-1, channels)
    levels = np.arange(256, dtype=np.float64)
    stats: dict[str, list] = {name: [] for name in STAT_NAMES if name != "count"}
    for c in range(channels):  # a histogram of the 256 levels holds everything, quantiles exactly
        counts = np.bincount(pixels[:, c], minlength=256)
        n = counts.sum()
        mean = counts @ levels / n
        present = np.flatnonzero(counts)
        stats["min"].append(levels[present[0]])
        stats["max"].append(levels[present[-1]])
        stats["mean"].append(mean)
        stats["std"].append(np.sqrt(counts @ (levels - mean) ** 2 / n))
        ends = np.cumsum(counts)  # sorted pixel i has the level where ends first exceeds i
        for name, q in QUANTILES.items():
            position = q * (n - 1)
            below = int(np.floor(position))
            low, high = np.searchsorted(ends, [below, min(below + 1, n - 1)], side="right")
            stats[name].append(levels[low] + (position - below) * (levels[high] - levels[low]))
    shaped = {name: (np.asarray(v) / 255.0).reshape(channels, 1, 1) for name, v in stats.items()}
    return {**shaped, "count": np.array([len(picked)], np.int64)}


def aggregate_stats(episodes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Episodes' statistics of one feature -> the dataset's, as LeRobot aggregates them: min of the minima, max
    of the maxima, count-weighted mean, the pooled variance (each episode's variance plus its mean's squared
    distance to the overall mean, count-weighted), counts summed; quantiles the count-weighted mean of the
    episodes' quantiles (LeRobot's approximation: exact for min, max, mean, std, count only)."""
    counts = np.array([s["count"][0] for s in episodes], dtype=np.float64)
    shape = np.shape(episodes[0]["mean"])
    weights = (counts / counts.sum()).reshape(-1, *[1] * len(shape))
    stack = lambda name: np.stack([np.asarray(s[name], dtype=np.float64) for s in episodes])
    means = stack("mean")
    mean = (weights * means).sum(0)
    variance = (weights * (stack("std") ** 2 + (means - mean) ** 2)).sum(0)
    out = {"min": stack("min").min(0), "max": stack("max").max(0), "mean": mean, "std": np.sqrt(variance),
           "count": np.array([int(counts.sum())], np.int64)}
    out.update({name: (weights * stack(name)).sum(0) for name in QUANTILES if all(name in s for s in episodes)})
    return out


def stats_json(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    """meta/stats.json's content: {feature: {stat: nested lists}}."""
    return {name: {stat: np.asarray(v).tolist() for stat, v in ft.items()} for name, ft in stats.items()}


def episode_stats_columns(per_episode: dict[str, list[dict[str, np.ndarray]]]) -> dict[str, pa.Array]:
    """The episodes table's `stats/<feature>/<stat>` columns (LeRobot's flattened names), one row per episode:
    list<double> (images: list<list<list<double>>>, shape (3, 1, 1)), count list<int64>."""
    columns = {}
    for name, episodes in per_episode.items():
        for stat in STAT_NAMES:
            values = [np.asarray(s[stat]) for s in episodes]
            kind = pa.int64() if stat == "count" else pa.float64()
            for _ in range(values[0].ndim):
                kind = pa.list_(kind)
            columns[f"stats/{name}/{stat}"] = pa.array([v.tolist() for v in values], type=kind)
    return columns


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
