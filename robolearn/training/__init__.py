"""One training recipe, two ways to run it (issue 28).

The pieces a run is made of live here once: its config (`config.py`), what it needs before it starts
(encoder, demos: `prerequisites.py`), the checkpoint payload (`payload.py`), evaluation with eval.csv, videos
and best.pt (`evaluation.py`). Two runners use them: `inline.py` (one process, bit-exact resume) and
`async_runner.py` (replay server, learner, actors and an evaluator as processes over ZeroMQ).
"""
