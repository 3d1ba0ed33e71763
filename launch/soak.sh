#!/usr/bin/env bash
# 10-minute soak: 4 sim actors, a learner and the replay server; checks no loss and bounded memory.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m robolearn.transport.soak --minutes "${MINUTES:-10}" --actors "${ACTORS:-4}" "$@"
