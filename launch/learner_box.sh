#!/usr/bin/env bash
# The GPU box of a remote run: the replay server and the learner, reachable from the robot PC with CURVE keys.
#   python3 -m robolearn.transport.keys keys/          # once; copy keys/actor.key_secret + keys/server.key to the robot PC
#   BIND=0.0.0.0 RUN_DIR=runs/robot1 bash launch/learner_box.sh [overrides shared with the actor]
#   INIT_FROM=outputs/train/<run>/best.pt BIND=0.0.0.0 RUN_DIR=runs/robot1 bash launch/learner_box.sh [env overrides]
# INIT_FROM: fine-tune a trained checkpoint (the actor: python -m hardware.deploy mode=online checkpoint=<the same>).
# The agent config (encoder, actor_only_keys/critic_only_keys, sizes) comes from the checkpoint, not from this
# command; `agent.<key>=...` overrides one key. The checkpoint carries its frozen encoder: no encoder file needed.
# Ports 5555 (requests) and 5556 (weights) must be open to the robot PC. See docs/remote.md.
# The real-arm config, as launch/robot_actor.sh uses (no sim demos; pass server.demos=<recorded demos> to mix some in).
# With learner.min_transitions=1000 at the arm's ~8-10 env steps/s, the first update comes ~2 minutes in.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-runs/remote_$(date +%Y-%m-%d_%H-%M-%S)}
init=()
if [[ -n "${INIT_FROM:-}" ]]; then
  # The server stores what the checkpoint's actors send (its encoder's features): the same agent encoder.
  server_agent=$(python3 -m robolearn.checkpoint server-overrides "$INIT_FROM")
  mapfile -t init <<< "$server_agent"
  init+=("learner.init_from=$INIT_FROM")
fi
common=(--config-name "${CONFIG:-async_real_fake}" transport=remote "transport.host=${BIND:-0.0.0.0}" "transport.curve_keys=${KEYS:-keys}" "run_dir=$RUN_DIR" "${init[@]}" "$@")
mkdir -p "$RUN_DIR"
# Its log is the redirected stdout alone (Hydra's own file handler would write each line into the same file again).
python3 -m robolearn.roles.replay_server "${common[@]}" hydra/job_logging=stdout > "$RUN_DIR/replay_server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server' EXIT
python3 -m robolearn.roles.learner "${common[@]}" transport.client_key=learner
