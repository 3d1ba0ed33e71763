"""The eval command and the sim benchmark, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import imageio.v2 as imageio


def run(*args: str, timeout: float = 240) -> tuple[dict, str]:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]), result.stdout


def test_eval_command_reports_and_writes_a_watchable_mp4(tmp_path):
    video = tmp_path / "expert.mp4"
    summary, stdout = run("-m", "robolearn.eval", "policy=expert", "episodes=2", "video=true",
                          f"video_path={video}", "progress=false")
    assert summary["episodes"] == 2
    assert summary["success_rate"] == 1.0
    assert "success_rate=1.000" in stdout
    frames = list(imageio.get_reader(video).iter_data())  # list(reader) trips on its len() of inf
    assert len(frames) > 20
    assert frames[0].shape[0] == 480 and frames[0].std() > 10


def test_eval_random_policy_in_torque_mode(tmp_path):
    summary, _ = run("-m", "robolearn.eval", "policy=random", "episodes=1", "env.control_mode=joint_torque",
                     "env.episode_seconds=2", "progress=false")
    assert summary == {**summary, "episodes": 1, "success_rate": 0.0, "mean_length": 20.0, "control_mode": "joint_torque"}


def test_sim_benchmark_ends_with_a_json_line():
    result, stdout = run("-m", "robolearn.bench", "sim", "--steps", "30", "--rounds", "1")
    assert result["benchmark"] == "sim"
    assert result["env_steps_per_s"] > 0 and result["ceiling_steps_per_s"] > 0
    assert abs(result["ratio"] - result["env_steps_per_s"] / result["ceiling_steps_per_s"]) < 0.01
    assert result["cameras"] == ["front 84x84", "wrist 84x84"]
    assert "round 1/1" in stdout
