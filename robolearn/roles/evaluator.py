"""The asynchronous evaluator: evaluates the learner's snapshots, beside training, in its own process.

    python -m robolearn.roles.evaluator --config-name async_sim run_dir=outputs/async/run1

The learner writes eval snapshots atomically to `<run_dir>/snapshots/step_{step:09d}.pt`: a checkpoint
payload (robolearn/training/payload.py) with `train_min` (training wall-clock minutes when saved) and
`final` (the run's last snapshot). The evaluator takes the newest, deletes older ones it had no time for
(it fell behind: their steps are logged), evaluates it with `cfg.eval` (robolearn/training/evaluation.py:
`<run_dir>/eval.csv`, videos, tensorboard under `<run_dir>/tb`, `<run_dir>/best.pt`) and deletes it.

SIGTERM or Ctrl-C: the evaluation under way is finished; then, with `eval.final`, the evaluator waits up
to FINAL_WAIT_S for the final snapshot and evaluates it. It exits after any final snapshot. A restarted
evaluator takes its best and last evaluation from eval.csv, so best.pt is only replaced by a better policy.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the heavy imports: a SIGTERM while starting ends cleanly
    from robolearn.process.signals import exit_cleanly_on_early_stop

    exit_cleanly_on_early_stop()

import logging
import os
import signal
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from robolearn.agents import DrQAgent
from robolearn.roles.config import AsyncConfig
from robolearn.checkpoint import CheckpointError, load_checkpoint, run_agent_config
from robolearn.config import load_typed
from robolearn.display import open_view
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR
from robolearn.process.signals import ignore_late_stop_signals
from robolearn.training.evaluation import EvalRecorder, best_and_last, read_eval_csv
from robolearn.training.snapshots import SNAPSHOTS, list_snapshots

log = logging.getLogger(__name__)

POLL_S = 0.5
FINAL_WAIT_S = 120.0  # after a stop request: how long to wait for the learner's final snapshot
# Evaluation only watches training: at the lowest CPU priority it takes the cycles the learner and actors
# leave, so on a small machine (2 cores) it does not slow training; evaluations lag instead (and the
# newest snapshot is taken when one falls behind). Measured on 2 cores at nice 5: during an evaluation the
# evaluator and its video encoder took ~95% of a core and the learner dropped to ~77%.
EVAL_NICE = 19

class Evaluator:
    """`writer`, `view`: a tensorboard SummaryWriter and a live view (or None), closed with the evaluator.
    `clock` and `sleep` are time.monotonic and time.sleep; tests drive them."""

    def __init__(self, cfg: AsyncConfig, run_dir: str | Path, writer=None, view=None, final_wait_s: float = FINAL_WAIT_S,
                 clock=time.monotonic, sleep=time.sleep):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.final_wait_s, self.clock, self.sleep = final_wait_s, clock, sleep
        self.env = make_env(cfg.env, render_mode="rgb_array" if cfg.eval.video else None)
        # With learner.init_from, the checkpoint's agent config, as the learner and the actors use.
        self.agent_cfg = run_agent_config(cfg, self.env.observation_space)
        self.agent: DrQAgent | None = None  # built from the first snapshot, which carries a frozen encoder's weights
        best, last = best_and_last(read_eval_csv(self.run_dir / "eval.csv"))
        if best:
            log.info("evaluator: resuming with the evaluations in %s (best: step %s, success %.2f)",
                     self.run_dir / "eval.csv", best["step"], best["success_rate"])
        self.recorder = EvalRecorder(self.run_dir, cfg.eval, self.env, writer, view, best=best, last=last)
        self.writer, self.view = writer, view
        self.stop_requested: str | None = None
        self.stop_at = 0.0
        self.evaluations = self.skipped = 0
        self.ended = ""

    def request_stop(self, reason: str = "stop requested") -> None:
        """What SIGTERM and Ctrl-C call: finish the evaluation under way (a second Ctrl-C interrupts it)."""
        if self.stop_requested and reason == "SIGINT":
            raise KeyboardInterrupt
        if not self.stop_requested:
            self.stop_requested, self.stop_at = reason, self.clock()
            log.info("%s: finishing the evaluation under way%s", reason,
                     f", then waiting up to {self.final_wait_s:.0f} s for the final snapshot" if self.cfg.eval.final else "")

    def run(self) -> dict:
        """Evaluate snapshots until a final one, or until stopped (and the wait for the final one is over)."""
        while True:
            if self.stop_requested and not self._keep_waiting():
                break
            found = self.take_newest()
            if found is None:
                self.sleep(POLL_S)
            elif self.evaluate_snapshot(*found):
                self.ended = f"final snapshot (step {found[0]}) evaluated"
                break
        return {"evaluations": self.evaluations, "skipped": self.skipped, "ended": self.ended, "best": self.recorder.best}

    def _keep_waiting(self) -> bool:
        if not self.cfg.eval.final:
            self.ended = f"{self.stop_requested} (eval.final=false: no final snapshot awaited)"
            return False
        if self.clock() - self.stop_at < self.final_wait_s:
            return True
        self.ended = f"{self.stop_requested}, and no final snapshot came within {self.final_wait_s:.0f} s"
        log.warning("evaluator: no final snapshot came within %.0f s of the stop request; exiting", self.final_wait_s)
        return False

    def take_newest(self) -> tuple[int, Path] | None:
        """The newest snapshot; older ones are deleted unevaluated (the evaluator fell behind the learner)."""
        snapshots = list_snapshots(self.run_dir / SNAPSHOTS)
        if not snapshots:
            return None
        *older, newest = snapshots
        if older:
            for _, path in older:
                path.unlink(missing_ok=True)
            self.skipped += len(older)
            log.info("evaluator fell behind: skipped the snapshots of steps %s, evaluating step %d",
                     [step for step, _ in older], newest[0])
        return newest

    def evaluate_snapshot(self, step: int, path: Path) -> bool:
        """Evaluate one snapshot and delete it; returns whether it was the run's final one."""
        try:
            payload = load_checkpoint(path)
        except CheckpointError as exc:  # saves are atomic, so only a foreign file: not worth stopping for
            log.warning("evaluator: %s; deleted unevaluated", exc)
            path.unlink(missing_ok=True)
            self.skipped += 1
            return False
        counters = payload.get("counters") or {}
        updates = counters.get("updates", 0)
        last = self.recorder.last
        if last.get("step") == step and last.get("updates") == updates:
            # The final snapshot of a run that ended right after an evaluation: the same policy, not evaluated twice
            # (as the inline runner does not).
            log.info("evaluator: step %d (%d updates) is evaluated already", step, updates)
        else:
            agent = self._agent(payload)
            agent.load_training_state(payload["agent"])
            self.recorder.evaluate(agent, step, payload, updates=updates, train_min=payload.get("train_min"))
            self.evaluations += 1
        path.unlink(missing_ok=True)
        return bool(payload.get("final", False))

    def _agent(self, payload: dict) -> DrQAgent:
        if self.agent is None:
            meta = payload.get("encoder_meta") if self.agent_cfg.encoder == "pretrained" else None
            self.agent = DrQAgent(self.env.observation_space, self.env.action_space, self.agent_cfg, device="cpu",
                                  encoder_meta=meta)
        return self.agent

    def close(self) -> None:
        if self.view is not None:
            self.view.close()
        if self.writer is not None:
            self.writer.close()
        self.env.close()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="async_sim")
def main(node: DictConfig) -> None:
    cfg = load_typed(AsyncConfig, node, "async")
    os.nice(EVAL_NICE)  # see EVAL_NICE: training keeps the CPU it needs
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    run_dir = Path(cfg.run_dir)
    evaluator = Evaluator(cfg, run_dir, writer=SummaryWriter(str(run_dir / "tb")), view=open_view(cfg.display, "eval"))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _: evaluator.request_stop(signal.Signals(signum).name))
    try:
        result = evaluator.run()
    finally:
        evaluator.close()
    print(f"evaluator finished: {result}")
    ignore_late_stop_signals()


if __name__ == "__main__":
    main()
