"""`python -m hardware.deploy.latency`: a policy's time per control step on this machine, alone and beside
CPU-heavy processes, with one torch thread and with torch's default, cold (the first calls) and warmed up.

    python -m hardware.deploy.latency --checkpoint outputs/train/<run>        # a trained policy
    python -m hardware.deploy.latency --encoder encoders/kettle_sink.pt       # the main job's policy, randomly initialised
    python -m hardware.deploy.latency --recipe train_drq                      # DrQ (its encoder trained by the critic)

A randomly initialised agent of the main job's recipe (configs/agent/sac_pretrained.yaml: the frozen
pretrained encoder, then the actor) costs what the trained one does. Each setting runs in a fresh process
(the first calls are the cold ones); `--busy N` starts N `while True: pass` processes beside it and stops
them afterwards. Prints one line per setting, then the table as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

BUSY = "while True: pass"


def build_policy(checkpoint: str | None, encoder: str | None, recipe: str = "train"):
    from hydra import compose, initialize_config_dir

    import robolearn.train  # noqa: F401 - registers train_schema, which configs/train.yaml starts from
    from robolearn.agents.drq import AgentConfig, DrQAgent
    from robolearn.agents.policy import AgentPolicy, load_checkpoint_policy
    from robolearn.config import load_typed
    from robolearn.paths import CONFIG_DIR
    from robolearn.spec import EnvSpec

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=recipe, overrides=[] if encoder is None or recipe != "train" else [f"agent.encoder_weights={encoder}"])
    contract = EnvSpec.from_config(cfg.env)
    spaces = (contract.observation_space(), contract.action_space())
    if checkpoint:
        return load_checkpoint_policy(None, checkpoint, spaces=spaces), contract
    agent = DrQAgent(*spaces, load_typed(AgentConfig, cfg.agent, "agent"), device="cpu")
    agent.eval()
    return AgentPolicy(agent, deterministic=True), contract


def measure_one(args) -> dict:
    import torch

    from robolearn.agents.policy import set_acting_threads

    threads = set_acting_threads(args.threads) if args.threads else torch.get_num_threads()
    policy, contract = build_policy(args.checkpoint, args.encoder, args.recipe)
    rng = np.random.default_rng(0)
    space = contract.observation_space()

    def observation():
        return {k: (rng.integers(0, 256, s.shape, dtype=np.uint8) if s.dtype == np.uint8 else rng.standard_normal(s.shape).astype(s.dtype))
                for k, s in space.spaces.items()}

    policy.reset()
    times = []
    for _ in range(args.calls):
        obs = observation()
        start = time.perf_counter()
        policy.act(obs)
        times.append((time.perf_counter() - start) * 1000.0)
    cold, warm = np.asarray(times[:3]), np.asarray(times[3:])
    period_ms = 1000.0 / contract.control_hz
    return {"threads": threads, "first_calls_ms": [round(float(t), 1) for t in cold], "p50_ms": round(float(np.percentile(warm, 50)), 2),
            "p99_ms": round(float(np.percentile(warm, 99)), 2), "max_ms": round(float(warm.max()), 2), "calls": int(len(warm)),
            "period_ms": period_ms, "over_half_period": int(np.sum(warm > period_ms / 2))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hardware.deploy.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a run directory or checkpoint.pt (default: the main job's recipe, randomly initialised)")
    parser.add_argument("--encoder", help="the frozen encoder file the recipe reads (default: configs' agent.encoder_weights)")
    parser.add_argument("--recipe", default="train", help="the training config whose agent is built: train (the main job), train_drq, ...")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0], help="torch threads to compare (0: torch's default)")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="CPU-heavy processes beside it, per setting")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        args.threads = args.threads[0]
        print(json.dumps(measure_one(args)), flush=True)
        return
    rows = []
    for busy in args.busy:
        hogs = [subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True) for _ in range(busy)]
        try:
            time.sleep(0.5 if hogs else 0.0)
            for threads in args.threads:
                cmd = [sys.executable, "-m", "hardware.deploy.latency", "--one", "--threads", str(threads), "--calls", str(args.calls)]
                cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
                cmd += ["--encoder", args.encoder] if args.encoder else []
                cmd += ["--recipe", args.recipe]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                row = {"recipe": args.recipe, "busy_processes": busy, "threads_asked": threads, "load_1min": round(os.getloadavg()[0], 2), **json.loads(out)}
                rows.append(row)
                print(f"busy={busy} threads={row['threads']}{' (default)' if threads == 0 else ''}: first calls {row['first_calls_ms']} ms, "
                      f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, max {row['max_ms']} ms of {row['period_ms']:.0f} ms", flush=True)
        finally:
            for hog in hogs:
                os.kill(hog.pid, signal.SIGTERM)
                hog.wait()
    print(json.dumps({"cpus": os.cpu_count(), "rows": rows}))


if __name__ == "__main__":
    main()
