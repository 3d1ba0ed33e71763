"""A LeRobot v3.0 dataset -> a replay file that training loads as demos (`python -m robolearn.train demos.path=<file>`).

The target env's spec (robolearn.spec.EnvSpec.from_config) says what the file must hold, and the dataset is
checked against it before anything is read: `action` ((n + 1,): n joint commands and the gripper),
`observation.state` ((2n + 1,): joint_pos, joint_vel, gripper), one video feature `observation.images.<cam>`
per env camera ((H, W, 3)), `observation.environment_state` when the env has the privileged state,
`next.reward`, `next.done`, and fps equal to the env's control rate. Features the env does not read are
left out. The episodes table is checked against the data rows and the videos.

A dataset exported by robolearn.dataset.export marks each episode's final observation (`is_last`) and comes
back exactly (images within the codec's tolerance). A foreign dataset has no final observation: its last
frame becomes the final observation, its last action is dropped, and the transition before it is marked
truncated (the learner bootstraps there) unless the dataset ends it, as the teleop recorder does for an
episode the env did not end; `next.done` without `next.truncated` counts as a termination. Actions must be
finite and in [-1, 1] (normalised commands; a dataset of joint targets is refused, naming `action`).
An `intervention` feature is kept as a per-row `intervention` array of the file (training ignores it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robolearn.config import EnvConfig
from robolearn.dataset import lerobot_format as fmt
from robolearn.dataset.lerobot_format import DatasetError
from robolearn.replay import ReplayStorage
from robolearn.robots import ROBOTS
from robolearn.spec import PRIVILEGED_DIM, EnvSpec
from robolearn.video import read_mp4

_FLOATS = ("float32", "float64")
_EPISODE_COLUMNS = ("episode_index", "length", "dataset_from_index", "dataset_to_index", "data/chunk_index", "data/file_index")


def import_dataset(dataset: str | Path, out: str | Path, env: EnvConfig | dict | None = None, *, overwrite: bool = False) -> dict:
    root, out = Path(dataset), Path(out)
    if out.exists() and not overwrite:
        raise DatasetError(f"{out}: exists (--overwrite replaces it)")
    spec = EnvSpec.from_config(env)
    info = fmt.read_info(root)
    info_path = root / fmt.INFO_PATH
    if abs(float(info["fps"]) - spec.control_hz) > 1e-6:
        raise DatasetError(f"{info_path}: field fps is {info['fps']}, the env acts at control_hz={spec.control_hz}")
    robot = info.get("robot_type")
    if robot in ROBOTS and robot != spec.robot.name:  # same joint count, other limits: actions would mean other speeds
        raise DatasetError(f"{info_path}: field robot_type is {robot!r}, the env's robot is {spec.robot.name!r} (env.robot={robot})")
    features = info["features"]
    _check_features(features, spec, info_path)
    episodes, episodes_path = fmt.read_episodes(root)
    columns = list(_EPISODE_COLUMNS) + [f"videos/{fmt.IMAGES}{cam}/{part}" for cam in spec.image_keys
                                        for part in ("chunk_index", "file_index", "from_timestamp")]
    table = {name: fmt.column(episodes, name, episodes_path) for name in columns}
    order = np.argsort(table["episode_index"], kind="stable")
    if len(np.unique(table["episode_index"])) != len(order):
        raise DatasetError(f"{episodes_path}: column episode_index repeats an episode")
    reader = _Reader(root, info, features, spec, info_path, episodes_path)
    parts = [reader.episode({name: values[i] for name, values in table.items()}) for i in order]
    parts = [p for p in parts if p is not None]
    if not parts:
        raise DatasetError(f"{episodes_path}: no episode with two frames or more")

    store = ReplayStorage(spec.observation_space(), (spec.action_dim,), max(2, sum(len(p["reward"]) for p in parts)))
    for p in parts:
        store.extend(0, p["starts"], p["obs"], p["action"], p["reward"], p["terminated"], p["truncated"],
                     np.full(len(p["reward"]), -1, np.int64))
    extra = {}
    if fmt.INTERVENTION in features:
        extra["intervention"] = np.concatenate([p["intervention"] for p in parts])
    out.parent.mkdir(parents=True, exist_ok=True)
    store.save(out, extra=extra)
    ignored = sorted(set(features) - reader.used - set(fmt.INDEX_FEATURES))
    return {"file": str(out), "dataset": str(root), "episodes": len(parts), "transitions": store.num_transitions(),
            "dropped_last_actions": reader.dropped, "ignored_features": ignored,
            "intervention": fmt.INTERVENTION in features}


def _check_features(features: dict, spec: EnvSpec, info_path: Path) -> None:
    """Every feature the env's spec needs, with its shape, before any data is read."""
    n = spec.n_joints

    def require(name: str, shape: tuple, dtypes: tuple, why: str) -> None:
        ft = features.get(name)
        if ft is None:
            raise DatasetError(f"{info_path}: feature {name!r} is missing ({why})")
        if ft["dtype"] not in dtypes:
            raise DatasetError(f"{info_path}: feature {name!r} has dtype {ft['dtype']!r}, expected {' or '.join(dtypes)} ({why})")
        if tuple(_hwc(ft) if ft["dtype"] == "video" else ft["shape"]) != shape:
            raise DatasetError(f"{info_path}: feature {name!r} has shape {ft['shape']}, the env expects {list(shape)} ({why})")

    require(fmt.ACTION, (n + 1,), _FLOATS, f"{n} joint commands of {spec.robot.name} + the gripper, in [-1, 1]")
    require(fmt.STATE, (2 * n + 1,), _FLOATS, f"joint_pos ({n}) + joint_vel ({n}) + gripper (1)")
    for name, h, w in spec.cameras:
        require(fmt.IMAGES + name, (h, w, 3), ("video",), f"the env's camera {name!r}, {h}x{w} RGB, as a video")
    if spec.privileged:
        require(fmt.ENV_STATE, (PRIVILEGED_DIM,), _FLOATS, "the env's privileged state: env.privileged=true")
    require(fmt.REWARD, (1,), _FLOATS, "demos are replayed with their rewards")
    require(fmt.DONE, (1,), ("bool",), "where episodes end")
    for name in (fmt.TERMINATED, fmt.TRUNCATED, fmt.IS_LAST, fmt.INTERVENTION):
        if name in features:
            require(name, (1,), ("bool",), "a flag per frame")


