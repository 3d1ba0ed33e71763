"""`replay` benchmark: stored bytes per transition and batch sampling latency.

Fills a store with two-camera 84x84 transitions in episodes of the kettle task's typical length, then
samples batches of 256 with 3 stacked frames and 3-step returns (the learner's default shapes).
The baseline for bytes is one observation's image bytes: what any store must keep per step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from gymnasium import spaces

from robolearn.replay import ReplayStorage
from robolearn.spec import EnvSpec


def run(quick: bool = False, argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m robolearn.bench replay")
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--episode-length", type=int, default=100)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--samples", type=int, default=20 if quick else 100)
    args = parser.parse_args(argv or [])

    spec = EnvSpec.from_config({})  # the default kettle-to-sink contract: front + wrist 84x84
    obs_space: spaces.Dict = spec.observation_space()
    episodes = -(-args.transitions // args.episode_length)
    capacity = episodes * (args.episode_length + 1)
    store = ReplayStorage(obs_space, (spec.action_dim,), capacity)
    rng = np.random.default_rng(0)
    # A pool of distinct observations reused while filling: the copy cost is real, generation is not.
    pool = [{k: rng.integers(0, 256, s.shape, dtype=np.uint8) if s.dtype == np.uint8 else rng.normal(size=s.shape).astype(np.float32)
             for k, s in obs_space.spaces.items()} for _ in range(64)]
    start = time.perf_counter()
    for e in range(episodes):
        store.start_episode(pool[e % 64])
        for t in range(args.episode_length):
            last = t == args.episode_length - 1
            store.add(rng.uniform(-1, 1, spec.action_dim), -1.0, False, last, pool[(e + t + 1) % 64])
        if e % 200 == 0:
            print(f"filled {store.num_transitions()} transitions", flush=True)
    fill_s = time.perf_counter() - start

    timings = []
    for _ in range(args.samples):
        t0 = time.perf_counter()
        store.sample(args.batch, rng, n_step=3, gamma=0.99, frame_stack=3)
        timings.append(1000 * (time.perf_counter() - t0))
    obs_image_bytes = sum(int(np.prod(obs_space[k].shape)) for k in store.image_keys)
    bytes_per_transition = store.bytes_per_transition()
    return {
        "benchmark": "replay",
        "transitions": store.num_transitions(),
        "bytes_per_transition": round(bytes_per_transition, 1),
        "obs_image_bytes": obs_image_bytes,
        "bytes_ratio": round(bytes_per_transition / obs_image_bytes, 4),
        "sample_ms_b256": round(statistics.median(timings), 2),
        "sample_ms_b256_p90": round(float(np.percentile(timings, 90)), 2),
        "frame_stack": 3,
        "n_step": 3,
        "cameras": list(store.image_keys),
        "fill_s": round(fill_s, 1),
        "store_gib": round(store.bytes_per_row() * len(store) / 2**30, 2),
        "quick": quick,
    }
