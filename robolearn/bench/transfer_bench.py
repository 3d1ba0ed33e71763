"""`transfer` benchmark: a policy on named held-out conditions, what a move to a physical bench brings.

    python -m robolearn.bench transfer policy.path=outputs/train/<run> [episodes=50] [rows=[as_trained,shadows]] [workers=2]
    python -m robolearn.bench transfer policy=expert --quick          # the rows are solvable (privileged state)

Each row (configs/bench/transfer.yaml) is the checkpoint's own training env config with one part replaced by a
value at or outside its training range; `as_trained` replaces nothing and is the run's own baseline. Every row
runs `episodes` episodes, evaluated as `python -m robolearn.eval` does (robolearn.rollout.evaluate, the
policy node of configs/policy/), on seeds disjoint from training, eval, demo and pretraining seeds.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf

from robolearn.config import ConfigError, EnvConfig, check, load_env_config, load_typed
from robolearn.paths import CONFIG_DIR

ROWS_FILE = str(Path(CONFIG_DIR) / "bench" / "transfer.yaml")
# Above every other stream: training seed*1e6 + episode, demos 1e7+, pretraining 2e7+, eval 1e9+, and the
# async actors' draws below 2**31. Row k's episode i: SEED_BASE + k * ROW_SEED_STRIDE + i.
SEED_BASE = 3_000_000_000
ROW_SEED_STRIDE = 100_000
QUICK_EPISODES = 2


@dataclass
class TransferBenchConfig:
    policy: Any = None  # a node of configs/policy/ (default: checkpoint, policy.path=...); policy=expert picks expert.yaml
    episodes: int = 50  # per row; --quick: QUICK_EPISODES unless given
    rows: Optional[list[str]] = None  # a subset by name; null: every row of rows_file
    workers: int = 2  # processes the rows are split over (one torch thread each)
    env: dict[str, Any] = field(default_factory=dict)  # env keys set in every row, as_trained included
    rows_file: str = ROWS_FILE
    progress: bool = True

    def __post_init__(self) -> None:
        check(1 <= self.episodes <= ROW_SEED_STRIDE, "episodes", self.episodes, f"at most {ROW_SEED_STRIDE} (a row's seed block)")
        check(self.workers >= 1, "workers", self.workers, "must be >= 1")


def policy_group(name: str) -> dict:
    """configs/policy/<name>.yaml as a plain node."""
    path = Path(CONFIG_DIR) / "policy" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"policy={name}: no {path}")
    return yaml.safe_load(path.read_text())


def load_rows(rows_file: str = ROWS_FILE) -> dict[str, dict[str, Any]]:
    """Row name -> {dotted env key: value}, in the file's order (which fixes each row's seeds)."""
    return yaml.safe_load(Path(rows_file).read_text())["rows"]


def chosen_rows(rows: dict[str, dict[str, Any]], wanted: Optional[list[str]]) -> list[str]:
    """The rows asked for by name (all of them for None), unknown names refused."""
    chosen = wanted if wanted is not None else list(rows)
    unknown = [name for name in chosen if name not in rows]
    check(not unknown, "rows", unknown, f"known rows: {list(rows)}")
    return list(chosen)


def row_seed(index: int) -> int:
    return SEED_BASE + index * ROW_SEED_STRIDE


DYNAMICS_KEYS = ("kettle_mass", "kettle_friction", "gripper_friction", "joint_damping", "actuator_gain")
# Each part at its nominal value: what a policy trained with that part off saw. Two lights (the scene's own), no
# textures or colour changes: the nominal scene exactly (tests/test_transfer_bench.py compares the frames).
NEUTRAL_PARTS = {
    "materials": {"texture_probability": 0.0, "colour_jitter": 0.0, "kettle_colour_jitter": 0.0},
    "lighting": {"count": [2, 2], "intensity": [1.0, 1.0], "tint": 0.0, "direction": 0.0, "shadow_probability": 0.0},
}


def neutral_randomization(node: dict) -> dict:
    """A randomization node that is off (`enabled: false`) as an equivalent one that is on with every part at
    its nominal value and the switchable parts off, so a row switches on only the part it names. Kettle at the
    nominal spot."""
    node = copy.deepcopy(node)
    node.update({
        "enabled": True,
        "kettle_x_range": [0.0, 0.0], "kettle_y_range": [0.0, 0.0], "kettle_yaw_range": [0.0, 0.0], "kettle_start_edge": False,
        **{part: {**node.get(part, {}), **values, "enabled": False} for part, values in NEUTRAL_PARTS.items()},
        "camera": {"pos": 0.0, "angle": 0.0, "fovy": 0.0, "exact": False},
        "distractors": {"count": [0, 0]},
        "image": {"brightness": 0.0, "contrast": 0.0, "noise_std": 0.0, "blur_probability": 0.0},
        "dynamics": {k: [1.0, 1.0] for k in DYNAMICS_KEYS},
        "latency_ms": [0.0, 0.0], "joint_pos_noise": 0.0, "joint_vel_noise": 0.0,
    })
    return node


def neutral_values_of_parts_switched_on(base: dict, merged, changes: dict[str, Any]) -> None:
    """A part the policy trained with switched off that the row switches on brings only what the row names:
    its other values become nominal, not the stored ranges it never trained under (in place, on `merged`)."""
    for part, values in NEUTRAL_PARTS.items():
        was_on = base.get("randomization", {}).get(part, {}).get("enabled", True)
        if was_on or not OmegaConf.select(merged, f"randomization.{part}.enabled"):
            continue
        named = {key.rsplit(".", 1)[-1] for key in changes if key.startswith(f"randomization.{part}.")}
        for key, value in values.items():
            if key not in named:
                OmegaConf.update(merged, f"randomization.{part}.{key}", value)


def row_env_config(base: dict, changes: dict[str, Any]) -> dict:
    """`base` (a full env config record) with the row's dotted keys replaced, checked against the schema."""
    from robolearn.checkpoint import env_record

    node = copy.deepcopy(base)
    if changes and not node.get("randomization", {}).get("enabled", True):
        node["randomization"] = neutral_randomization(node["randomization"])
    merged = OmegaConf.create(node)
    for key, value in changes.items():
        OmegaConf.update(merged, key, value, merge=True)
    neutral_values_of_parts_switched_on(base, merged, changes)
    return env_record(load_env_config(OmegaConf.to_container(merged)))