def _hwc(ft: dict) -> list:
    """A video feature's shape as (H, W, C): LeRobot writes both [H, W, C] and [C, H, W], saying which in `names`."""
    shape, names = list(ft["shape"]), ft.get("names") or []
    channels_first = (names and str(names[0]).lower() in ("c", "channel", "channels")) or (len(shape) == 3 and shape[0] == 3 != shape[-1])
    return shape[1:] + shape[:1] if channels_first and len(shape) == 3 else shape


class _Reader:
    """Reads episodes one by one, each data and video file once (kept while the import runs)."""

    def __init__(self, root: Path, info: dict, features: dict, spec: EnvSpec, info_path: Path, episodes_path: Path):
        self.root, self.info, self.features, self.spec = root, info, features, spec
        self.info_path, self.episodes_path = info_path, episodes_path
        self.data: dict[Path, dict[str, np.ndarray]] = {}
        self.videos: dict[Path, np.ndarray] = {}
        self.used = {fmt.ACTION, fmt.STATE, fmt.REWARD, fmt.DONE, *(fmt.IMAGES + c for c in spec.image_keys)}
        self.used |= {name for name in (fmt.TERMINATED, fmt.TRUNCATED, fmt.IS_LAST, fmt.INTERVENTION) if name in features}
        if spec.privileged:
            self.used.add(fmt.ENV_STATE)
        self.dropped = 0

    def episode(self, row: dict) -> dict | None:
        e, length = int(row["episode_index"]), int(row["length"])
        where = f"{self.episodes_path}: episode {e}"
        if int(row["dataset_to_index"]) - int(row["dataset_from_index"]) != length:
            raise DatasetError(f"{where}: dataset_from_index {row['dataset_from_index']} .. dataset_to_index "
                               f"{row['dataset_to_index']} does not span its length {length}")
        path = fmt.resolve(self.root, self.info["data_path"], self.info_path, "data_path",
                           chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"]))
        data = self._data(path)
        rows = np.flatnonzero(data["episode_index"] == e)
        if len(rows) != length:
            raise DatasetError(f"{where}: length {length}, but {path} holds {len(rows)} rows with episode_index {e}")
        if "index" in data and not np.array_equal(data["index"][rows], np.arange(row["dataset_from_index"], row["dataset_to_index"])):
            raise DatasetError(f"{where}: dataset_from_index/dataset_to_index ({row['dataset_from_index']}..{row['dataset_to_index']}) "
                               f"do not match the index column of {path} (rows {data['index'][rows[0]]}..{data['index'][rows[-1]]})")
        if "frame_index" in data:
            rows = rows[np.argsort(data["frame_index"][rows], kind="stable")]
            if not np.array_equal(data["frame_index"][rows], np.arange(length)):
                raise DatasetError(f"{where}: frame_index in {path} is not 0..{length - 1}")
        frames = {name: values[rows] for name, values in data.items()}
        images = {cam: self._frames(row, cam, length, where) for cam in self.spec.image_keys}
        return self._transitions(frames, images, where, path)

    def _transitions(self, frames: dict, images: dict, where: str, path: Path) -> dict | None:
        """T + 1 observations and the T transitions between them, as ReplayStorage.extend takes them."""
        length = len(frames[fmt.REWARD])
        if fmt.IS_LAST in frames:  # robolearn's export: the last frame is the final observation
            expected = np.arange(length) == length - 1
            if not np.array_equal(frames[fmt.IS_LAST].astype(bool), expected):
                raise DatasetError(f"{where}: column {fmt.IS_LAST} in {path} is not set on the last frame alone")
        else:  # a foreign dataset: its last action has no observation after it
            self.dropped += 1
        steps = length - 1
        if steps < 1:
            return None
        done = frames[fmt.DONE].astype(bool)[:steps]
        truncated = frames[fmt.TRUNCATED].astype(bool)[:steps] if fmt.TRUNCATED in frames else np.zeros(steps, bool)
        terminated = frames[fmt.TERMINATED].astype(bool)[:steps] if fmt.TERMINATED in frames else done & ~truncated
        ended = np.flatnonzero(terminated[:-1] | truncated[:-1])
        if len(ended):
            raise DatasetError(f"{where}: {path} ends the episode (next.done) at frame {ended[0]}, before its last step")
        if fmt.IS_LAST not in frames and not (terminated[-1] or truncated[-1]):
            truncated[-1] = True
        for name in (fmt.ACTION, fmt.STATE, fmt.REWARD):
            if not np.isfinite(frames[name]).all():
                raise DatasetError(f"{where}: column {name!r} of {path} has non-finite values")
        if np.abs(frames[fmt.ACTION][:steps]).max() > 1.0 + 1e-6:
            raise DatasetError(f"{where}: column 'action' of {path} leaves [-1, 1] (max |a| = {np.abs(frames[fmt.ACTION]).max():.3g}): "
                               "robolearn's actions are normalised joint commands, not joint targets")
        n = self.spec.n_joints
        state = frames[fmt.STATE].astype(np.float32)
        obs = {"joint_pos": state[:, :n], "joint_vel": state[:, n : 2 * n], "gripper": state[:, 2 * n :], **images}
        if self.spec.privileged:
            obs["privileged"] = frames[fmt.ENV_STATE].astype(np.float32)
        first = lambda values, dtype: np.concatenate([np.zeros(1, dtype), values])  # the start row has no transition into it
        out = {"starts": np.arange(length) == 0, "obs": obs,
               "action": np.concatenate([np.zeros((1, n + 1), np.float32), frames[fmt.ACTION][:steps].astype(np.float32)]),
               "reward": first(frames[fmt.REWARD][:steps].astype(np.float32), np.float32),
               "terminated": first(terminated, bool), "truncated": first(truncated, bool)}
        if fmt.INTERVENTION in frames:  # per row: the flag of the transition that leaves it (none leaves the last)
            out["intervention"] = np.concatenate([frames[fmt.INTERVENTION].astype(bool)[:steps], [False]])
        return out

    def _data(self, path: Path) -> dict[str, np.ndarray]:
        if path not in self.data:
            table = fmt.read_table(path, "data file named by the episodes table")
            wanted = {name for name in self.used if self.features[name]["dtype"] != "video"} | {"episode_index"}
            wanted |= {name for name in ("index", "frame_index") if name in table.column_names}
            data = {name: fmt.column(table, name, path) for name in sorted(wanted)}
            for name, values in data.items():
                if name in self.features and self.features[name]["shape"] != [1] and values.shape[1:] != tuple(self.features[name]["shape"]):
                    raise DatasetError(f"{path}: column {name!r} holds shape {list(values.shape[1:])}, "
                                       f"meta/info.json says {self.features[name]['shape']}")
                if values.ndim == 2 and self.features.get(name, {}).get("shape") == [1]:
                    data[name] = values[:, 0]  # a [1] feature written as a list column
            self.data[path] = data
        return self.data[path]

    def _frames(self, row: dict, cam: str, length: int, where: str) -> np.ndarray:
        key = fmt.IMAGES + cam
        template = self.info.get("video_path")
        if not isinstance(template, str):
            raise DatasetError(f"{self.info_path}: field video_path is {template!r}, but feature {key!r} is a video")
        path = fmt.resolve(self.root, template, self.info_path, "video_path", video_key=key,
                           chunk_index=int(row[f"videos/{key}/chunk_index"]), file_index=int(row[f"videos/{key}/file_index"]))
        if path not in self.videos:
            if not path.is_file():
                raise DatasetError(f"{path}: missing video file of {key!r} ({where}, videos/{key}/chunk_index and file_index)")
            try:
                self.videos[path] = np.stack(list(read_mp4(path)))
            except Exception as exc:  # noqa: BLE001  (ffmpeg's failures come as several types)
                raise DatasetError(f"{path}: unreadable video ({type(exc).__name__}: {exc})") from None
        video = self.videos[path]
        start = round(float(row[f"videos/{key}/from_timestamp"]) * float(self.info["fps"]))
        if start + length > len(video):
            raise DatasetError(f"{path}: {len(video)} frames, fewer than {where} needs (frames {start}..{start + length - 1}: "
                               f"videos/{key}/from_timestamp {row[f'videos/{key}/from_timestamp']}, length {length})")
        frames = video[start : start + length]
        h, w = next((h, w) for name, h, w in self.spec.cameras if name == cam)
        if frames.shape[1:] != (h, w, 3):
            raise DatasetError(f"{path}: frames of shape {frames.shape[1:]}, the env's camera {cam!r} is ({h}, {w}, 3)")
        return frames
