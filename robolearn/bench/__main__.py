"""Dispatch `python -m robolearn.bench NAME [options]` to the benchmark module of that name."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHMARKS = {
    "control": "hardware.bench",
    "sim": "sim.bench",
    "learner": "robolearn.bench.learner_bench",
    "replay": "robolearn.bench.replay_bench",
    "transport": "robolearn.bench.transport_bench",
    "transfer": "robolearn.bench.transfer_bench",
    "encoder": "robolearn.bench.encoder_bench",
    "runs": "robolearn.bench.runs_summary",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m robolearn.bench")
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark to run")
    parser.add_argument("--quick", action="store_true", help="short run (within 60 s on a 2-core CPU)")
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(BENCHMARKS[args.name])
    result = module.run(quick=args.quick, argv=rest)
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
