"""Soak test of asynchronous training: N sim actors, a learner and the replay server for M minutes.

    python -m robolearn.transport.soak --minutes 10 --actors 4        # launch/soak.sh

State-only kettle-to-sink (so the CPU goes to the transport, not rendering) with a small replay capacity,
so that the buffer wraps many times. Every 10 s it samples each process's resident memory and the replay
directory's size on disk (blocks in use: the store's files are sparse until written). At the end the actors are stopped
(each sends what it still holds) and the run passes when:

- no loss: the server accepted exactly the transitions the actors sent, and every actor had all its
  transitions acknowledged;
- bounded memory: over the second half of the run (the buffer long full and wrapping) no process's
  resident memory grew by `--rss-slack-mb` or more; the replay directory's size on disk is reported (`disk_max_mb`).

The last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import tempfile
import time
from pathlib import Path

from robolearn.roles.group import RoleFailed, RoleProcess, port_overrides, run_keys, stop_in_order, wait_for_endpoints


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) / (1 << 20)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m robolearn.transport.soak")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=20_000)
    parser.add_argument("--rss-slack-mb", type=float, default=64.0)
    parser.add_argument("--run-dir", default=None)
    args = parser.parse_args(argv)

    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="robolearn-soak-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    base = ["--config-name", "async_state", f"run_dir={run_dir}", "hydra/job_logging=stdout", "progress=false", "server.demos=null",
            "torch_threads=1", f"server.capacity={args.capacity}", "transport.port=0", "transport.weights_port=0",
            "learner.total_updates=null", "learner.batch_size=128", "learner.min_transitions=1000", "learner.max_utd=0.5",
            "actor.log_every_episodes=50", f"transport.curve_keys={run_keys(run_dir, args.actors)}"]  # with keys, as every run
    started = time.time() - 1.0

    def role(name: str, module: str, args: list[str]) -> RoleProcess:
        return RoleProcess(name, module, run_dir, args, own_session=False)

    procs = {"replay_server": role("replay_server", "robolearn.roles.replay_server", base)}
    samples = []
    try:
        ports = port_overrides(wait_for_endpoints(run_dir, procs["replay_server"], started))
        procs["learner"] = role("learner", "robolearn.roles.learner", base + ports + ["transport.client_key=learner"])
        for i in range(args.actors):
            procs[f"actor{i}"] = role(f"actor{i}", "robolearn.roles.actor", base + ports + [f"actor.name=actor{i}", f"actor.seed={i}",
                                                                                           f"transport.client_key=actor{i}"])
        print(f"soak: {args.actors} actors, learner, replay server for {args.minutes} min in {run_dir}", flush=True)
        end = time.monotonic() + 60 * args.minutes
        while time.monotonic() < end:
            for proc in procs.values():
                if not proc.running():
                    raise proc.failure(what=f"exited with code {proc.code} during the soak")
            sample = {"t": round(time.monotonic() - end + 60 * args.minutes, 1), "disk_mb": round(disk_mb(run_dir / "replay"), 1)}
            sample.update({name: round(rss_mb(proc.pid), 1) for name, proc in procs.items()})
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            time.sleep(min(10.0, max(end - time.monotonic(), 0.1)))
        actors = {r: p for r, p in procs.items() if r.startswith("actor")}
        for proc in actors.values():
            proc.stop()
        for proc in actors.values():
            proc.wait(timeout_s=60)
    finally:
        stop_in_order(procs, grace_s=30.0)

    sent, all_acked = 0, True
    for role in (r for r in procs if r.startswith("actor")):
        match = re.search(r"finished: (\{.*\})", (run_dir / f"{role}.log").read_text())
        if match is None:
            raise RoleFailed(f"{role} did not report its result (see {run_dir / (role + '.log')})")
        result = ast.literal_eval(match.group(1))  # the dict the actor printed
        sent += result["transitions_sent"]
        all_acked &= bool(result["all_acknowledged"])
    match = re.search(r"\((\d+) accepted in all", (run_dir / "replay_server.log").read_text())
    accepted = int(match.group(1)) if match else -1

    # Memory: growth over the second half of the run, when the buffer has long been full and wrapping.
    half = samples[len(samples) // 2:] if len(samples) >= 4 else samples
    growth = {role: round(max(s[role] for s in half) - half[0][role], 1) for role in procs if role in half[0]}
    disk_max = max(s["disk_mb"] for s in samples)
    summary = {
        "benchmark": "soak",
        "minutes": args.minutes,
        "actors": args.actors,
        "transitions_sent": sent,
        "transitions_accepted": accepted,
        "all_acknowledged": all_acked,
        "no_loss": all_acked and accepted == sent,
        "rss_growth_second_half_mb": growth,
        "rss_end_mb": {role: samples[-1][role] for role in procs if role in samples[-1]},
        "disk_max_mb": disk_max,
        "memory_bounded": all(v < args.rss_slack_mb for v in growth.values()),
        "run_dir": str(run_dir),
    }
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
