"""Summarise training runs for docs/benchmarks.md, either runner: `python -m robolearn.bench runs DIR [DIR ...]`.

Per run directory: the runner, env steps and training minutes to the first evaluation at or above the
threshold (eval.csv's `step` and `train_min`: the training wall-clock when the evaluated policy was taken),
the last and best evaluation (the one best.pt holds, with its confirmed score on more seeds where it has
one), env steps/s and updates/s over the training wall-clock, the achieved update-to-data ratio and, for the
async runner, the learner's busy share (robolearn/roles/learner.py `rates`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from robolearn.training.evaluation import read_eval_csv, score


def summarise(run_dir: Path, threshold: float = 0.8) -> dict:
    rows = [r for r in read_eval_csv(run_dir / "eval.csv") if isinstance(r.get("success_rate"), (int, float))]
    first = next((r for r in rows if r["success_rate"] >= threshold), None)
    payload = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False) if (run_dir / "checkpoint.pt").exists() else {}
    counters = payload.get("counters", {})
    status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").exists() else {}
    steps, updates = int(counters.get("step") or status.get("step") or 0), int(counters.get("updates") or 0)
    train_s = float(payload.get("train_s") or 60 * float(status.get("train_min") or 0.0))
    best = max(rows, key=lambda r: (score(r), r["step"]), default={})  # the row best.pt holds
    return {
        "run": str(run_dir), "runner": "async" if (run_dir / "roles.yaml").exists() else "inline",
        "first_step": first["step"] if first else None, "first_min": first.get("train_min") if first else None,
        "last": rows[-1]["success_rate"] if rows else None, "best": best.get("success_rate"), "best_step": best.get("step"),
        "best_confirmed": best.get("confirmed_success") if best.get("confirmed_success", "") != "" else None,
        "steps": steps, "updates": updates, "train_min": round(train_s / 60, 1),
        "steps_per_s": round(steps / train_s, 1) if train_s else None,
        "updates_per_s": round(updates / train_s, 1) if train_s else None,
        "busy": status.get("busy"), "utd": status.get("utd"), "evaluations": len(rows),
    }


def run(quick: bool = False, argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m robolearn.bench runs")
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--threshold", type=float, default=0.8)
    args = parser.parse_args(argv)
    results = [summarise(d, args.threshold) for d in args.dirs]
    for r in results:
        print(json.dumps(r))
    return {"runs": len(results), "threshold": args.threshold}
