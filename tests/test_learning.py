"""Learning runs (slow: ~40 min each on 2 cores; `python -m pytest -m slow tests/test_learning.py`).

Each runs the command a user runs, then evaluates the checkpoint the run handed over on seeds it never
trained or evaluated on. Results of these runs are in docs/benchmarks.md.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2 * 3600)]


def _python(*args: str, cwd) -> str:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_state_sac_solves_the_ur5e_sim_within_50k_steps(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = tmp_path / "run"
    _python(
        "-m", "robolearn.train", "--config-name", "train_state", "env.robot=ur5e", "seed=1", "torch_threads=1",
        "progress=false", f"hydra.run.dir={run}", f"demos.path={tmp_path}/demos.npz", cwd=repo,
    )
    with open(run / "eval.csv") as f:
        evals = list(csv.DictReader(f))
    assert int(evals[-1]["step"]) == 50_000
    assert max(float(row["success_rate"]) for row in evals) >= 0.8, evals
    # The saved checkpoint on fresh seeds (training seeds are small, evaluation seeds start at 10^9).
    out = _python(
        "-m", "robolearn.eval", "env=kettle_sink_state", "env.robot=ur5e", "policy=checkpoint",
        f"policy.path={run}/checkpoint.pt", "episodes=50", "seed=5000000", "progress=false", f"hydra.run.dir={tmp_path}/eval",
        cwd=repo,
    )
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["success_rate"] >= 0.6, summary
