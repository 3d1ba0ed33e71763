#!/usr/bin/env bash
# Dry run of asynchronous training on the hardware path: replay server + learner + one actor on the
# real-robot env with the fake driver and fake cameras (safety layer, deadline loop, safe hold), loopback only.
#   bash launch/actor_dry_run.sh [learner.total_updates=2000 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m robolearn.roles.launch --config-name async_real_fake actors=1 "$@"
