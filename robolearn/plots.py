"""Learning curves from run directories' eval.csv files, written as SVG (text, diff-able, no binaries).

    python -m robolearn.plots /work/runs/state_seed1 /work/runs/state_seed2 --out docs/img/state_sac.svg
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


METRICS = {"success_rate": "eval success rate", "mean_return": "eval mean return"}


def read_eval(run_dir: Path, metric: str = "success_rate") -> tuple[np.ndarray, np.ndarray]:
    with open(run_dir / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{run_dir}/eval.csv has no evaluations yet")
    return np.array([float(r["step"]) for r in rows]), np.array([float(r[metric]) for r in rows])


def plot(run_dirs: list[Path], out: Path, title: str, metric: str = "success_rate") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # keep text as text
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for run_dir in run_dirs:
        steps, values = read_eval(run_dir, metric)
        ax.plot(steps, values, marker="o", markersize=3, label=run_dir.name)
    ax.set_xlabel("env steps")
    ax.set_ylabel(METRICS[metric])
    if metric == "success_rate":
        ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m robolearn.plots")
    parser.add_argument("runs", nargs="+", type=Path, help="run directories with eval.csv")
    parser.add_argument("--out", type=Path, required=True, help="output .svg")
    parser.add_argument("--title", default="kettle-to-sink")
    parser.add_argument("--metric", choices=sorted(METRICS), default="success_rate")
    args = parser.parse_args(argv)
    plot(args.runs, args.out, args.title, args.metric)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
