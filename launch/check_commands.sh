#!/usr/bin/env bash
# Runs every command of the README's "Common commands" block with small budgets (a smoke check of the
# command lines as written, not of their results): bash launch/check_commands.sh [OUT_DIR]
# Each line's exit status is printed; the script exits 1 if any failed. Takes ~20 minutes on a 2-core CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/robolearn_commands}
mkdir -p "$OUT"
failed=0
run() {  # name, then the command
  local name=$1; shift
  local start=$SECONDS
  if "$@" > "$OUT/$name.log" 2>&1; then echo "ok   $name ($((SECONDS - start)) s)"; else echo "FAIL $name ($((SECONDS - start)) s): $OUT/$name.log"; failed=1; fi
}
TINY_TRAIN=(total_steps=60 seed_steps=30 demos.episodes=1 eval.episodes=1 eval.every=60 eval.first_min=null save_every=60 progress=false)
ENC="$OUT/encoder.pt"
run pretrain python3 -m robolearn.pretrain out="$ENC" episodes=2 epochs=1 progress=false env.episode_seconds=2
# launch/train_pixels.sh runs for hours (the full pretraining, three seeds): only its syntax here; its steps are
# the pretrain, train and eval command lines checked below.
run train_pixels_syntax bash -n launch/train_pixels.sh
run bench_runners_syntax bash -n launch/bench_runners.sh
run train_arm_conditions_syntax bash -n launch/train_arm_conditions.sh
run train_drq python3 -m robolearn.train --config-name train_drq "${TINY_TRAIN[@]}" demos.path=null hydra.run.dir="$OUT/drq"
run train_state python3 -m robolearn.train --config-name train_state "${TINY_TRAIN[@]}" demos.path=null hydra.run.dir="$OUT/state"
run resume python3 -m robolearn.train --config-name train_state "${TINY_TRAIN[@]}" demos.path=null total_steps=120 resume="$OUT/state" hydra.run.dir="$OUT/state"
run time_limit python3 -m robolearn.train --config-name train_state "${TINY_TRAIN[@]}" demos.path=null total_steps=100000 time_limit_min=0.5 hydra.run.dir="$OUT/limit"
run train_inline python3 -m robolearn.train --config-name train_state "${TINY_TRAIN[@]}" demos.path=null runner=inline hydra.run.dir="$OUT/inline"
run train_pixels python3 -m robolearn.train "${TINY_TRAIN[@]}" agent.encoder_weights="$ENC" demos.path=null env.episode_seconds=2 hydra.run.dir="$OUT/pixels"
run train_transfer python3 -m robolearn.train "${TINY_TRAIN[@]}" env=kettle_sink_transfer agent.encoder_features=estimate \
  agent.encoder_weights="$OUT/transfer_encoder.pt" demos.path=null env.episode_seconds=2 hydra.run.dir="$OUT/transfer" \
  "pretrain_overrides=['look_per_frame=true','episodes=2','epochs=1','warp_degrees=6','warp_translate=0.1','warp_scale=0.05']"
run train_estimated_state python3 -m robolearn.train "${TINY_TRAIN[@]}" agent.encoder_weights="$ENC" demos.path=null env.episode_seconds=2 \
  env.privileged=false agent.estimated_state=true "agent.critic_only_keys=[estimated_state]" hydra.run.dir="$OUT/estimated"
run train_interventions python3 -m robolearn.train "${TINY_TRAIN[@]}" agent.encoder_weights="$ENC" demos.path=null env.episode_seconds=2 \
  intervention.by=scripted intervention.stall_steps=5 hydra.run.dir="$OUT/interventions"
# A classifier from 4 episodes is over the error limits (exit 1 by design): the limits are lifted for the smoke check.
run success_classifier python3 -m robolearn.success_classifier encoder="$ENC" out="$OUT/success.pt" episodes=4 epochs=2 progress=false \
  env.episode_seconds=14 random_fraction=0 val_fraction=0.25 test_fraction=0.25 max_false_positive=1 max_false_negative=1 hydra.run.dir="$OUT/classifier"
