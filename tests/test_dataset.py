"""LeRobot v3.0 export and import (robolearn.dataset): recordings made the way the project makes them (the
scripted expert in the sim, a teleop session and a deploy with a human takeover on the fake arm) go out as
a dataset laid out as v3 says and come back exactly, images within the codec's tolerance; training loads
the imported file as demos; a malformed or foreign dataset fails naming the file and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robolearn.dataset import DatasetError, export_dataset, import_dataset
from robolearn.dataset.__main__ import main
from robolearn.replay import ReplayStorage
from robolearn.replay.recording import EpisodeRecorder, executed_action
from robolearn.rollout import run_episode
from robolearn.spec import EnvSpec
from robolearn.video import mp4_writer, read_mp4

pytestmark = pytest.mark.timeout(120)

# libx264, yuv444p, crf 0 (the export's default): x264 is lossless there, the RGB <-> YUV conversion rounds.
# Measured on the sim's and the fake cameras' frames: at most 2 levels of 255 off, 0.25-0.42 on average.
IMAGE_MAX_ERROR, IMAGE_MEAN_ERROR = 3, 0.75

SIM = {"episode_seconds": 1.5, "privileged": True,
       "cameras": [{"name": "front", "width": 40, "height": 32}, {"name": "wrist", "width": 32, "height": 32}]}


def load(path: Path, env) -> ReplayStorage:
    spec = EnvSpec.from_config(env)
    return ReplayStorage.load(path, spec.observation_space(), spec.action_space().shape)


def assert_same_rows(a: ReplayStorage, b: ReplayStorage) -> None:
    """Rows, links and flags equal; vectors exactly, images within the codec's tolerance."""
    assert len(a) == len(b) and a.num_transitions() == b.num_transitions()
    rows = slice(0, len(a))
    for key in a.obs:
        x, y = a.obs[key][rows].astype(np.int64 if key in a.image_keys else np.float32), b.obs[key][rows]
        if key in a.image_keys:
            error = np.abs(x - y)
            assert error.max() <= IMAGE_MAX_ERROR and error.mean() < IMAGE_MEAN_ERROR, (key, error.max(), error.mean())
        else:
            np.testing.assert_array_equal(x, y, err_msg=key)
    for name in ("action", "reward", "terminated", "truncated", "prev", "next"):
        np.testing.assert_array_equal(getattr(a, name)[rows], getattr(b, name)[rows], err_msg=name)


# -- recordings ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_demos(tmp_path_factory) -> Path:
    """Two scripted-expert episodes in the sim, recorded through EpisodeRecorder like any demo."""
    from sim import make_kettle_sink_env
    from sim.expert import KettleSinkExpert

    path = tmp_path_factory.mktemp("sim") / "demos.npz"
    env = make_kettle_sink_env(SIM)
    recorder = EpisodeRecorder.open(path, env.observation_space, env.action_space.shape, room=40)
    expert = KettleSinkExpert(env)
    try:
        for seed in range(2):
            expert.reset()
            run_episode(env, expert.act, seed=seed, on_start=lambda obs, _: recorder.begin(obs),
                        record=lambda s: recorder.add(executed_action(s.info, s.action), s.reward, s.terminated, s.truncated, s.next_obs))
            recorder.end()
    finally:
        env.close()
    recorder.save()
    return path


