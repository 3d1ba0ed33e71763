"""Episode recordings -> a LeRobot v3.0 dataset (the layout: robolearn.dataset.lerobot_format).

Sources are the replay files this project writes (robolearn.replay.persistence): demos from training
(`demos/*.npz`), teleop demos (`python -m hardware.teleop`), deploy's `interventions.npz`, and a training
run directory through its `replay.npz`. A file carries its own observation/action spec; the env config
supplies what it does not: the robot (robot_type, joint names) and the control rate (fps).

An episode of T steps becomes T + 1 frames. Frame t holds the observation the action was chosen on, the
action as executed and what followed it (next.reward, next.done = terminated or truncated, next.terminated,
next.truncated, next.success); frame T holds the final observation, which a learner bootstraps from, marked
`is_last` (RLDS's name) with a zero action and reward and the other next.* copied from frame T - 1 (LeRobot's
own eval recordings keep the final observation the same way).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gymnasium import spaces

from robolearn.config import EnvConfig, load_env_config
from robolearn.dataset import lerobot_format as fmt
from robolearn.dataset.lerobot_format import DatasetError
from robolearn.replay import ReplayStorage
from robolearn.replay.persistence import FORMAT_VERSION
from robolearn.replay.codec import INTERVENTION_VERSION
from robolearn.spec import PRIVILEGED_DIM, PRIVILEGED_LAYOUT, EnvSpec, is_image_space
from robolearn.video import mp4_writer

PROPRIO = ("joint_pos", "joint_vel", "gripper")


@dataclass
class Source:
    path: Path  # the replay file
    store: ReplayStorage
    intervention: np.ndarray | None  # per held row (oldest first); None: not known


def open_source(path: str | Path, intervention: str = "auto") -> Source:
    """A replay file, or a training run directory's replay.npz. `intervention`: "auto" (a per-row
    `intervention` array in the file, else true for deploy's interventions.npz, else the rows whose policy version
    says an intervener chose the action when any does, else unknown), "true", "false"."""
    path = Path(path)
    if path.is_dir():
        replay = path / "replay.npz"
        if not replay.is_file():
            what = "a training run directory" if (path / "checkpoint.pt").exists() else "a directory"
            raise DatasetError(f"{path}: {what} with no replay.npz, so it holds no episodes to export (training writes "
                               "replay.npz beside checkpoint.pt at every save; an asynchronous run's replay lives in its "
                               "replay server's store). Give a replay file (demos/*.npz, interventions.npz) or a run "
                               "directory that has one")
        path = replay
    observation_space, action_shape = _file_spec(path)
    store = ReplayStorage.load(path, observation_space, action_shape)
    flags = None
    if intervention in ("true", "false"):
        flags = np.full(len(store), intervention == "true")
    elif intervention == "auto":
        with np.load(path, allow_pickle=False) as data:
            if "intervention" in data.files:
                flags = data["intervention"].astype(bool)
        if flags is not None and flags.shape != (len(store),):
            raise DatasetError(f"{path}: array 'intervention' has shape {flags.shape}, the file holds {len(store)} rows")
        if flags is None and path.name == "interventions.npz":  # deploy writes only the human's segments there
            flags = np.ones(len(store), bool)
        versions = store.policy_version[:len(store)]  # a loaded store holds its rows oldest first
        if flags is None and np.any(versions == INTERVENTION_VERSION):  # online training's (robolearn/interventions.py)
            flags = versions == INTERVENTION_VERSION
    else:
        raise ValueError(f"intervention must be auto, true or false, got {intervention!r}")
    return Source(path, store, flags)


def _file_spec(path: Path) -> tuple[spaces.Dict, tuple[int, ...]]:
    """The observation space and action shape a replay file was written for (its meta records them)."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such replay file")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
        obs, action = meta["spec"]["obs"], meta["spec"]["action"]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a robolearn replay file (replay format {FORMAT_VERSION}): {type(exc).__name__} {exc}") from None
    items = {}
    for key, (shape, dtype) in obs.items():
        low, high = (0, 255) if dtype == "uint8" else (-np.inf, np.inf)
        items[key] = spaces.Box(low, high, shape=tuple(shape), dtype=np.dtype(dtype))
    return spaces.Dict(items), tuple(action)