run eval_checkpoint python3 -m robolearn.eval policy=checkpoint policy.path="$OUT/state" episodes=1 video=true video_path="$OUT/ckpt.mp4" env.cameras=[] env.privileged=true
run train_dmc python3 -m robolearn.train --config-name train_dmc env=dmc_walker_walk total_steps=60 seed_steps=30 eval.episodes=1 eval.every=60 save_every=60 progress=false hydra.run.dir="$OUT/dmc"
run eval_expert python3 -m robolearn.eval policy=expert episodes=2
run eval_torque python3 -m robolearn.eval policy=expert episodes=1 env.control_mode=joint_torque
run eval_video python3 -m robolearn.eval policy=expert episodes=1 video=true video_path="$OUT/expert.mp4"
run eval_shadows python3 -m robolearn.eval policy=random episodes=1 env.render.shadows=true
run view_config python3 -m robolearn.view --cfg job
run bench_transfer python3 -m robolearn.bench transfer policy.path="$OUT/drq" episodes=1 "rows=[as_trained,shadows]" workers=1
run bench_encoder python3 -m robolearn.bench encoder --quick "encoders=[$ENC]" env.episode_seconds=1
run contact_sheet python3 -m sim.contact_sheet out="$OUT/sheet.png" seeds=2
for bench in sim learner replay control transport; do run "bench_$bench" python3 -m robolearn.bench "$bench" --quick; done
run async_state timeout -s TERM 90 bash launch/async_sim.sh --config-name async_state actors=2 learner.total_updates=50 learner.min_transitions=200 run_dir="$OUT/async_state"
run train_two_actors python3 -m robolearn.train "${TINY_TRAIN[@]}" async_roles.actors=2 agent.encoder_weights="$ENC" demos.path=null env.episode_seconds=2 hydra.run.dir="$OUT/two_actors"
run actor_dry_run timeout -s TERM 120 bash launch/actor_dry_run.sh learner.total_updates=2 learner.min_transitions=50 run_dir="$OUT/dry_run"
run real_fake python3 -m robolearn.eval env=real_fake policy=zero episodes=1
run real_ur_simulated python3 -m robolearn.eval env=real_ur_simulated policy=zero episodes=1
run live_view python3 -m robolearn.eval policy=expert episodes=1 display.enabled=true display.save="$OUT/expert.rrd"

# The arm flows of docs/deploy.md and docs/remote.md on the dry-run arms (the fake arm, the simulated UR controller).
run preflight bash launch/preflight.sh env=real_fake checkpoint="$OUT/drq"
run deploy env CHECKPOINT="$OUT/drq" EPISODES=2 bash launch/deploy.sh env=real_fake output_dir="$OUT/deploy" preflight.run=false
run torque_dry_run python3 -m robolearn.eval env=real_ur_simulated env.control_mode=joint_torque env.hardware.driver.torque_control=true policy=random env.hardware.loop.clock=virtual episodes=5
run velocity_dry_run python3 -m robolearn.eval env=real_ur_simulated policy=random env.hardware.loop.clock=virtual episodes=5
run keys python3 -m robolearn.transport.keys "$OUT/keys"
# The learner box and the robot PC on one machine, with keys: the box in the background, the actor until its
# steps are done (it applies the box's weights on the way), then the box is stopped.
remote_box() {
  ( export BIND=127.0.0.1 KEYS="$OUT/keys" RUN_DIR="$OUT/remote_box"
    exec timeout -s TERM 240 bash launch/learner_box.sh learner.total_updates=null learner.min_transitions=30 learner.publish_every=5 \
      learner.batch_size=32 torch_threads=1 ) > "$OUT/learner_box.log" 2>&1 &
  echo $!
}
box=$(remote_box)
run robot_actor env BOX=127.0.0.1 KEYS="$OUT/keys" RUN_DIR="$OUT/robot_actor" timeout -s TERM 200 bash launch/robot_actor.sh \
  actor.total_steps=300 actor.seed_steps=40 actor.log_every_episodes=1 </dev/null
kill -TERM "$box" 2>/dev/null; wait "$box" 2>/dev/null
run robot_actor_got_weights grep -q "policy v[0-9]" "$OUT/robot_actor.log"
run key_revoke python3 -m robolearn.transport.keys "$OUT/keys" --revoke actor
exit $failed