@pytest.fixture(scope="module")
def sim_dataset(sim_demos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim_ds") / "dataset"
    export_dataset(sim_demos, out, SIM)
    return out


@pytest.fixture(scope="module")
def teleop_recordings(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A recorded teleop session (two kept episodes) and a deploy's interventions.npz, on the fake arm."""
    from hardware.deploy import run_deployment
    from hardware.teleop import InterventionPolicy, InterventionRecorder, ScriptedKeys, TeleopCommander, TeleopSession
    from tests.hardware_cases import real_fake_config, real_fake_env

    cfg = real_fake_config()
    cfg["episode_seconds"] = 2.0
    cfg["hardware"]["resets"]["joint_noise_rad"] = 0.0
    folder = tmp_path_factory.mktemp("teleop")
    demos, interventions = folder / "teleop.npz", folder / "interventions.npz"
    env = real_fake_env(cfg)
    try:
        recorder = EpisodeRecorder.open(demos, env.observation_space, env.action_space.shape, room=100)
        for script in ({1: ["q"], 2: ["q", "c"], 6: ["n"]}, {1: ["w"], 3: ["s"]}):  # ended by the operator, then by the env
            session = TeleopSession(env, ScriptedKeys(script), TeleopCommander(env.contract, "joint", speed=1.0), recorder, say=lambda m: None)
            assert session.run_episode(seed=0).kept
        recorder.save()

        class Hold:  # the policy a human takes over from
            def reset(self):
                pass

            def act(self, obs):
                return np.zeros(env.action_space.shape, np.float32)

        keys = ScriptedKeys({3: ["i", "a"], 4: ["a"], 6: ["a", "c"], 9: ["i"], 12: ["i", "q"], 15: ["i"]})
        policy = InterventionPolicy(Hold(), keys, TeleopCommander(env.contract, "joint", speed=1.0), env.clock, say=lambda m: None)
        takeovers = InterventionRecorder(EpisodeRecorder.open(interventions, env.observation_space, env.action_space.shape, room=100))
        run_deployment(env, policy, episodes=1, interventions=takeovers, say=lambda m: None)
        assert takeovers.segments == 2
        takeovers.recorder.save()
    finally:
        env.close()
    return demos, interventions, cfg


# -- the layout --------------------------------------------------------------------------------------------------
def test_the_export_is_laid_out_as_lerobot_v3(sim_demos, sim_dataset):
    store = load(sim_demos, SIM)
    info = json.loads((sim_dataset / "meta/info.json").read_text())
    lengths = [15 + 1, 15 + 1]  # 1.5 s at 10 Hz, and each episode's final observation
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "panda" and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, sum(lengths), 1)
    assert info["chunks_size"] == 1000 and info["splits"] == {"train": "0:2"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    features = info["features"]
    front = features["observation.images.front"]
    assert front["dtype"] == "video" and front["shape"] == [32, 40, 3] and front["names"] == ["height", "width", "channels"]
    assert front["info"]["video.codec"] == "h264" and front["info"]["video.pix_fmt"] == "yuv444p" and front["info"]["video.fps"] == 10
    assert features["observation.state"]["shape"] == [15] and features["observation.state"]["names"][:2] == ["joint1.pos", "joint2.pos"]
    assert features["observation.state"]["names"][-1] == "gripper.width"
    assert features["observation.environment_state"]["shape"] == [13] and features["action"]["shape"] == [8]
    assert features["action"]["names"][-2:] == ["joint7.velocity", "gripper"]
    for name, dtype in [("next.reward", "float32"), ("next.done", "bool"), ("next.success", "bool"), ("timestamp", "float32"),
                        ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")]:
        assert features[name] == {"dtype": dtype, "shape": [1], "names": None}, name
    assert "intervention" not in features  # unknown for an expert's demos: left out

    data = pq.read_table(sim_dataset / "data/chunk-000/file-000.parquet")
    assert set(data.column_names) == {k for k, f in features.items() if f["dtype"] != "video"}
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 15)  # datasets' Sequence(length=15)
    assert data.schema.field("next.done").type == pa.bool_()
    assert data["index"].to_pylist() == list(range(sum(lengths)))
    assert data["frame_index"].to_pylist() == list(range(16)) * 2
    assert data["timestamp"].to_pylist()[:3] == pytest.approx([0.0, 0.1, 0.2])
    assert data["is_last"].to_pylist() == ([False] * 15 + [True]) * 2
    # Frame t holds the action taken from observation t and what followed it; the state is joint_pos | joint_vel | gripper.
    np.testing.assert_array_equal(np.array(data["action"].to_pylist()[:15], np.float32), store.action[:15])
    np.testing.assert_array_equal(np.array(data["next.reward"].to_pylist()[:15], np.float32), store.reward[:15])
    np.testing.assert_array_equal(np.array(data["observation.state"].to_pylist()[:16], np.float32),
                                  np.concatenate([store.obs["joint_pos"][:16], store.obs["joint_vel"][:16], store.obs["gripper"][:16]], 1))
    assert data["next.done"].to_pylist()[14] and not any(data["next.done"].to_pylist()[:14])

    episodes = pq.read_table(sim_dataset / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["episode_index"] for e in episodes] == [0, 1] and [e["length"] for e in episodes] == lengths
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [(0, 16), (16, 32)]
    assert episodes[1]["tasks"] == ["place the kettle in the sink"]
    assert episodes[1]["data/chunk_index"] == episodes[1]["data/file_index"] == 0
    for cam in ("front", "wrist"):
        key = f"videos/observation.images.{cam}"
        assert [(e[f"{key}/from_timestamp"], e[f"{key}/to_timestamp"]) for e in episodes] == [pytest.approx((0.0, 1.6)), pytest.approx((1.6, 3.2))]
        assert episodes[0][f"{key}/chunk_index"] == episodes[0][f"{key}/file_index"] == 0
        video = sim_dataset / f"videos/observation.images.{cam}/chunk-000/file-000.mp4"
        assert len(list(read_mp4(video))) == sum(lengths)  # every episode of a camera in one file
    assert {e["meta/episodes/chunk_index"] for e in episodes} == {0}

    tasks = pq.read_table(sim_dataset / "meta/tasks.parquet")
    assert tasks.to_pylist() == [{"task_index": 0, "task": "place the kettle in the sink"}]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]  # LeRobot looks tasks up by this index
    stats = json.loads((sim_dataset / "meta/stats.json").read_text())
    assert stats["observation.state"]["count"] == [32] and len(stats["observation.state"]["mean"]) == 15
    assert stats["action"]["min"] == pytest.approx(data["action"].combine_chunks().flatten().to_numpy().reshape(-1, 8).min(0).tolist())
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)


