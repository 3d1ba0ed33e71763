"""The asynchronous roles, each its own process reading one config (config.py, AsyncConfig):

    python -m robolearn.roles.replay_server   the replay service (robolearn.transport.server) over the durable store
    python -m robolearn.roles.learner         batches in, updates, weights out, checkpoints
    python -m robolearn.roles.actor           episodes in any env of the contract (sim or an arm), steps out
    python -m robolearn.roles.evaluator       the learner's snapshots evaluated: eval.csv, videos, best.pt

group.py starts, watches and stops them as processes (the main job's async runner, launch.py, the soak);
launch.py starts all of them on one machine from a hand-written config (configs/async_*.yaml).
"""
