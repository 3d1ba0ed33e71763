"""`encoder` benchmark: how precisely pretrained encoders read the state under the transfer benchmark's rows.

    python -m robolearn.bench encoder encoders=[encoders/a.pt,encoders/b.pt] [episodes=10] [rows=[as_trained,camera_5cm_6deg]]

A policy on the frozen encoder can only be as robust as the positions the encoder reads: a row where the
encoder's error grows is a row the policy fails on whatever it learned (docs/benchmarks.md, "Twentieth session").
Each row (configs/bench/transfer.yaml, applied to `env`: the schema's default, the transfer randomisation, with
any `env.*` keys on top) gets `episodes` episodes of the pretraining's own mixture (the scripted expert with noise
and detours, random-action episodes), collected once and read by every encoder. Reported per encoder and row: the
kettle and handle position errors (median and p90, cm) and their ratio to the `as_trained` row; near the gripper
(grasping, carrying) and on the frames with the kettle up (more than 3 cm above its resting height) the kettle's
median error and bias, also as placed from the gripper for `from_tcp` encoders.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

from robolearn.bench.transfer_bench import ROWS_FILE, chosen_rows, load_rows, row_env_config
from robolearn.config import ConfigError, EnvConfig, check, load_env_config, load_typed

# Episode i of row k resets with SEED_BASE + k * ROW_SEED_STRIDE + i: above the transfer benchmark's block
# (3e9 + k * 1e5) and every other stream, below 2**32.
SEED_BASE = 3_500_000_000
ROW_SEED_STRIDE = 100_000
QUICK_EPISODES = 1
QUICK_ROWS = ["as_trained", "camera_5cm_6deg"]


@dataclass
class EncoderBenchConfig:
    encoders: list[str] = field(default_factory=list)  # encoder files (python -m robolearn.pretrain) or checkpoints carrying one
    episodes: int = 10  # per row
    rows: Optional[list[str]] = None  # a subset by name; null: every row
    env: dict[str, Any] = field(default_factory=dict)  # env keys on top of the schema's default (the transfer randomisation)
    rows_file: str = ROWS_FILE
    batch_size: int = 256

    def __post_init__(self) -> None:
        check(bool(self.encoders), "encoders", self.encoders, "give at least one encoder file: encoders=[a.pt,b.pt]")
        check(1 <= self.episodes <= ROW_SEED_STRIDE, "episodes", self.episodes, f"in [1, {ROW_SEED_STRIDE}]")


def parse(argv: list[str], quick: bool) -> EncoderBenchConfig:
    try:
        node = OmegaConf.from_dotlist(argv)
    except Exception as exc:  # omegaconf's parse errors name the argument
        raise ConfigError(f"encoder bench arguments: {exc}") from None
    if quick:
        node.setdefault("episodes", QUICK_EPISODES)
        node.setdefault("rows", QUICK_ROWS)
    return load_typed(EncoderBenchConfig, node, "encoder bench")


def read_encoder(path: str):
    """The regression network and its meta, from an encoder file or a checkpoint that carries one."""
    from robolearn.agents.pretrained import EncoderFileError, build_encoder

    if not Path(path).is_file():
        raise EncoderFileError(f"encoders: {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(payload, dict) and payload.get("encoder_meta"):  # a training checkpoint of the pixel recipe
        prefix = "frozen_encoder."
        model = payload["agent"]["model"]
        payload = {"meta": payload["encoder_meta"], "state_dict": {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}}
    if not isinstance(payload, dict) or "meta" not in payload or "state_dict" not in payload:
        raise EncoderFileError(f"encoders: {path} is not a robolearn pretrained encoder")
    net = build_encoder(payload["meta"])
    net.load_state_dict(payload["state_dict"])
    return net.eval(), payload["meta"]


NEAR_GRIPPER_M = 0.05  # frames with the handle this close to the gripper: grasping and carrying
LIFTED_M = 0.03  # the sim's own threshold for a lifted kettle (sim/kettle_sink_env.py), not imported: core stays sim-free


@torch.no_grad()
def encoder_errors(net, meta: dict, data: dict[str, np.ndarray], batch_size: int) -> dict[str, float]:
    """The errors over every frame, and over the frames near the gripper (the handle within NEAR_GRIPPER_M of it,
    where a grasp and a placement need their precision): the kettle's median error and its bias (the length of
    the mean error vector: what a moved camera adds), for the base-frame estimate and, where the encoder regresses
    `from_tcp`, for the kettle placed from the gripper (agent.encoder_features=estimate_tcp)."""
    from robolearn.agents.pretrained import proprio_tensor
    from robolearn.pretrain import position_errors_cm, regression_targets, target_group_start
    from robolearn.robots import ROBOTS

    groups = meta.get("targets", ["privileged"])
    robot = ROBOTS[meta["robot"]]
    target = regression_targets(data, groups, robot)
    preds = []
    for start in range(0, len(target), batch_size):
        rows = slice(start, start + batch_size)
        images = {k: torch.as_tensor(data[k][rows]) for k in meta["image_keys"]}
        proprio = proprio_tensor({k: data[k][rows] for k in meta["proprio_keys"]}, meta["proprio_keys"], "cpu")
        preds.append(net.predict_state(images, proprio).numpy())
    pred = np.concatenate(preds)
    out = position_errors_cm(pred, target, groups)
    tcp = robot.tcp_positions(np.asarray(data["joint_pos"], dtype=np.float64))
    # The kettle up (LIFTED_M above where it stood at its episode's first frame): where moved cameras misread it.
    episodes = np.asarray(data["episode"])
    _, first = np.unique(episodes, return_index=True)
    resting_z = dict(zip(episodes[first].tolist(), target[first, 2].tolist()))
    lifted = target[:, 2] > np.array([resting_z[e] for e in episodes.tolist()]) + LIFTED_M
    subsets = {"near": np.linalg.norm(target[:, 7:10] - tcp, axis=1) < NEAR_GRIPPER_M, "lifted": lifted}
    out["near_gripper_frames"], out["lifted_frames"] = int(subsets["near"].sum()), int(subsets["lifted"].sum())
    start = target_group_start(groups, "from_tcp")
    for subset, mask in subsets.items():
        readings = {f"kettle_{subset}": pred[:, 0:3]}
        if start is not None:
            readings[f"kettle_{subset}_from_tcp"] = tcp + pred[:, start : start + 3]
        for name, kettle in readings.items():
            if mask.any():
                err = kettle[mask] - target[mask, 0:3]
                out[f"{name}_median_cm"] = float(100 * np.median(np.linalg.norm(err, axis=1)))
                out[f"{name}_bias_cm"] = float(100 * np.linalg.norm(err.mean(0)))
    return {k: round(float(v), 3) for k, v in out.items()}


def collect_row(env_cfg: dict, episodes: int, seed_base: int, workdir: Path) -> dict[str, np.ndarray]:
    from robolearn.envs import make_env
    from robolearn.pretrain import PretrainConfig, collect

    cfg = PretrainConfig(env=env_cfg, episodes=episodes, progress=False, save_every_episodes=episodes)
    workdir.mkdir(parents=True, exist_ok=True)
    env = make_env({**env_cfg, "privileged": True})
    try:
        return collect(cfg, env, workdir / "frames.npz", env_seed_base=seed_base)
    finally:
        env.close()


def run(quick: bool = False, argv: list[str] | None = None) -> dict:
    from robolearn.checkpoint import env_record

    cfg = parse(argv or [], quick)
    rows = load_rows(cfg.rows_file)
    chosen = chosen_rows(rows, cfg.rows)
    if "as_trained" not in chosen:
        chosen = ["as_trained", *chosen]  # the ratios' reference
    nets = {path: read_encoder(path) for path in cfg.encoders}  # unreadable files fail before any collection
    base = env_record(load_env_config(OmegaConf.merge(OmegaConf.structured(EnvConfig), cfg.env)))
    order = list(rows)
    start, errors, frames = time.perf_counter(), {path: {} for path in cfg.encoders}, {}
    for name in chosen:
        with tempfile.TemporaryDirectory() as workdir:
            data = collect_row(row_env_config(base, rows[name]), cfg.episodes,
                               SEED_BASE + order.index(name) * ROW_SEED_STRIDE, Path(workdir))
        frames[name] = int(len(data["episode"]))
        for path, (net, meta) in nets.items():
            errors[path][name] = encoder_errors(net, meta, data, cfg.batch_size)
            e = errors[path][name]
            subsets = "; ".join(
                f"{label} ({e[count]} frames): " + ", ".join(f"{k} {e[k + '_median_cm']:.2f} (bias {e[k + '_bias_cm']:.2f})"
                                                              for k in (key, key + "_from_tcp") if k + "_median_cm" in e)
                for label, count, key in (("near the gripper", "near_gripper_frames", "kettle_near"),
                                          ("kettle up", "lifted_frames", "kettle_lifted")))
            print(f"row {name} ({frames[name]} frames), {path}: kettle {e['kettle_median_cm']:.2f} / "
                  f"{e['kettle_p90_cm']:.2f} cm, handle {e['handle_median_cm']:.2f} / {e['handle_p90_cm']:.2f} cm "
                  f"(median / p90); {subsets} cm ({time.perf_counter() - start:.0f} s)", flush=True)
    ratios = {path: {name: {key: round(value / max(by_row["as_trained"][key], 1e-9), 2) for key, value in e.items()
                            if key.endswith("_cm") and key in by_row["as_trained"]}
                     for name, e in by_row.items()} for path, by_row in errors.items()}
    return {"benchmark": "encoder", "episodes_per_row": cfg.episodes, "frames": frames, "errors_cm": errors,
            "ratio_to_as_trained": ratios, "env_config": base, "wall_s": round(time.perf_counter() - start, 1)}