# -- round trips -------------------------------------------------------------------------------------------------
def test_sim_demos_come_back_exactly(sim_demos, sim_dataset, tmp_path):
    summary = import_dataset(sim_dataset, tmp_path / "back.npz", SIM)
    assert summary["episodes"] == 2 and summary["transitions"] == 30 and summary["dropped_last_actions"] == 0
    assert_same_rows(load(sim_demos, SIM), load(tmp_path / "back.npz", SIM))


def test_a_recorded_teleop_session_and_interventions_come_back_exactly(teleop_recordings, tmp_path):
    demos, interventions, cfg = teleop_recordings
    for source, flag in ((demos, "true"), (interventions, "auto")):  # auto: deploy's interventions.npz is the human's
        dataset = tmp_path / source.stem
        assert export_dataset(source, dataset, cfg, intervention=flag)["intervention"]
        back = tmp_path / f"{source.stem}_back.npz"
        import_dataset(dataset, back, cfg)
        assert_same_rows(load(source, cfg), load(back, cfg))
        # The flags travel in the imported file and out again: the second export's frames equal the first's.
        again = tmp_path / f"{source.stem}_again"
        export_dataset(back, again, cfg)
        first, second = (pq.read_table(d / "data/chunk-000/file-000.parquet") for d in (dataset, again))
        for column in ("observation.state", "action", "next.reward", "next.done", "next.terminated", "next.truncated",
                       "intervention", "is_last", "episode_index"):
            assert first[column].equals(second[column]), column
        assert all(first["intervention"].to_pylist())
    interventions_data = pq.read_table(tmp_path / "interventions" / "data/chunk-000/file-000.parquet")
    assert interventions_data["episode_index"].to_pylist().count(0) == 6 + 1  # the first takeover: 6 steps, then handed back
    teleop = pq.read_table(tmp_path / "teleop" / "data/chunk-000/file-000.parquet").to_pylist()
    assert [f["frame_index"] for f in teleop if f["is_last"]] == [6, 20]  # ended by the operator after 6 steps, by the env after 20
    assert [f["next.truncated"] for f in teleop if f["is_last"]] == [True, True]


