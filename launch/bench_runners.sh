#!/usr/bin/env bash
# The runner comparison of docs/benchmarks.md: the main job with each runner on the same seeds, ONE RUN AT A
# TIME on an otherwise idle machine (the comparison is of wall-clock), then the summary (steps and training
# minutes to the first 0.80, steps/s, updates/s, busy share) and each run's best.pt on 50 fresh episodes.
# The encoder and the demos are made first by the first run (pretraining reported in its log).
# SEEDS="1 2 3" RUNNERS="async inline" MINUTES=15 RUNS=outputs/runners bash launch/bench_runners.sh [train overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-outputs/runners}
mkdir -p "$RUNS"
for seed in ${SEEDS:-1 2 3}; do
  for runner in ${RUNNERS:-async inline}; do
    python3 -m robolearn.train runner="$runner" seed="$seed" time_limit_min="${MINUTES:-15}" progress=false \
      hydra.run.dir="$RUNS/${runner}_seed$seed" "$@" > "$RUNS/${runner}_seed$seed.log" 2>&1
  done
done
python3 -m robolearn.bench runs "$RUNS"/*_seed*/ | tee "$RUNS/summary.jsonl"
for dir in "$RUNS"/*_seed*/; do
  python3 -m robolearn.eval policy=checkpoint policy.path="$dir/best.pt" episodes=50 seed=500000000 progress=false \
    hydra.run.dir="$dir/reeval" > "$dir/reeval.log" 2>&1
  tail -n 1 "$dir/reeval.log"
done
