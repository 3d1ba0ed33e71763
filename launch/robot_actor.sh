#!/usr/bin/env bash
# The robot PC of a remote run: one actor on the real-robot env, streaming to the learner box.
#   BOX=10.0.0.5 bash launch/robot_actor.sh env=real_fake robot@env.hardware.driver=franka env.hardware.driver.host=172.16.0.2 ...
# Losing the learner or the box stops and holds the arm through the safety layer (actor.on_learner_loss=hold).
# A latched safety fault holds the arm and asks at this terminal to clear it after checking the arm (Enter;
# q stops); without a terminal it holds for actor.fault_wait_s (600 s) and exits 3. The actor's name (from
# this host and the arm) and its spill folder ($RUN_DIR/spill/<name>) are the same on every start: a restart
# sends what the last one left unacknowledged. Run it in the foreground (a terminal it can ask).
# Run python -m hardware.preflight with the same env overrides first. See docs/remote.md and docs/deploy.md.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BOX:?set BOX to the learner box address}"
exec python3 -m robolearn.roles.actor --config-name async_real_fake transport=remote "transport.host=$BOX" \
  "transport.curve_keys=${KEYS:-keys}" transport.client_key=actor "run_dir=${RUN_DIR:-runs/robot_actor}" "$@"