def test_training_loads_an_imported_dataset_as_demos_and_a_run_dir_exports(tmp_path):
    from robolearn.train import Workspace, run
    from sim import make_kettle_sink_env
    from sim.expert import KettleSinkExpert
    from tests.test_train import config

    env_cfg = {"episode_seconds": 2.0, "cameras": [], "privileged": True}  # train_state's env with TINY's episode length
    env = make_kettle_sink_env(env_cfg)
    store = ReplayStorage(env.observation_space, env.action_space.shape, 100)
    expert = KettleSinkExpert(env)
    for seed in range(2):
        expert.reset()
        run_episode(env, expert.act, seed=seed, on_start=lambda obs, _: store.start_episode(obs),
                    record=lambda s: store.add(s.action, s.reward, s.terminated, s.truncated, s.next_obs))
    env.close()
    store.save(tmp_path / "demos.npz")
    export_dataset(tmp_path / "demos.npz", tmp_path / "dataset", env_cfg)
    assert json.loads((tmp_path / "dataset/meta/info.json").read_text())["video_path"] is None  # no camera, no video
    # The command, as a user runs it: the env named as train_state names it, overrides after the options.
    assert main(["import", str(tmp_path / "dataset"), str(tmp_path / "imported.npz"), "--env", "kettle_sink_state",
                 "env.episode_seconds=2"]) == 0
    cfg = config("demos.episodes=2", f"demos.path={tmp_path / 'imported.npz'}", "total_steps=60")
    workspace = Workspace(cfg, tmp_path / "check")  # the loader training uses (ReplayStorage.load against the env's spec)
    try:
        assert workspace.demos.episodes_added == 2 and workspace.demos.num_transitions() == store.num_transitions()
        assert workspace.sampler.demo_ratio == 0.5
    finally:
        workspace.close()
    run(cfg, tmp_path / "run")  # a tiny run with those demos mixed into every batch
    summary = export_dataset(tmp_path / "run", tmp_path / "run_dataset", env_cfg)  # a run directory: its replay.npz
    assert summary["source"].endswith("replay.npz") and summary["transitions"] == 60 and summary["episodes"] == 3


def test_the_command_line_exports_and_imports_and_reports_errors_in_one_line(sim_demos, tmp_path, capsys):
    cameras = "env.cameras=[{name: front, width: 40, height: 32}, {name: wrist, width: 32, height: 32}]"
    overrides = ["env.episode_seconds=1.5", "env.privileged=true", cameras]
    assert main(["export", str(sim_demos), str(tmp_path / "ds"), "--crf", "0", *overrides]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    assert main(["import", str(tmp_path / "ds"), str(tmp_path / "back.npz"), *overrides]) == 0
    assert_same_rows(load(sim_demos, SIM), load(tmp_path / "back.npz", SIM))
    # The main job's env (84x84 cameras) does not match these 40x32 images: one line naming file and field.
    assert main(["import", str(tmp_path / "ds"), str(tmp_path / "other.npz"), "env.privileged=true"]) == 2
    err = capsys.readouterr().err
    assert "meta/info.json: feature 'observation.images.front' has shape [32, 40, 3], the env expects [84, 84, 3]" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "other.npz").exists()
    assert main(["export", str(sim_demos), str(tmp_path / "ds"), *overrides]) == 2  # never over a dataset unasked
    assert "exists and is not empty" in capsys.readouterr().err


