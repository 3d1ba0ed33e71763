#!/usr/bin/env bash
# The scripted expert in the kettle-to-sink sim: success over seeded episodes, and an mp4 of the first.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m robolearn.eval policy=expert episodes="${EPISODES:-10}" video=true video_path="${VIDEO:-videos/expert.mp4}" "$@"
