#!/usr/bin/env bash
# Pre-flight check before enabling motion on an arm; exit status 1 if any check failed.
#   launch/preflight.sh robot@env.hardware.driver=franka env.robot=fr3 env.hardware.driver.host=172.16.0.2
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m hardware.preflight "$@"
