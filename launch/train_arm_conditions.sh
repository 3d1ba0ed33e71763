#!/usr/bin/env bash
# "Arm conditions" in sim (issue 25, docs/learner.md "Learning on the arm itself"): no network reads the privileged
# state (the critic reads the frozen encoder's estimate of it), the reward and the episodes' ends come from the
# success classifier on the encoder's features, and evaluation scores the simulator's success. Makes the encoder
# and the classifier when they are missing, then runs the seeds side by side as launch/train_pixels.sh does.
# SEEDS="1 2 3" RUNS=outputs/arm bash launch/train_arm_conditions.sh [train overrides, e.g. intervention.by=scripted]
# ENCODER=<file>, CLASSIFIER=<file>: use these; CLASSIFIER_EPISODES: sim episodes the classifier learns from (320).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-outputs/arm}
ENCODER=${ENCODER:-$(python3 -m robolearn.paths "$@" | sed -n 's/^encoder: //p')}
CLASSIFIER=${CLASSIFIER:-classifiers/$(basename "$ENCODER" .pt).success.pt}
mkdir -p "$RUNS" "$(dirname "$CLASSIFIER")"
if [ ! -f "$ENCODER" ]; then
  python3 -m robolearn.pretrain out="$ENCODER" progress=false > "$RUNS/pretrain.log" 2>&1
fi
if [ ! -f "$CLASSIFIER" ]; then  # exits 1 (and the script stops) when its held-out error rates are over the limits
  python3 -m robolearn.success_classifier encoder="$ENCODER" out="$CLASSIFIER" episodes="${CLASSIFIER_EPISODES:-320}" \
    progress=false hydra.run.dir="$RUNS/classifier" > "$RUNS/classifier.log" 2>&1
fi
ENCODER="$ENCODER" ENCODER_READY=1 RUNS="$RUNS" bash launch/train_pixels.sh \
  env.privileged=false agent.estimated_state=true "agent.critic_only_keys=[estimated_state]" \
  env.reward.source=classifier env.reward.classifier="$CLASSIFIER" env.terminate_on_success=false "$@"
