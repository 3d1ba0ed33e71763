"""The encoder benchmark: a pretrained encoder's errors per transfer row, from frames collected once per row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from robolearn.bench.encoder_bench import SEED_BASE, collect_row, run
from robolearn.bench.transfer_bench import load_rows, row_env_config
from robolearn.checkpoint import env_record
from robolearn.config import ConfigError, EnvConfig, load_env_config
from robolearn.paths import CONFIG_DIR
from robolearn.pretrain import pretrain

TINY = ["env.episode_seconds=1"]  # 10 steps an episode


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("encoder") / "enc.pt"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="pretrain", overrides=[
            f"out={out}", "env=kettle_sink_transfer", "episodes=2", "epochs=1", "batch_size=8", "progress=false",
            "torch_threads=1", "embed_dim=8", "hidden_dim=16", *TINY])
    pretrain(cfg)
    return out


def test_a_row_changes_the_images_and_not_the_physics(tmp_path):
    base = env_record(load_env_config(EnvConfig(), episode_seconds=1.0))
    rows = load_rows()
    plain = collect_row(row_env_config(base, rows["as_trained"]), 1, SEED_BASE, tmp_path / "a")
    moved = collect_row(row_env_config(base, rows["camera_5cm_6deg"]), 1, SEED_BASE, tmp_path / "b")
    assert np.array_equal(plain["joint_pos"], moved["joint_pos"]) and np.array_equal(plain["privileged"], moved["privileged"])
    assert not np.array_equal(plain["front"], moved["front"]) and not np.array_equal(plain["wrist"], moved["wrist"])


def test_row_seeds_lie_above_the_transfer_benchmarks_and_below_2_to_the_32():
    from robolearn.bench import encoder_bench, transfer_bench

    rows = len(load_rows())
    assert SEED_BASE >= transfer_bench.row_seed(rows)
    assert SEED_BASE + rows * encoder_bench.ROW_SEED_STRIDE <= 2**32


def test_errors_per_row_repeat_exactly_and_are_compared_to_as_trained(encoder_file):
    argv = [f"encoders=[{encoder_file}]", "episodes=1", "rows=[camera_5cm_6deg]", *TINY]
    first, again = run(argv=argv), run(argv=argv)
    errors = first["errors_cm"][str(encoder_file)]
    assert list(errors) == ["as_trained", "camera_5cm_6deg"]  # the reference row is added
    assert first["frames"] == {"as_trained": 10, "camera_5cm_6deg": 10}
    for row in errors.values():
        assert set(row) >= {"kettle_median_cm", "kettle_p90_cm", "handle_median_cm", "handle_p90_cm", "near_gripper_frames"}
        assert all(np.isfinite(v) and v > 0 for k, v in row.items() if k.endswith("_cm"))
    assert first["ratio_to_as_trained"][str(encoder_file)]["as_trained"]["kettle_median_cm"] == 1.0
    assert again["errors_cm"] == first["errors_cm"]


def test_missing_encoder_unknown_row_and_no_encoder_fail_clearly(tmp_path, encoder_file):
    from robolearn.agents.pretrained import EncoderFileError

    with pytest.raises(EncoderFileError, match="does not exist"):
        run(argv=[f"encoders=[{tmp_path / 'none.pt'}]", *TINY])
    with pytest.raises(ConfigError, match="no_such_row"):
        run(argv=[f"encoders=[{encoder_file}]", "rows=[no_such_row]", *TINY])
    with pytest.raises(ConfigError, match="encoders"):
        run(argv=[*TINY])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(EncoderFileError, match="not a robolearn pretrained encoder"):
        run(argv=[f"encoders=[{foreign}]", *TINY])


def test_command_line_quick_run_ends_with_one_json_line(encoder_file):
    done = subprocess.run([sys.executable, "-m", "robolearn.bench", "encoder", "--quick", f"encoders=[{encoder_file}]",
                           *TINY], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "encoder" and list(result["frames"]) == ["as_trained", "camera_5cm_6deg"]
    assert "row camera_5cm_6deg (10 frames)" in done.stdout


def test_near_the_gripper_the_kettles_bias_is_reported_as_read_and_as_placed_from_the_gripper():
    from robolearn.bench.encoder_bench import NEAR_GRIPPER_M, encoder_errors
    from robolearn.pretrain import regression_targets
    from robolearn.robots import PANDA

    rng = np.random.default_rng(0)
    joints = (PANDA.home + rng.uniform(-0.2, 0.2, (6, 7))).astype(np.float32)
    tcp = PANDA.tcp_positions(joints)
    privileged = rng.uniform(-1, 1, (6, 13)).astype(np.float32)
    privileged[:4, 7:10] = tcp[:4] + 0.5 * NEAR_GRIPPER_M / np.sqrt(3)  # the handle at the gripper in frames 0-3 only
    privileged[:, 2] = [0.0, 0.5, 0.5, 0.0, 0.0, 0.0]  # resting at 0 (episode start), up in frames 1-2 only
    data = {"privileged": privileged, "joint_pos": joints, "gripper": np.zeros((6, 1), np.float32), "episode": np.zeros(6)}
    groups = ["privileged", "from_tcp"]
    truth = regression_targets(data, groups, PANDA)
    reading = truth.copy()
    reading[:, 0:3] += [0.0, 0.03, 0.0]  # the base-frame kettle read 3 cm off along y, as a moved camera does
    reading[:, 13:16] += [0.004, 0.0, 0.0]  # the kettle from the gripper 4 mm off

    class Reader:  # stands in for the network: hands out the readings in order
        def __init__(self):
            self.at = 0

        def predict_state(self, images, proprio):
            rows = reading[self.at : self.at + len(proprio)]
            self.at += len(proprio)
            return torch.as_tensor(rows)

    meta = {"targets": groups, "robot": "panda", "image_keys": [], "proprio_keys": ["joint_pos", "gripper"]}
    errors = encoder_errors(Reader(), meta, data, batch_size=4)
    assert errors["near_gripper_frames"] == 4
    assert errors["kettle_near_median_cm"] == pytest.approx(3.0, abs=1e-3) and errors["kettle_near_bias_cm"] == pytest.approx(3.0, abs=1e-3)
    assert errors["kettle_near_from_tcp_median_cm"] == pytest.approx(0.4, abs=1e-3)
    assert errors["kettle_near_from_tcp_bias_cm"] == pytest.approx(0.4, abs=1e-3)
    assert errors["lifted_frames"] == 2 and errors["kettle_lifted_bias_cm"] == pytest.approx(3.0, abs=1e-3)
    assert errors["kettle_lifted_from_tcp_median_cm"] == pytest.approx(0.4, abs=1e-3)
