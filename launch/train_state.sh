#!/usr/bin/env bash
# State-only SAC with expert demos, several seeds side by side on a CPU (one torch thread each).
# SEEDS="1 2 3" bash launch/train_state.sh [overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p outputs
pids=()
for seed in ${SEEDS:-1 2 3}; do
  python3 -m robolearn.train --config-name train_state seed="$seed" torch_threads=1 progress=false \
    hydra.run.dir="outputs/state/seed$seed" "$@" > "outputs/state_seed$seed.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
python3 -m robolearn.plots outputs/state/seed* --out outputs/state/success.svg --title "state-only SAC + 20 demos"
