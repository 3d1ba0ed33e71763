"""Evaluation of a training run, the same for both runners: seeded deterministic episodes, a row in
`eval.csv`, tensorboard scalars, a video, and `best.pt` when the policy is the best so far.

The inline runner evaluates its own agent between episodes; the asynchronous runner's evaluator process
(robolearn/roles/evaluator.py) evaluates the learner's snapshots. Both go through `EvalRecorder.evaluate`, so an
eval.csv means the same whichever runner wrote it.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from robolearn import rollout
from robolearn.agents.policy import AgentPolicy
from robolearn.checkpoint import save_checkpoint
from robolearn.config import check

log = logging.getLogger(__name__)

EVAL_COLUMNS = ("step", "success_rate", "mean_return", "mean_length", "updates", "train_min", "confirmed_success", "confirmed_return")

Payload = Union[dict, Callable[[], dict]]


@dataclass
class EvalSettings:
    every: int = 2500  # env steps
    first_min: Optional[float] = 2.0  # the first eval (and checkpoint) by wall-clock: at the first episode end after this
    every_min: Optional[float] = 20.0  # then by steps or by wall-clock, whichever comes first (null: steps only)
    episodes: int = 20
    seed: int = 1_000_000_000  # evaluation seeds are disjoint from training seeds
    video: bool = True
    final: bool = True
    # A policy that would be the best so far on `episodes` is evaluated on round(confirm_ratio x episodes) more
    # (the seeds after them) before it becomes best.pt, which is then chosen on the pooled score: the best of
    # ~20 twenty-episode evaluations overstates its policy (three async runs' best 0.90, 0.95 and 0.90 scored
    # 0.80, 0.88 and 0.66 on 50 fresh seeds). eval.csv keeps `success_rate` on `episodes` (the learning curve)
    # and adds the pooled `confirmed_success` / `confirmed_return` where a policy was confirmed. 0: off.
    confirm_ratio: float = 1.5

    def __post_init__(self) -> None:
        check(self.confirm_ratio >= 0, "eval.confirm_ratio", self.confirm_ratio, "must be >= 0 (0: off)")

    def confirm_episodes(self) -> int:
        return round(self.confirm_ratio * self.episodes)


class EvalRecorder:
    """Evaluates a policy and records the result. `env`: made for evaluation (rgb_array rendering when
    `cfg.video`); `writer`: a tensorboard SummaryWriter or None; `view`: a live view or None.
    `best` and `last` (result dicts) are what a resumed runner had: best.pt is replaced only by a result
    at least as good as `best`."""

    def __init__(self, run_dir: Path, cfg: EvalSettings, env, writer=None, view=None,
                 best: dict | None = None, last: dict | None = None):
        self.run_dir, self.cfg, self.env = Path(run_dir), cfg, env
        self.writer, self.view = writer, view
        self.best: dict = dict(best or {})
        self.last: dict = dict(last or {})

    def evaluate(self, agent, step: int, payload: Payload, updates: int = 0, train_min: float | None = None) -> dict:
        """`payload`: the checkpoint payload of `agent` (or a zero-argument callable making it, called only
        when best.pt is written); best.pt holds it with the result under "eval"."""
        cfg = self.cfg
        video = self.run_dir / "videos" / f"eval_{step:08d}.mp4" if cfg.video else None
        if self.view is not None:
            self.view.label = "eval"
        summary = rollout.evaluate(self.env, AgentPolicy(agent, deterministic=True), episodes=cfg.episodes, seed=cfg.seed,
                                   video_path=video, progress=False, view=self.view)
        result = {"step": step, "success_rate": summary.success_rate, "mean_return": summary.mean_return,
                  "mean_length": summary.mean_length, "updates": int(updates),
                  "train_min": "" if train_min is None else round(float(train_min), 2),
                  "confirmed_success": "", "confirmed_return": ""}
        more = cfg.confirm_episodes()
        # A policy without a success has nothing to overstate: it is not confirmed (early in a run every
        # evaluation would be, at the cost of 1.5x its episodes at full length).
        if more and summary.success_rate > 0 and is_better(result, self.best):
            extra = rollout.evaluate(self.env, AgentPolicy(agent, deterministic=True), episodes=more,
                                     seed=cfg.seed + cfg.episodes, progress=False, view=self.view)
            pooled = summary.episodes + extra.episodes
            result["confirmed_success"] = sum(e.success for e in pooled) / len(pooled)
            result["confirmed_return"] = sum(e.episode_return for e in pooled) / len(pooled)
            log.info("eval at step %d: %.2f on %d episodes, %.2f on %d with %d more (seeds from %d) before it can be best.pt",
                     step, summary.success_rate, len(summary.episodes), result["confirmed_success"], len(pooled), more,
                     cfg.seed + cfg.episodes)
        append_eval_row(self.run_dir / "eval.csv", result)
        self._scalars(result)
        log.info("eval at step %d: success %.2f, return %.2f, length %.1f (%d updates%s)", step, result["success_rate"],
                 result["mean_return"], result["mean_length"], result["updates"],
                 "" if train_min is None else f", {result['train_min']} min of training")
        self.last = result
        if is_better(result, self.best):
            # What a run hands over may be its best evaluated policy, not its last: SAC's success swings
            # from one evaluation to the next.
            self.best = result
            payload = payload() if callable(payload) else payload
            save_checkpoint(self.run_dir / "best.pt", {**payload, "eval": result})
        return result

    def _scalars(self, result: dict) -> None:
        if self.writer is None:
            return
        for name, value in result.items():
            if name != "step" and value != "":
                self.writer.add_scalar(f"eval/{name}", value, result["step"])


def score(row: dict) -> tuple[float, float]:
    """What best.pt is chosen by: the pooled (confirmed) success and return where a row has them, else its own."""
    if row.get("confirmed_success", "") != "":
        return row["confirmed_success"], row["confirmed_return"]
    return row["success_rate"], row["mean_return"]


def is_better(result: dict, best: dict) -> bool:
    """At least as good as `best` by score (success rate, then mean return; ties go to the newer policy)."""
    return not best or score(result) >= score(best)


# -- eval.csv ----------------------------------------------------------------------------------------------
def append_eval_row(path: Path, result: dict) -> None:
    """One row; the header once. A file written by an older run keeps its own columns (a header without
    `updates` and `train_min` gets rows without them), so its rows stay aligned with its header."""
    columns = _header(path)
    new = columns is None
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns or EVAL_COLUMNS), restval="", extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(result)


def _header(path: Path) -> list[str] | None:
    """The columns of an existing eval.csv, None when there is none yet (or it is empty)."""
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        first = next(csv.reader(f), None)
    return first or None


def read_eval_csv(path: Path) -> list[dict]:
    """The rows of an eval.csv (either format), numbers as numbers; [] when there is no file."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)]


def _number(text: Any) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return text if text is not None else ""


def best_and_last(rows: list[dict]) -> tuple[dict, dict]:
    """What a recorder restarted on an existing eval.csv resumes with: the best row (by success rate, then
    mean return; the later of equals, as `is_better` keeps it) and the last."""
    rows = [row for row in rows if _scored(row)]  # a line cut short by a crash mid-write is left out
    best: dict = {}
    for row in rows:
        if is_better(row, best):
            best = row
    return best, (rows[-1] if rows else {})


def _scored(row: dict) -> bool:
    return all(isinstance(row.get(k), (int, float)) for k in ("step", "success_rate", "mean_return"))