# -- malformed and foreign datasets ------------------------------------------------------------------------------
@pytest.fixture
def broken(sim_dataset, tmp_path) -> Path:
    """A copy of the exported dataset to break."""
    copy = tmp_path / "broken"
    shutil.copytree(sim_dataset, copy)
    return copy


def edit_info(root: Path, change) -> None:
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))


def edit_episodes(root: Path, name: str, values: list) -> None:
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.column_names.index(name), name, pa.array(values, table.schema.field(name).type)), path)


@pytest.mark.parametrize("break_it, named", [
    (lambda root: (root / "meta/info.json").unlink(), r"broken/meta/info.json: missing"),
    (lambda root: edit_info(root, lambda i: i.update(codebase_version="v2.1")), r"meta/info.json: field codebase_version is 'v2.1'"),
    (lambda root: edit_info(root, lambda i: i["features"].pop("action")), r"meta/info.json: feature 'action' is missing"),
    (lambda root: edit_info(root, lambda i: i["features"]["observation.state"].update(shape=[14])),
     r"meta/info.json: feature 'observation.state' has shape \[14\], the env expects \[15\]"),
    (lambda root: edit_info(root, lambda i: i["features"]["observation.images.wrist"].update(dtype="image")),
     r"meta/info.json: feature 'observation.images.wrist' has dtype 'image', expected video"),
    (lambda root: edit_info(root, lambda i: i["features"].pop("observation.environment_state")),
     r"meta/info.json: feature 'observation.environment_state' is missing \(the env's privileged state"),
    (lambda root: edit_info(root, lambda i: i.update(fps=30)), r"meta/info.json: field fps is 30, the env acts at control_hz=10.0"),
    (lambda root: edit_episodes(root, "length", [15, 16]),
     r"meta/episodes/chunk-000/file-000.parquet: episode 0: dataset_from_index 0 .. dataset_to_index 16 does not span its length 15"),
    (lambda root: (edit_episodes(root, "length", [17, 16]), edit_episodes(root, "dataset_to_index", [17, 32])),
     r"file-000.parquet: episode 0: length 17, but .*data/chunk-000/file-000.parquet holds 16 rows with episode_index 0"),
    (lambda root: (edit_episodes(root, "dataset_from_index", [1, 17]), edit_episodes(root, "dataset_to_index", [17, 33])),
     r"episode 0: dataset_from_index/dataset_to_index \(1..17\) do not match the index column of .*data/chunk-000/file-000.parquet"),
    (lambda root: edit_episodes(root, "data/file_index", [0, 1]), r"data/chunk-000/file-001.parquet: missing"),
    (lambda root: (root / "videos/observation.images.wrist/chunk-000/file-000.mp4").unlink(),
     r"videos/observation.images.wrist/chunk-000/file-000.mp4: missing video file of 'observation.images.wrist' \(.*episode 0"),
    (lambda root: shorten_video(root / "videos/observation.images.front/chunk-000/file-000.mp4", 28),
     r"videos/observation.images.front/chunk-000/file-000.mp4: 28 frames, fewer than .*episode 1 needs \(frames 16..31"),
    (lambda root: (root / "meta/episodes/chunk-000/file-000.parquet").unlink(), r"broken/meta/episodes: no episodes table"),
    (lambda root: scale_actions(root, 90.0), r"episode 0: column 'action' of .*data/chunk-000/file-000.parquet leaves \[-1, 1\]"),
])
def test_a_malformed_dataset_fails_naming_the_file_and_the_field(broken, tmp_path, break_it, named):
    break_it(broken)
    with pytest.raises(DatasetError, match=named):
        import_dataset(broken, tmp_path / "out.npz", SIM)
    assert not (tmp_path / "out.npz").exists()


