#!/usr/bin/env bash
# A trained checkpoint on the real-robot env (pre-flight first), N evaluation episodes, report.json.
#   CHECKPOINT=outputs/train/<run> launch/deploy.sh robot@env.hardware.driver=franka env.robot=fr3 env.hardware.driver.host=172.16.0.2
# The defaults are the command's (hardware.deploy.command.DeployConfig: episodes=5, video=false); this
# launcher changes nothing unless EPISODES=N or VIDEO=true is set, and passes every other argument on.
# Exit status: 0 done, 1 pre-flight failed, 2 refused (config, checkpoint, a policy too slow), 3 a latched
# safety fault, 4 stopped early (docs/deploy.md, "How a run ends").
set -euo pipefail
cd "$(dirname "$0")/.."
args=(checkpoint="${CHECKPOINT:?set CHECKPOINT to a run directory or checkpoint.pt}")
if [[ -n "${EPISODES:-}" ]]; then args+=(episodes="$EPISODES"); fi
if [[ -n "${VIDEO:-}" ]]; then args+=(video="$VIDEO"); fi
exec python3 -m hardware.deploy "${args[@]}" "$@"
