#!/usr/bin/env bash
# A trained checkpoint on the real-robot env (pre-flight first), N evaluation episodes, report + video.
#   CHECKPOINT=outputs/train/<run> launch/deploy.sh robot@env.hardware.driver=franka env.robot=fr3 env.hardware.driver.host=172.16.0.2
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m hardware.deploy checkpoint="${CHECKPOINT:?set CHECKPOINT to a run directory or checkpoint.pt}" \
    episodes="${EPISODES:-5}" video="${VIDEO:-true}" "$@"