def base_env_config(cfg: TransferBenchConfig) -> tuple[dict, Optional[str], bool]:
    """The env config the policy trained on (a checkpoint's, migrated from an older schema if need be; the
    default training config for a policy without a checkpoint), with `cfg.env` on top. Also the checkpoint's
    path and whether its config was migrated."""
    from robolearn.checkpoint import env_record, load_checkpoint
    from robolearn.config_migration import checkpoint_env_config

    path = cfg.policy.get("path")
    migrated = False
    if path in (None, "???"):
        if "path" in cfg.policy:
            raise ConfigError("policy.path: give the checkpoint to evaluate (policy.path=<run dir or .pt>), or policy=expert")
        env, path = env_record(EnvConfig()), None
    else:
        payload = load_checkpoint(path)
        env = checkpoint_env_config(payload, path)
        if env is None:
            raise ConfigError(f"checkpoint {path} records no env config: the rows are built from the one it trained on")
        migrated = env is not payload["env_config"]
    merged = OmegaConf.merge(env, cfg.env) if cfg.env else env
    return env_record(load_env_config(OmegaConf.to_container(merged) if cfg.env else merged)), path, migrated


def parse(argv: list[str], quick: bool) -> TransferBenchConfig:
    """Hydra-style `key=value` arguments; `policy=<name>` picks a file of configs/policy/ to start from."""
    policy, rest = policy_group("checkpoint"), []
    for arg in argv:
        if arg.startswith("policy=") and "." not in arg.split("=", 1)[0]:
            policy = policy_group(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    try:
        node = OmegaConf.merge({"policy": policy}, OmegaConf.from_dotlist(rest))
    except Exception as exc:  # omegaconf's parse errors name the argument
        raise ConfigError(f"transfer bench arguments: {exc}") from None
    if quick and "episodes" not in node:
        node.episodes = QUICK_EPISODES
    # The policy node as given (its own group file, not merged into a default one); its target checks it.
    policy_node = OmegaConf.to_container(node.pop("policy"))
    cfg = load_typed(TransferBenchConfig, node, "transfer bench")
    cfg.policy = policy_node
    return cfg


def evaluate_row(task: dict) -> dict:
    """One row in this process: its env, the policy built for it, `episodes` seeded episodes."""
    from hydra.utils import instantiate

    from robolearn.agents.policy import set_acting_threads
    from robolearn.envs import make_env
    from robolearn.rollout import evaluate

    set_acting_threads(1)  # rows share the CPU's cores between processes
    env = make_env(task["env"])
    try:
        policy = instantiate(task["policy"], env=env)
        summary = evaluate(env, policy, episodes=task["episodes"], seed=task["seed"], progress=False)
    finally:
        env.close()
    return {"name": task["name"], "success_rate": summary.success_rate, "mean_return": round(summary.mean_return, 3),
            "mean_length": round(summary.mean_length, 1), "episodes": len(summary.episodes), "first_seed": task["seed"],
            "outcomes": summary.outcomes}


def run(quick: bool = False, argv: list[str] | None = None) -> dict:
    cfg = parse(argv or [], quick)
    rows = load_rows(cfg.rows_file)
    chosen = chosen_rows(rows, cfg.rows)
    base, path, migrated = base_env_config(cfg)
    order = list(rows)
    tasks = [{"name": name, "env": row_env_config(base, rows[name]), "policy": cfg.policy, "episodes": cfg.episodes,
              "seed": row_seed(order.index(name))} for name in chosen]

    start, results = time.perf_counter(), {}
    workers = max(1, min(cfg.workers, len(tasks), os.cpu_count() or 1))
    print(f"transfer: {len(tasks)} rows x {cfg.episodes} episodes, {workers} worker(s), policy {path or cfg.policy.get('_target_')}",
          flush=True)

    def report(result: dict) -> None:
        results[result["name"]] = result
        failures = ", ".join(f"{k} {v}" for k, v in result["outcomes"].items() if k != "success")
        print(f"row {result['name']}: success {result['success_rate']:.2f} return {result['mean_return']:.1f}"
              f"{f' (failed: {failures})' if failures else ''} ({len(results)}/{len(tasks)} rows, "
              f"{time.perf_counter() - start:.0f} s)", flush=True)

    if workers == 1:
        for task in tasks:
            report(evaluate_row(task))
    else:
        # spawn: each worker starts its own MuJoCo/EGL context and torch, nothing inherited from this one.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for result in pool.imap_unordered(evaluate_row, tasks):
                report(result)
            pool.close()  # let the workers exit on their own: the context's terminate() leaks their semaphores
            pool.join()

    by_row = {name: {k: v for k, v in results[name].items() if k != "name"} for name in chosen}
    success = {name: by_row[name]["success_rate"] for name in chosen}
    worst = min(success, key=success.get)
    return {
        "benchmark": "transfer",
        "checkpoint": path,
        "policy": cfg.policy,
        "episodes_per_row": cfg.episodes,
        "success": success,
        "min_success": success[worst],
        "worst_row": worst,
        "rows": {name: {**by_row[name], "changes": rows[name]} for name in chosen},
        "env_config": base,
        "env_config_migrated": migrated,
        "workers": workers,
        "wall_s": round(time.perf_counter() - start, 1),
    }