def episodes_of(store: ReplayStorage) -> list[np.ndarray]:
    """Global rows of every held episode with at least one step, in the order they start. An episode starts
    where a row has no predecessor held; it follows the `next` links (episodes may interleave)."""
    rows = np.arange(store.oldest, store.total)
    starts = rows[store.prev[rows % store.capacity] < store.oldest]
    episodes = []
    for start in starts:
        chain = [int(start)]
        while (nxt := int(store.next[chain[-1] % store.capacity])) >= 0:
            chain.append(nxt)
        if len(chain) > 1:
            episodes.append(np.array(chain))
    return episodes


def _pad(values: np.ndarray, last) -> np.ndarray:
    return np.concatenate([values, np.asarray([last], dtype=values.dtype)])


def export_dataset(source: str | Path, out_dir: str | Path, env: EnvConfig | dict | None = None, *, crf: int = 0,
                   pix_fmt: str = "yuv444p", intervention: str = "auto", task: str = fmt.TASK, overwrite: bool = False) -> dict:
    """Write `source`'s episodes as a LeRobot v3.0 dataset at `out_dir` (built beside it, then renamed into
    place: a dataset that is there is complete). Returns a summary."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(f"{out}: exists and is not empty (--overwrite replaces a dataset there)")
        if not (out / fmt.INFO_PATH).is_file():
            raise DatasetError(f"{out}: exists, is not empty and holds no meta/info.json: not a dataset, not replaced")
    cfg = load_env_config(env)
    spec = EnvSpec.from_config(cfg)
    fps = round(cfg.control_hz)
    if abs(fps - cfg.control_hz) > 1e-9:
        raise DatasetError(f"env.control_hz={cfg.control_hz}: LeRobot datasets need an integer fps")
    src = open_source(source, intervention)
    store = src.store
    obs_space = store.observation_space.spaces
    n = spec.n_joints
    for key, shape in zip(PROPRIO, ((n,), (n,), (1,))):
        if key not in obs_space:
            raise DatasetError(f"{src.path}: observation {key!r} is missing (it has {sorted(obs_space)}); "
                               "the dataset's observation.state is joint_pos + joint_vel + gripper")
        if obs_space[key].shape != shape:
            raise DatasetError(f"{src.path}: observation {key!r} has shape {obs_space[key].shape}, the env's robot "
                               f"{spec.robot.name} has {shape} (export with the recording's env, e.g. env.robot=ur5e)")
    if store.action_shape != (spec.action_dim,):
        raise DatasetError(f"{src.path}: actions have shape {store.action_shape}, the env's robot {spec.robot.name} "
                           f"takes ({spec.action_dim},)")
    cameras = [k for k, s in obs_space.items() if is_image_space(s)]
    vectors = [k for k in obs_space if k not in cameras and k not in PROPRIO]  # privileged, a frozen encoder's features
    episodes = episodes_of(store)
    if not episodes:
        raise DatasetError(f"{src.path}: holds no episode with a step")

    features = _features(spec, store, cameras, vectors, src.intervention is not None, fps, crf, pix_fmt)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        frames = _write(tmp, src, episodes, features, cameras, vectors, fps, crf, pix_fmt, task, spec.robot.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {"dataset": str(out), "source": str(src.path), "episodes": len(episodes), "frames": frames,
            "transitions": frames - len(episodes), "cameras": cameras, "intervention": src.intervention is not None}


def _write(tmp: Path, src: Source, episodes: list[np.ndarray], features: dict, cameras: list[str], vectors: list[str],
           fps: int, crf: int, pix_fmt: str, task: str, robot: str) -> int:
    """Every file of the dataset under `tmp`; returns the number of frames."""
    columns: dict[str, list[np.ndarray]] = {name: [] for name, ft in features.items() if ft["dtype"] != "video"}
    stats: dict[str, list[dict]] = {name: [] for name in features}  # per feature, per episode (LeRobot's order)
    writers = {cam: mp4_writer(tmp / fmt.VIDEO_PATH.format(video_key=fmt.IMAGES + cam, chunk_index=0, file_index=0), fps,
                               crf=crf, pix_fmt=pix_fmt) for cam in cameras}
    lengths: list[int] = []
    try:
        for index, rows in enumerate(episodes):
            for name, values in _frames(src, rows, index, sum(lengths), fps, vectors).items():
                columns[name].append(values)
                stats[name].append(fmt.frame_stats(values))
            for cam in cameras:
                images = src.store.obs[cam][rows % src.store.capacity]
                for image in images:
                    writers[cam].append_data(image)
                stats[fmt.IMAGES + cam].append(fmt.image_stats(images))
            lengths.append(len(rows))
    finally:
        for writer in writers.values():
            writer.close()
    data = {name: np.concatenate(parts) for name, parts in columns.items()}
    fmt.write_parquet(tmp / fmt.DATA_PATH.format(chunk_index=0, file_index=0), data)
    fmt.write_parquet(tmp / fmt.EPISODES_PATH.format(chunk_index=0, file_index=0), _episodes_table(lengths, task, cameras, fps, stats))
    fmt.write_tasks(tmp / fmt.TASKS_PATH, [task])
    fmt.write_json(tmp / fmt.STATS_PATH, fmt.stats_json({name: fmt.aggregate_stats(eps) for name, eps in stats.items()}))
    fmt.write_json(tmp / fmt.INFO_PATH, {
        "codebase_version": fmt.CODEBASE_VERSION, "robot_type": robot,
        "total_episodes": len(lengths), "total_frames": sum(lengths), "total_tasks": 1,
        "chunks_size": fmt.CHUNKS_SIZE, "data_files_size_in_mb": fmt.DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": fmt.VIDEO_FILES_SIZE_IN_MB, "fps": fps, "splits": {"train": f"0:{len(lengths)}"},
        "data_path": fmt.DATA_PATH, "video_path": fmt.VIDEO_PATH if cameras else None, "features": features,
    })
    return sum(lengths)


def _frames(src: Source, rows: np.ndarray, index: int, first: int, fps: int, vectors: list[str]) -> dict[str, np.ndarray]:
    """The data columns of one episode (global rows `rows`, the first of its frames is dataset row `first`)."""
    store, length = src.store, len(rows)  # T + 1 frames: the final observation too
    slots, steps = rows % store.capacity, rows[:-1] % store.capacity
    obs = {k: store.obs[k][slots] for k in (*PROPRIO, *vectors)}
    reward, terminated, truncated = store.reward[steps], store.terminated[steps], store.truncated[steps]
    col = {
        fmt.STATE: np.concatenate([obs[k] for k in PROPRIO], axis=1).astype(np.float32),
        fmt.ACTION: np.concatenate([store.action[steps], np.zeros((1, *store.action_shape), np.float32)]),
        fmt.REWARD: _pad(reward, 0.0),
        fmt.DONE: _pad(terminated | truncated, terminated[-1] | truncated[-1]),
        fmt.TERMINATED: _pad(terminated, terminated[-1]),
        fmt.TRUNCATED: _pad(truncated, truncated[-1]),
        # Replay files do not record success; the kettle-to-sink reward is negative but for the success bonus.
        fmt.SUCCESS: _pad(reward > 0, reward[-1] > 0),
        fmt.IS_LAST: np.arange(length) == length - 1,
        "timestamp": (np.arange(length) / fps).astype(np.float32),
        "frame_index": np.arange(length, dtype=np.int64),
        "episode_index": np.full(length, index, np.int64),
        "index": np.arange(first, first + length, dtype=np.int64),
        "task_index": np.zeros(length, np.int64),
    }
    for key in vectors:
        col[_vector_feature(key)] = obs[key].astype(np.float32)
    if src.intervention is not None:
        flags = src.intervention[rows[:-1] - store.oldest]
        col[fmt.INTERVENTION] = _pad(flags, flags[-1])
    return col


def _episodes_table(lengths: list[int], task: str, cameras: list[str], fps: int, stats: dict[str, list[dict]]) -> dict:
    """One row per episode: where its frames are in the data file and in each camera's video, and its
    statistics per feature (`stats/<feature>/<stat>`)."""
    n, zeros = len(lengths), np.zeros(len(lengths), np.int64)
    ends = np.cumsum(lengths)
    starts = ends - np.asarray(lengths)
    table: dict = {"episode_index": np.arange(n, dtype=np.int64), "tasks": [[task]] * n, "length": np.asarray(lengths, np.int64),
                   "data/chunk_index": zeros, "data/file_index": zeros, "dataset_from_index": starts, "dataset_to_index": ends}
    for cam in cameras:  # one video file per camera holds every episode: an episode starts where the previous ended
        key = f"videos/{fmt.IMAGES}{cam}"
        table.update({f"{key}/chunk_index": zeros, f"{key}/file_index": zeros,
                      f"{key}/from_timestamp": starts / fps, f"{key}/to_timestamp": ends / fps})
    table.update(fmt.episode_stats_columns(stats))
    table.update({"meta/episodes/chunk_index": zeros, "meta/episodes/file_index": zeros})
    return table


def _vector_feature(key: str) -> str:
    return fmt.ENV_STATE if key == "privileged" else f"observation.{key}"


def _features(spec: EnvSpec, store: ReplayStorage, cameras: list[str], vectors: list[str], intervention: bool,
              fps: int, crf: int, pix_fmt: str) -> dict[str, dict]:
    joints = spec.robot.joint_names
    unit = "velocity" if spec.command_unit == "rad/s" else "torque"
    obs_space = store.observation_space.spaces
    features = {}
    for cam in cameras:
        h, w, c = obs_space[cam].shape
        features[fmt.IMAGES + cam] = {
            **fmt.feature("video", (h, w, c), ["height", "width", "channels"]),
            "info": {"video.height": h, "video.width": w, "video.codec": "h264", "video.pix_fmt": pix_fmt,
                     "video.is_depth_map": False, "video.fps": fps, "video.channels": c, "video.crf": crf, "has_audio": False},
        }
    features[fmt.STATE] = fmt.feature("float32", (2 * len(joints) + 1,),
                                      [f"{j}.pos" for j in joints] + [f"{j}.vel" for j in joints] + ["gripper.width"])
    for key in vectors:
        if key == "privileged" and obs_space[key].shape == (PRIVILEGED_DIM,):
            names = [f"{name}.{axis}" for name, size in PRIVILEGED_LAYOUT for axis in ("wxyz" if size == 4 else "xyz")]
        else:
            names = None
        features[_vector_feature(key)] = fmt.feature("float32", obs_space[key].shape, names)
    features[fmt.ACTION] = fmt.feature("float32", store.action_shape, [f"{j}.{unit}" for j in joints] + ["gripper"])
    features[fmt.REWARD] = fmt.feature("float32", (1,))
    for name in (fmt.DONE, fmt.TERMINATED, fmt.TRUNCATED, fmt.SUCCESS, fmt.IS_LAST):
        features[name] = fmt.feature("bool", (1,))
    if intervention:
        features[fmt.INTERVENTION] = fmt.feature("bool", (1,))
    features["timestamp"] = fmt.feature("float32", (1,))
    for name in ("frame_index", "episode_index", "index", "task_index"):
        features[name] = fmt.feature("int64", (1,))
    return features
