"""`learner` benchmark: the project's DrQ update against a plain PyTorch update of the same maths.

Shapes as published for DrQ-v2: batch 256, one 84x84 camera with 3 stacked frames (9 channels), the
DrQ-v2 encoder, a 50-wide trunk and 1024-wide heads, two critics. The baseline
(`robolearn.bench.reference_drqv2`) is written the plain way: NCHW float images, `grid_sample`
augmentation, separate critic networks, eager PyTorch. The project's update differs only in how it
computes: uint8 integer-index augmentation, channels-last convolutions, batched critic ensemble, and
`torch.compile` (its compile time is reported separately, not counted in the rate).

Both run in this one process under the same malloc settings (`--allocator`). With glibc's defaults every
large buffer is fresh pages from the kernel, and the plain update, which allocates more of them, pays
twice as much for page faults as it computes differently; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
from gymnasium import spaces

from robolearn.agents import AgentConfig, DrQAgent
from robolearn.agents.augment import draw_shifts
from robolearn.process.allocator import keep_freed_memory
from robolearn.bench.reference_drqv2 import ReferenceDrQv2
from robolearn.replay import Batch


def frozen_recipe(b: int, updates: int, rounds: int, rng: np.random.Generator, precision: str = "float32") -> dict[str, float]:
    """The default pixel recipe's costs, with an encoder of the pretrained one's shape (random weights);
    `precision` is agent.precision."""
    from robolearn.spec import PRIVILEGED_DIM

    cams = {k: [84, 84, 3] for k in ("front", "wrist")}
    meta = {"image_keys": list(cams), "proprio_keys": ["joint_pos", "gripper"], "target_key": "privileged",
            "inputs": {**cams, "joint_pos": [7], "gripper": [1]}, "target_dim": PRIVILEGED_DIM, "embed_dim": 64, "hidden_dim": 256}
    obs_space = spaces.Dict({**{k: spaces.Box(0, 255, tuple(v), np.uint8) for k, v in cams.items()},
                             "joint_pos": spaces.Box(-np.inf, np.inf, (7,), np.float32), "joint_vel": spaces.Box(-np.inf, np.inf, (7,), np.float32),
                             "gripper": spaces.Box(0, 1, (1,), np.float32), "privileged": spaces.Box(-np.inf, np.inf, (PRIVILEGED_DIM,), np.float32)})
    action_space = spaces.Box(-1, 1, (8,), np.float32)
    agent = DrQAgent(obs_space, action_space, AgentConfig(encoder="pretrained", critic_only_keys=["privileged"], precision=precision,
                                                          policy_average=0.001),  # as configs/agent/sac_pretrained.yaml
                     encoder_meta=meta)
    one = {k: (rng.integers(0, 256, s.shape, dtype=np.uint8) if s.dtype == np.uint8 else rng.normal(size=s.shape).astype(np.float32))
           for k, s in obs_space.spaces.items()}

    def features_batch():
        return {k: rng.normal(size=(b, *s.shape)).astype(np.float32) for k, s in agent.learning_space.spaces.items()}

    batch = Batch(features_batch(), rng.uniform(-1, 1, (b, 8)).astype(np.float32), rng.normal(size=b).astype(np.float32),
                  np.full(b, 0.99**3, np.float32), features_batch())
    agent.update(batch)
    update_s, feature_s = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(updates):
            agent.update(batch)
        update_s.append((time.perf_counter() - start) / updates)
        start = time.perf_counter()
        for _ in range(updates):
            agent.observe(one)
        feature_s.append((time.perf_counter() - start) / updates)
    return {"update_ms": 1000 * statistics.median(update_s), "features_ms_per_step": 1000 * statistics.median(feature_s)}


def run(quick: bool = False, argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m robolearn.bench learner")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--updates", type=int, default=2 if quick else 5, help="timed updates per round")
    parser.add_argument("--rounds", type=int, default=2 if quick else 3)
    parser.add_argument("--no-compile", action="store_true", help="measure the project's update without torch.compile")
    parser.add_argument("--layout", choices=("channels-last", "nchw"), default="channels-last",
                        help="the project's conv activation layout (agent.channels_last)")
    parser.add_argument("--allocator", choices=("keep-freed", "default"), default="keep-freed",
                        help="keep-freed: glibc keeps freed buffers, as the training job runs (robolearn/process/allocator.py); "
                             "default: glibc's defaults. Both updates run in this one process under the same setting")
    args = parser.parse_args(argv or [])
    if args.allocator == "keep-freed":
        keep_freed_memory()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    b, frames, size, action_dim = args.batch, 3, 84, 7 + 1
    obs_space = spaces.Dict({"front": spaces.Box(0, 255, (size, size, 3), np.uint8)})
    action_space = spaces.Box(-1, 1, (action_dim,), np.float32)

    def images():  # frame stacks as the replay returns them
        return {"front": rng.integers(0, 256, (b, frames, size, size, 3), dtype=np.uint8)}

    batch = Batch(images(), rng.uniform(-1, 1, (b, action_dim)).astype(np.float32),
                  rng.normal(size=b).astype(np.float32), np.full(b, 0.99**3, np.float32), images())
    agent = DrQAgent(obs_space, action_space, AgentConfig(hidden_dim=1024, frame_stack=frames, critic_layernorm=False,
                                                          compile=not args.no_compile, channels_last=args.layout == "channels-last"),
                     device=device)
    reference = ReferenceDrQv2(3 * frames, size, action_dim, hidden_dim=1024).to(device)

    def nchw(x):  # the published replay's layout: (B, K * C, H, W), frames oldest first
        x = torch.as_tensor(x, device=device)
        return x.permute(0, 1, 4, 2, 3).reshape(b, frames * 3, size, size).contiguous()

    if device == "cuda":
        # Both updates start from a batch already on the device (the plain one below is given device tensors):
        # timing a 33 MB host-to-device copy in ours only would measure the copy, not the update.
        def on_device(arrays: dict) -> dict:
            return {k: torch.as_tensor(v, device=device) for k, v in arrays.items()}

        batch = Batch(on_device(batch.obs), *(torch.as_tensor(a, device=device) for a in (batch.action, batch.reward, batch.discount)),
                      on_device(batch.next_obs))
    ref_inputs = (nchw(batch.obs["front"]), torch.as_tensor(batch.action, device=device), torch.as_tensor(batch.reward, device=device),
                  torch.as_tensor(batch.discount, device=device), nchw(batch.next_obs["front"]))

    def reference_update():
        noise = {"shift_obs": draw_shifts(b, 4, device=device), "shift_next": draw_shifts(b, 4, device=device)}
        return reference.update(*ref_inputs, noise)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    agent.update(batch)  # warm-up; with torch.compile this compiles (cached on disk across runs)
    agent.update(batch)
    sync()
    warmup_s = time.perf_counter() - start
    reference_update()
    print(f"warm-up done in {warmup_s:.1f} s (includes torch.compile)", flush=True)

    ours, ref = [], []
    for r in range(args.rounds):
        for fn, rates in ((lambda: agent.update(batch), ours), (reference_update, ref)):
            sync()
            start = time.perf_counter()
            for _ in range(args.updates):
                fn()
            sync()
            rates.append(args.updates / (time.perf_counter() - start))
        print(f"round {r + 1}/{args.rounds}: ours {ours[-1]:.3f} updates/s, reference {ref[-1]:.3f} updates/s", flush=True)
    rate, ref_rate = statistics.median(ours), statistics.median(ref)
    frozen = frozen_recipe(b, args.updates * 10, args.rounds, rng)
    frozen_bf16 = frozen_recipe(b, args.updates * 10, args.rounds, rng, precision="bfloat16")
    print(f"frozen-encoder recipe: update {frozen['update_ms']:.1f} ms ({frozen_bf16['update_ms']:.1f} ms with agent.precision=bfloat16), "
          f"features {frozen['features_ms_per_step']:.2f} ms per env step", flush=True)
    return {
        "benchmark": "learner",
        "updates_per_s": round(rate, 4),
        "reference_updates_per_s": round(ref_rate, 4),
        "speedup": round(rate / ref_rate, 3),
        "update_ms": round(1000 / rate, 1),
        "reference_update_ms": round(1000 / ref_rate, 1),
        # The main job's recipe (configs/agent/sac_pretrained.yaml): SAC on frozen features of both 84x84
        # cameras + joints, asymmetric critic; what it costs per update and per env step (the features).
        "frozen_recipe_update_ms": round(frozen["update_ms"], 2),
        "frozen_recipe_bf16_update_ms": round(frozen_bf16["update_ms"], 2),
        "frozen_recipe_features_ms_per_step": round(frozen["features_ms_per_step"], 2),
        "frozen_recipe_update_vs_reference": round((1000 / ref_rate) / frozen["update_ms"], 1),
        "batch": b,
        "image": f"{size}x{size}x{3 * frames}",
        "hidden_dim": 1024,
        "compile": not args.no_compile,
        "layout": args.layout,
        "allocator": args.allocator,
        "warmup_s": round(warmup_s, 1),
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu x{os.cpu_count()} ({platform.machine()})",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "quick": quick,
    }
