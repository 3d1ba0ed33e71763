#!/usr/bin/env bash
# What a session with a lent GPU machine runs there, in one call (its device time is short): the learner
# benchmark on the GPU, then pixel DrQ on kettle-to-sink, three seeds side by side, under a time budget.
# That machine has torch but none of our other dependencies and no network; the session carries
#   .whl/       cp312 wheels: mujoco, pyzmq, dm-tree, dm-env, gymnasium, hydra-core, omegaconf, antlr4, pyopengl, glfw
#   .gpu_site/  dm_control with only what `mjcf` needs (its wheel is 56 MB, over the call's size limit)
#   .gl/        Debian's libEGL/libOpenGL (glvnd) packages for MuJoCo's EGL rendering on the NVIDIA driver
# (`bash launch/device_prepare.sh` builds all three here.) Results (logs, eval.csv, tensorboard) come back
# as $OUT/results.tgz.
#   TRAIN_MIN=4.5 bash launch/device_pixel_run.sh
set -u
TRAIN_MIN=${TRAIN_MIN:-4.5}
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT" /tmp/runs
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

source launch/device_setup.sh
stamp "installed"

# Demos (20 scripted-expert episodes, rendered through EGL) beside the learner benchmark on the GPU.
python3 -m robolearn.train total_steps=0 eval.final=false progress=false hydra.run.dir=/tmp/runs/demos >/tmp/runs/demos.log 2>&1 &
demos=$!
timeout 110 python3 -m robolearn.bench learner --updates 20 --rounds 3 2>&1 | grep -v Warning | tee /tmp/runs/bench_learner.log
stamp "learner bench done"
wait $demos || { stamp "demo collection failed"; tail -40 /tmp/runs/demos.log; exit 1; }
grep -h "collected\|loaded" /tmp/runs/demos.log
compile=true
grep -q '"updates_per_s"' /tmp/runs/bench_learner.log || compile=false  # a compile failure must not cost the run
stamp "training 3 seeds for ${TRAIN_MIN} min (agent.compile=$compile)"

for seed in 1 2 3; do
  timeout $(python3 -c "print(int(60 * $TRAIN_MIN + 100))") python3 -m robolearn.train seed=$seed torch_threads=4 \
    total_steps=100000 time_limit_min="$TRAIN_MIN" eval.every=4000 eval.episodes=20 eval.video=false \
    save_every=1000000 progress=false agent.compile=$compile hydra.run.dir=/tmp/runs/pixel_gpu_seed$seed \
    >/tmp/runs/pixel_gpu_seed$seed.out 2>&1 &
done
sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv | tee -a "$OUT/gpu.txt"
wait
stamp "training done"
for seed in 1 2 3; do
  echo "seed $seed:"; cat /tmp/runs/pixel_gpu_seed$seed/eval.csv 2>/dev/null || tail -20 /tmp/runs/pixel_gpu_seed$seed.out
  grep -h "time limit" /tmp/runs/pixel_gpu_seed$seed.out
done
rm -f /tmp/runs/*/checkpoint.pt /tmp/runs/*/replay.npz
tar czf "$OUT/results.tgz" -C /tmp runs
stamp "packed"
