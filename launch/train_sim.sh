#!/usr/bin/env bash
# SAC/DrQ from pixels in the kettle-to-sink sim (GPU when present). Extra args are Hydra overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m robolearn.train "$@"
