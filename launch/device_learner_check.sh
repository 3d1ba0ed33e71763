#!/usr/bin/env bash
# On a lent GPU machine (carry as for launch/device_pixel_run.sh): the learner benchmark in four variants
# (torch.compile on/off x channels-last/NCHW convs), then the main job's env steps/s, one seed alone,
# with each conv layout (no demos, no eval: a throughput check, not a learning run).
set -u
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT" /tmp/runs
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }
source launch/device_setup.sh
for layout in channels-last nchw; do
  for compile in "" --no-compile; do
    timeout 90 python3 -m robolearn.bench learner --updates 20 --rounds 3 --layout $layout $compile 2>&1 | tail -1 | tee -a "$OUT/bench_learner.jsonl"
  done
done
stamp "benchmarks done"
for layout in true false; do
  timeout 150 python3 -m robolearn.train seed=1 torch_threads=4 total_steps=100000 time_limit_min=1.25 demos.episodes=0 \
    eval.every=1000000 eval.final=false save_every=1000000 progress=false agent.compile=true agent.channels_last=$layout \
    hydra.run.dir=/tmp/runs/throughput_cl_$layout >/tmp/runs/throughput_cl_$layout.out 2>&1
  python3 - "$layout" <<'PY'
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(f"/tmp/runs/throughput_cl_{sys.argv[1]}/tb"); ea.Reload()
rates = [round(e.value, 1) for e in ea.Scalars("episode/steps_per_s")]
print(f"channels_last={sys.argv[1]}: env steps/s per episode {rates}")
PY
  stamp "throughput channels_last=$layout done"
done | tee "$OUT/throughput.txt"
rm -f /tmp/runs/*/checkpoint.pt /tmp/runs/*/replay.npz
tar czf "$OUT/results.tgz" -C /tmp runs