def scale_actions(root: Path, scale: float) -> None:
    """Joint targets in degrees instead of normalised commands: what many LeRobot datasets hold."""
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    actions = table["action"].combine_chunks()
    scaled = pa.FixedSizeListArray.from_arrays(pa.array(actions.flatten().to_numpy() * np.float32(scale)), 8)
    pq.write_table(table.set_column(table.column_names.index("action"), "action", scaled), path)


def shorten_video(path: Path, frames: int) -> None:
    kept = list(read_mp4(path))[:frames]
    writer = mp4_writer(path, 10, crf=0, pix_fmt="yuv444p")
    for frame in kept:
        writer.append_data(frame)
    writer.close()


def test_a_dataset_for_another_robot_or_camera_is_refused_naming_the_field(broken, tmp_path):
    with pytest.raises(DatasetError, match=r"info.json: field robot_type is 'panda', the env's robot is 'ur5e' \(env.robot=panda\)"):
        import_dataset(broken, tmp_path / "out.npz", {**SIM, "robot": "ur5e"})
    edit_info(broken, lambda i: i.update(robot_type=None))  # a foreign dataset may not say: the shapes do
    with pytest.raises(DatasetError, match=r"feature 'action' has shape \[8\], the env expects \[7\] \(6 joint commands of ur5e"):
        import_dataset(broken, tmp_path / "out.npz", {**SIM, "robot": "ur5e"})
    with pytest.raises(DatasetError, match=r"feature 'observation.images.side' is missing \(the env's camera 'side'"):
        import_dataset(broken, tmp_path / "out.npz", {**SIM, "cameras": [*SIM["cameras"], {"name": "side"}]})
    summary = import_dataset(broken, tmp_path / "state.npz", {**SIM, "cameras": [], "privileged": False})
    assert {"observation.images.front", "observation.environment_state"} <= set(summary["ignored_features"])


def test_a_foreign_dataset_without_final_observations_loses_each_last_action(sim_dataset, tmp_path):
    """LeRobot's own recordings have no final observation: the last frame becomes it (its action is dropped), and
    the step before it is truncated unless the dataset ends it; next.done without next.truncated is a termination."""
    foreign = tmp_path / "foreign"
    shutil.copytree(sim_dataset, foreign)
    edit_info(foreign, lambda i: [i["features"].pop(k) for k in ("is_last", "next.terminated", "next.truncated")])
    data = foreign / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data).drop_columns(["is_last", "next.terminated", "next.truncated"])
    pq.write_table(table, data)
    summary = import_dataset(foreign, tmp_path / "ended.npz", SIM)
    assert summary["dropped_last_actions"] == 2 and summary["transitions"] == 2 * 15
    ended = load(tmp_path / "ended.npz", SIM)
    assert np.flatnonzero(ended.terminated[:32]).tolist() == [14, 30] and not ended.truncated[:32].any()
    done = table.column_names.index("next.done")
    pq.write_table(table.set_column(done, "next.done", pa.array([False] * 32)), data)  # no end marked at all
    import_dataset(foreign, tmp_path / "open.npz", SIM)
    unmarked = load(tmp_path / "open.npz", SIM)
    assert np.flatnonzero(unmarked.truncated[:32]).tolist() == [14, 30] and not unmarked.terminated[:32].any()
    assert unmarked.episodes_added == 2 and unmarked.num_transitions() == 30


def test_sources_that_hold_no_episodes_are_named(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"run: a training run directory with no replay.npz, so it holds no episodes"):
        export_dataset(run_dir, tmp_path / "out", SIM)
    (tmp_path / "notes.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"notes.npz: not a robolearn replay file"):
        export_dataset(tmp_path / "notes.npz", tmp_path / "out", SIM)
    with pytest.raises(DatasetError, match=r"missing.npz: no such replay file"):
        export_dataset(tmp_path / "missing.npz", tmp_path / "out", SIM)
    assert not (tmp_path / "out").exists()
