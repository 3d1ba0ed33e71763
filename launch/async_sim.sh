#!/usr/bin/env bash
# All-in-one asynchronous training from a hand-written role config (configs/async_*.yaml) on one machine:
# replay server, learner and N sim actors, each its own process, on loopback. Logs and data in the run
# directory (outputs/async/<time>/). The main job's recipe with N actors: python -m robolearn.train async_roles.actors=N
#   bash launch/async_sim.sh actors=4                                  # pixels
#   bash launch/async_sim.sh --config-name async_state actors=2        # state only, quick on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m robolearn.roles.launch "$@"
