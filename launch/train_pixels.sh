#!/usr/bin/env bash
# The pixel recipe (the main job's default) for several seeds side by side on a CPU, as in docs/benchmarks.md:
# one shared pretraining of the frozen encoder, the demos once, then the seeds (one torch thread each), the
# plot, and each run's best checkpoint evaluated again on 50 fresh seeds.
# SEEDS="1 2 3" RUNS=outputs/pixels bash launch/train_pixels.sh [train overrides]
# PRETRAIN="look_per_frame=true": extra pretraining overrides (the transfer recipe, docs/benchmarks.md "Seventeenth session")
# ENCODER_READY=1: use $ENCODER as it is (made already, e.g. by launch/train_arm_conditions.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-outputs/pixels}
# The encoder the runs would make for their robot and cameras (named by them; robolearn/paths.py).
ENCODER=${ENCODER:-$(python3 -m robolearn.paths "$@" | sed -n 's/^encoder: //p')}
mkdir -p "$RUNS"
PRETRAIN_ENV=()  # the env overrides among the train overrides: the encoder is made for that env
DEMO_ARGS=()  # and the demos and agent overrides (demos.episodes=100): the demos step makes the file the seeds read
for arg in "$@"; do
  if [[ "$arg" == env.* || "$arg" == env=* ]]; then PRETRAIN_ENV+=("$arg"); fi
  if [[ "$arg" == demos.* || "$arg" == agent.* ]]; then DEMO_ARGS+=("$arg"); fi
done
read -r -a PRETRAIN_EXTRA <<< "${PRETRAIN:-}"
if [ -z "${ENCODER_READY:-}" ]; then
  python3 -m robolearn.pretrain out="$ENCODER" progress=false "${PRETRAIN_ENV[@]}" "${PRETRAIN_EXTRA[@]}" > "$RUNS/pretrain.log" 2>&1
fi
# The demos are cached on first use: collect them once, not in three runs at the same time.
python3 -m robolearn.train total_steps=0 eval.final=false agent.encoder_weights="$ENCODER" progress=false \
  hydra.run.dir="$RUNS/demos" "${PRETRAIN_ENV[@]}" "${DEMO_ARGS[@]}" > "$RUNS/demos.log" 2>&1
pids=()
for seed in ${SEEDS:-1 2 3}; do
  python3 -m robolearn.train seed="$seed" agent.encoder_weights="$ENCODER" eval.video=false progress=false \
    hydra.run.dir="$RUNS/seed$seed" "$@" > "$RUNS/seed$seed.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
python3 -m robolearn.plots "$RUNS"/seed*/ --out "$RUNS/success.svg" --title "pixels: frozen pretrained encoder + asymmetric critic"
# The re-evaluations run side by side (one torch thread each); REEVAL="best.pt checkpoint.pt" for both.
for seed in ${SEEDS:-1 2 3}; do
  for which in ${REEVAL:-best.pt}; do
    OMP_NUM_THREADS=1 python3 -m robolearn.eval policy=checkpoint policy.path="$RUNS/seed$seed/$which" episodes=50 seed=500000000 \
      progress=false hydra.run.dir="$RUNS/eval_seed${seed}_${which%.pt}" \
      > "$RUNS/eval_seed${seed}_${which%.pt}.log" 2>&1 &
  done
done
wait
for seed in ${SEEDS:-1 2 3}; do
  for which in ${REEVAL:-best.pt}; do
    echo "seed $seed $which: $(tail -n 1 "$RUNS/eval_seed${seed}_${which%.pt}.log")"
  done
done | tee "$RUNS/reeval.txt"
