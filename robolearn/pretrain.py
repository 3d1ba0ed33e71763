"""Pretrain the frozen image encoder of the pixel recipe in sim: regress the privileged state from both cameras.

    python -m robolearn.pretrain                          # -> encoders/kettle_sink_<robot>_<cameras>_<hash>.pt (~25 minutes on 2 CPU cores)
    python -m robolearn.pretrain env.robot=ur5e           # the UR5e's (its own file)
    python -m robolearn.pretrain episodes=20 epochs=2     # a quick, rough one

Two resumable stages. Collecting: episodes of the scripted expert with action noise and random detours,
and some episodes of uniform random actions (what an untrained policy does), on randomised colours,
lighting and camera poses; images, joints and the privileged state are saved to `data` after every
episode batch. Training: the encoder (`robolearn.agents.pretrained`) regresses the normalised privileged
state; a state file next to `out` is written every epoch, so a stopped run goes on from its last epoch.
The held-out episodes' errors (median, p90, in cm), and the same on a sample of training frames (an encoder
far better there has memorised its scenes), are printed and stored in the encoder file.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from robolearn.agents.augment import random_shift, random_warp
from robolearn.agents.pretrained import StateRegressionEncoder, build_encoder, input_signature, proprio_tensor, save_encoder
from robolearn.checkpoint import save_checkpoint
from robolearn.config import check, load_typed, register_schema
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR
from robolearn.process.device import pick_device
from robolearn.replay.codec import obs_name
from robolearn.rollout import run_episode
from robolearn.robots import ROBOTS
from robolearn.spec import EnvSpec, image_keys_of, split_privileged

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    env: Any = None  # the kettle sim (or the arm's env config, to fine-tune on its recordings)
    # what agent.encoder_weights points to, named by the robot and cameras it is made for (robolearn/paths.py);
    # a .state.pt beside it makes training resumable
    out: str = "encoders/kettle_sink_${encoder_tag:${env}}.pt"
    data: Optional[str] = None  # the collected frames; null: beside `out` (<out>.data.npz), reused when present
    seed: int = 0
    device: str = "auto"
    torch_threads: int = 0
    progress: bool = True
    # collection: the scripted expert with noise and random detours, plus episodes of random actions
    episodes: int = 150
    random_fraction: float = 0.2  # episodes of uniform random actions (an untrained policy's states)
    noise_scales: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.6])  # per episode, Gaussian noise on the normalised action
    detour_probability: float = 0.03  # per step: start a run of random actions ...
    detour_max_steps: int = 15  # ... this long at most (failed grasps, dropped and tipped kettles)
    save_every_episodes: int = 10
    # A fresh visual randomisation (materials, lights, camera poses, distractors, image effects) for every frame
    # instead of one per episode: an episode's frames otherwise share one scene, and an encoder trained on 150
    # scenes over-fits them (docs/benchmarks.md, "Sixteenth session"). The physics of the episode is unchanged.
    look_per_frame: bool = False
    expert: Any = field(default_factory=lambda: {"_target_": "sim.expert.KettleSinkExpert"})
    # real-arm fine-tuning: replay files recorded on the arm (teleop, deploy) with the ArUco tracker on, and the
    # sim encoder to start from (docs/learner.md); set env to the arm's env config so the inputs match
    recordings: list[str] = field(default_factory=list)
    init_from: Optional[str] = None
    # training
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1.0e-3
    augment_pad: int = 2  # small shifts: the env jitters its cameras by ~1 cm / 0.02 rad
    # Image-level camera motion past the rendered range (each camera's image of a training sample turned by up to
    # warp_degrees, shifted by up to warp_translate of its size, zoomed by up to warp_scale; the targets unchanged):
    # the base-frame positions must then be read off the scene's landmarks (sink, counter, arm), not off where the
    # kettle sits in the image. A real camera is bolted "about there"; docs/benchmarks.md, "Twentieth session".
    warp_degrees: float = 0.0
    warp_translate: float = 0.0
    warp_scale: float = 0.0
    val_fraction: float = 0.1  # held-out episodes
    embed_dim: int = 64
    hidden_dim: int = 256
    # What the encoder regresses (and the policy then reads among its features): `privileged`, the kettle, handle
    # and sink in the base frame; `relative` adds the handle in the gripper's frame and the kettle from the sink,
    # the gripper placed by the arm's kinematics from its joint encoders. A camera moved from where the sim had it
    # shifts every base-frame position read off its image, while the fingers (in the wrist view) and the sink stay
    # in view as references. Measured under the transfer randomisation it bought no precision (docs/benchmarks.md,
    # "Sixteenth session"): kept to try on other scenes, off by default. `from_tcp` adds the kettle and the handle
    # minus the gripper (base axes): what `agent.encoder_features=estimate_tcp` places them with; its error is
    # that placed estimate's error, the kinematics being exact.
    targets: list[str] = field(default_factory=lambda: ["privileged"])

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "save_every_episodes", "detour_max_steps", "embed_dim", "hidden_dim"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "must be positive")
        check(self.episodes >= 0, "episodes", self.episodes, "must be >= 0")
        check(0 <= self.warp_degrees <= 45, "warp_degrees", self.warp_degrees, "degrees in [0, 45]")
        for key in ("warp_translate", "warp_scale"):
            check(0 <= getattr(self, key) <= 0.5, key, getattr(self, key), "a fraction of the image in [0, 0.5]")
        for key in ("random_fraction", "detour_probability", "val_fraction"):
            check(0 <= getattr(self, key) <= 1, key, getattr(self, key), "must be in [0, 1]")
        check(len(self.noise_scales) > 0, "noise_scales", self.noise_scales, "at least one scale")
        check(bool(self.targets) and self.targets[0] == "privileged" and set(self.targets) <= set(TARGET_GROUPS)
              and len(set(self.targets)) == len(self.targets), "targets", self.targets,
              f"`privileged` first, then any of {list(TARGET_GROUPS)[1:]}")


register_schema("pretrain_schema", PretrainConfig)

PROPRIO_KEYS = ["joint_pos", "gripper"]
TARGET_KEY = "privileged"
# Target groups in the order they are concatenated, with their sizes. The privileged state comes first, so its
# layout (robolearn.spec.PRIVILEGED_LAYOUT) starts every prediction whatever else follows.
TARGET_GROUPS = {"privileged": 13, "relative": 6, "from_tcp": 6}


# -- data -------------------------------------------------------------------------------------------------
def collect(cfg: PretrainConfig, env, path: Path, env_seed_base: Optional[int] = None) -> dict[str, np.ndarray]:
    """Run (or continue) the collection; returns the dataset. Episodes are seeded by their index, so a
    resumed collection is the same as an uninterrupted one. Episode i resets the env with env_seed_base + i
    (default: the pretraining's own block, disjoint from train, eval and demo seeds)."""
    if env_seed_base is None:
        env_seed_base = 20_000_000 + cfg.seed * 100_000
    image_keys = image_keys_of(env.observation_space)
    keys = [*image_keys, *PROPRIO_KEYS, TARGET_KEY, "episode"]
    data: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    done_episodes = 0
    redraw = getattr(env.unwrapped, "redraw_look", None)
    if cfg.look_per_frame and redraw is None:
        raise ValueError(f"pretrain.look_per_frame: {type(env.unwrapped).__name__} cannot redraw its look (the kettle sim can)")
    if path.exists():
        with np.load(path) as saved:
            made_with = bool(saved["look_per_frame"]) if "look_per_frame" in saved.files else False
            if made_with != cfg.look_per_frame:
                raise ValueError(f"pretrain: {path} was collected with look_per_frame={made_with}, this run asks for "
                                 f"{cfg.look_per_frame}: move it away or set pretrain.data to another file")
            kept = saved["episode"] < cfg.episodes  # a file made with more episodes gives its first ones
            data = {k: [saved[k][kept]] for k in keys}
        done_episodes = int(data["episode"][0].max()) + 1 if len(data["episode"][0]) else 0
        log.info("continuing the collection in %s from episode %d", path, done_episodes)
    expert = instantiate(cfg.expert, env=env)
    bar = tqdm(range(done_episodes, cfg.episodes), initial=done_episodes, total=cfg.episodes, desc="collect", unit="ep",
               disable=not cfg.progress)
    for episode in bar:
        rng = np.random.default_rng([cfg.seed, episode])
        expert.reset()
        look_rng = np.random.default_rng([cfg.seed, episode, 1])  # its own stream: the actions stay as without it
        random_episode = rng.uniform() < cfg.random_fraction
        noise = rng.choice(cfg.noise_scales)
        detour_left = 0

        def keep_frame(obs, *_) -> None:
            for key in data:
                if key != "episode":
                    data[key].append(obs[key][None])
            data["episode"].append(np.array([episode]))

        def act(obs) -> np.ndarray:
            nonlocal detour_left
            action = expert.act(obs)  # keeps the expert's phase machine current even when it is overridden
            if cfg.look_per_frame:
                redraw(look_rng)  # the next frame is rendered in a new look
            if random_episode or detour_left > 0:
                action = rng.uniform(-1, 1, action.shape)
                detour_left -= 1
            else:
                action = action + noise * rng.standard_normal(action.shape)
                if rng.uniform() < cfg.detour_probability:
                    detour_left = int(rng.integers(1, cfg.detour_max_steps + 1))
            return np.clip(action, -1, 1).astype(np.float32)

        # Every observation an action was chosen on is a frame; the last one of an episode is not.
        run_episode(env, act, seed=env_seed_base + episode,
                    on_start=keep_frame, record=lambda step: None if step.done else keep_frame(step.next_obs))
        bar.set_postfix(frames=sum(len(x) for x in data["episode"]))
        if (episode + 1) % cfg.save_every_episodes == 0 or episode + 1 == cfg.episodes:
            arrays = {k: np.concatenate(v) for k, v in data.items()}
            data = {k: [v] for k, v in arrays.items()}
            _save_npz(path, {**arrays, "look_per_frame": np.array(cfg.look_per_frame)})
    if not data["episode"]:
        return {}  # episodes=0: recordings only
    return {k: np.concatenate(v) for k, v in data.items()}


def load_recordings(paths, image_keys: list[str]) -> dict[str, np.ndarray]:
    """Frames from replay files recorded on a real arm (teleop demos, deploy runs) to fine-tune on its own
    cameras. Their labels are the privileged state from the ArUco tracker, so it must have been on."""
    keys = [*image_keys, *PROPRIO_KEYS, TARGET_KEY]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in [*keys, "episode"]}
    for number, path in enumerate(paths):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pretrain.recordings: no such file {path}")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if obs_name(k) not in data.files]
            if missing:
                hint = " (record with the ArUco tracker configured: env.hardware.tracker.kind=aruco env.privileged=true, docs/deploy.md)" if TARGET_KEY in missing else ""
                raise ValueError(f"pretrain.recordings: {path} has no {missing}{hint}")
            for k in keys:
                parts[k].append(data[obs_name(k)])
            # Episodes are told apart by their rows' links: a row without a predecessor starts one.
            starts = np.cumsum(data["prev"] < 0)
            parts["episode"].append(1_000_000 * (number + 1) + starts)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


# -- targets ----------------------------------------------------------------------------------------------
def regression_targets(data: dict[str, np.ndarray], groups: list[str], robot) -> np.ndarray:
    """(N, sum of the groups' sizes) float32: the privileged state, then each further group in `groups`' order:
    `relative` (the handle in the tool centre point's frame, the kettle minus the sink in the base frame's axes),
    `from_tcp` (the kettle and the handle minus the tool centre point, base frame's axes); metres. The tool centre
    point is placed by the arm's kinematics from the recorded joint encoders, as it is when the encoder is used."""
    privileged = data[TARGET_KEY].astype(np.float32)
    parts = [privileged]
    if len(groups) > 1:
        state = split_privileged(privileged.T)
        joint_pos = np.asarray(data["joint_pos"], dtype=np.float64)
    for group in groups[1:]:
        if group == "relative":
            tcp_poses = np.stack([robot.forward_kinematics(q) for q in joint_pos])
            handle_in_tcp = np.einsum("nji,nj->ni", tcp_poses[:, :3, :3], state["handle_pos"].T - tcp_poses[:, :3, 3])
            parts.append(np.concatenate([handle_in_tcp, state["kettle_pos"].T - state["sink_pos"].T], axis=1).astype(np.float32))
        elif group == "from_tcp":
            tcp = robot.tcp_positions(joint_pos)
            parts.append(np.concatenate([state["kettle_pos"].T - tcp, state["handle_pos"].T - tcp], axis=1).astype(np.float32))
    return np.concatenate(parts, axis=1)


def target_group_start(groups: list[str], group: str) -> Optional[int]:
    """Where `group` starts in the concatenated targets (None: not regressed)."""
    if group not in groups:
        return None
    return sum(TARGET_GROUPS[g] for g in groups[: groups.index(group)])


def target_parts(groups: list[str]) -> dict[str, slice]:
    """Where each position the errors are reported for sits in the concatenated targets."""
    parts = {"kettle": slice(0, 3), "handle": slice(7, 10)}
    names = {"relative": ("handle_in_tcp", "kettle_from_sink"), "from_tcp": ("kettle_from_tcp", "handle_from_tcp")}
    start = TARGET_GROUPS["privileged"]
    for group in groups[1:]:
        for i, name in enumerate(names[group]):
            parts[name] = slice(start + 3 * i, start + 3 * i + 3)
        start += TARGET_GROUPS[group]
    return parts


# -- training ---------------------------------------------------------------------------------------------
FIT_SAMPLE = 2000  # training frames the final errors are also reported on


def position_errors_cm(pred: np.ndarray, target: np.ndarray, groups: Optional[list[str]] = None) -> dict[str, float]:
    """Median and p90 errors of the kettle and handle positions (and of the further groups' vectors, where
    regressed), in cm."""
    out = {}
    for name, part in target_parts(groups or ["privileged"]).items():
        err = 100 * np.linalg.norm(pred[:, part] - target[:, part], axis=1)
        out[f"{name}_median_cm"], out[f"{name}_p90_cm"] = float(np.median(err)), float(np.percentile(err, 90))
    return out


def train_encoder(cfg: PretrainConfig, data: dict[str, np.ndarray], meta: dict, state_path: Path, device: torch.device):
    image_keys = meta["image_keys"]
    episodes = np.unique(data["episode"])
    rng = np.random.default_rng(cfg.seed)
    n_held = min(max(1, int(round(cfg.val_fraction * len(episodes)))), len(episodes) - 1)
    held_out = rng.choice(episodes, size=n_held, replace=False)
    val_mask = np.isin(data["episode"], held_out)
    train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    if not n_held:
        log.warning("pretrain: one episode only: the errors reported are on the training frames")
        val_idx = train_idx
    groups = meta.get("targets", ["privileged"])
    target = regression_targets(data, groups, ROBOTS[meta["robot"]])
    mean, std = target[train_idx].mean(0), target[train_idx].std(0) + 1e-3  # the sink never moves: std ~0

    net = build_encoder(meta).to(device)
    net.target_mean.copy_(torch.as_tensor(mean))
    net.target_std.copy_(torch.as_tensor(std))
    if cfg.init_from:
        # Fine-tuning (e.g. the sim encoder on a real arm's recordings): its weights and target scaling.
        start = torch.load(cfg.init_from, map_location="cpu", weights_only=False)
        if start.get("meta", {}).get("inputs") != meta["inputs"]:
            raise ValueError(f"pretrain.init_from: {cfg.init_from} was made for other observations")
        net.load_state_dict(start["state_dict"])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    first_epoch = 0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state["meta"] == meta and state["epochs"] == cfg.epochs:
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            torch.set_rng_state(state["torch_rng"])
            rng.bit_generator.state = state["numpy_rng"]
            first_epoch = state["epoch"] + 1
            log.info("continuing the training from epoch %d (%s)", first_epoch, state_path)
        else:
            log.warning("ignoring %s: it was made with another dataset or settings", state_path)

    def batch(idx: np.ndarray, augment: bool):
        images = {}
        for k in image_keys:
            frames = torch.as_tensor(data[k][idx], device=device)
            if augment:
                frames = random_warp(frames, cfg.warp_degrees, cfg.warp_translate, cfg.warp_scale)
            images[k] = random_shift(frames[:, None], cfg.augment_pad) if augment and cfg.augment_pad else frames
        return images, proprio_tensor({k: data[k][idx] for k in meta["proprio_keys"]}, meta["proprio_keys"], device)

    metrics: dict[str, float] = {}
    bar = tqdm(range(first_epoch, cfg.epochs), initial=first_epoch, total=cfg.epochs, desc="pretrain", unit="epoch",
               disable=not cfg.progress)
    for epoch in bar:
        net.train()
        order = rng.permutation(train_idx)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[start : start + cfg.batch_size])
            images, proprio = batch(idx, augment=True)
            _, prediction = net.embed_and_predict(images, proprio)
            goal = (torch.as_tensor(target[idx], device=device) - net.target_mean) / net.target_std
            loss = torch.nn.functional.smooth_l1_loss(prediction, goal, beta=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        metrics = {"train_loss": total / len(order), **evaluate_encoder(net, batch, val_idx, target, cfg.batch_size, groups)}
        if epoch == cfg.epochs - 1:
            # The same errors on training frames: far below the held-out ones, the encoder has learned its scenes
            # by heart (docs/benchmarks.md, "Sixteenth session"). A fixed sample keeps it a few seconds.
            fit_idx = np.sort(np.random.default_rng(cfg.seed).choice(train_idx, size=min(FIT_SAMPLE, len(train_idx)), replace=False))
            fit = evaluate_encoder(net, batch, fit_idx, target, cfg.batch_size, groups)
            metrics.update({f"training_{k}": v for k, v in fit.items()})
        bar.set_postfix(loss=f"{metrics['train_loss']:.4f}", kettle_cm=f"{metrics['kettle_median_cm']:.2f}",
                        handle_cm=f"{metrics['handle_median_cm']:.2f}")
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in metrics.items()})
        save_checkpoint(state_path, {"meta": meta, "epochs": cfg.epochs, "epoch": epoch, "net": net.state_dict(),
                                     "opt": opt.state_dict(), "sched": sched.state_dict(), "metrics": metrics,
                                     "torch_rng": torch.get_rng_state(), "numpy_rng": rng.bit_generator.state})
    if not metrics and state_path.exists():  # every epoch was done before: report the stored result
        metrics = torch.load(state_path, map_location="cpu", weights_only=False)["metrics"]
    return net.cpu().eval(), metrics


@torch.no_grad()
def evaluate_encoder(net: StateRegressionEncoder, batch, idx: np.ndarray, target: np.ndarray, batch_size: int,
                     groups: Optional[list[str]] = None) -> dict[str, float]:
    net.eval()
    preds = [net.predict_state(*batch(idx[s : s + batch_size], augment=False)).cpu().numpy() for s in range(0, len(idx), batch_size)]
    return position_errors_cm(np.concatenate(preds), target[idx], groups)


def recorded_recipe(cfg: PretrainConfig) -> dict:
    """The pretraining settings an encoder file's meta records (the defaults of `targets`, `look_per_frame` and
    the warps only when not the default, so older files and states stay equal)."""
    recipe: dict[str, Any] = {"embed_dim": int(cfg.embed_dim), "hidden_dim": int(cfg.hidden_dim),
                              "episodes": int(cfg.episodes), "seed": int(cfg.seed)}
    if cfg.targets != ["privileged"]:
        recipe["targets"] = list(cfg.targets)
    if cfg.look_per_frame:
        recipe["look_per_frame"] = True
    warp = {"degrees": cfg.warp_degrees, "translate": cfg.warp_translate, "scale": cfg.warp_scale}
    if any(warp.values()):
        recipe["warp"] = warp
    return recipe


# Which recorded setting a pretraining key ends up in (the keys not listed are not recorded in the file).
RECORDED_AS = {"embed_dim": "embed_dim", "hidden_dim": "hidden_dim", "episodes": "episodes", "seed": "seed", "targets": "targets",
               "look_per_frame": "look_per_frame", "warp_degrees": "warp", "warp_translate": "warp", "warp_scale": "warp"}


def recipe_mismatches(meta: dict, cfg: PretrainConfig, keys: list[str]) -> dict[str, tuple[Any, Any]]:
    """For the pretraining keys named in `keys`: {recorded setting: (the file's value, the asked value)} where
    they differ. A file's missing optional setting is its default."""
    asked = recorded_recipe(cfg)
    defaults = {"targets": ["privileged"], "look_per_frame": False, "warp": None}
    out = {}
    for name in sorted({RECORDED_AS[k] for k in keys if k in RECORDED_AS}):
        have, want = meta.get(name, defaults.get(name)), asked.get(name, defaults.get(name))
        if have != want:
            out[name] = (have, want)
    return out


def pretrain(cfg: PretrainConfig | DictConfig) -> dict:
    """Collect (or continue), then train (or continue); a composed config is checked against PretrainConfig first."""
    cfg = load_typed(PretrainConfig, cfg, "pretrain")
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    # The privileged state is the regression target; the policy never sees it.
    env_cfg = dataclasses.replace(cfg.env, privileged=True) if dataclasses.is_dataclass(cfg.env) else {**(cfg.env or {}), "privileged": True}
    env = make_env(env_cfg)
    try:
        image_keys = image_keys_of(env.observation_space)
        if not image_keys:
            raise ValueError("pretrain: the env has no cameras (env.cameras is empty)")
        meta = {
            "image_keys": image_keys, "proprio_keys": PROPRIO_KEYS, "target_key": TARGET_KEY,
            "inputs": input_signature(env.observation_space, image_keys, PROPRIO_KEYS),
            "target_dim": int(env.observation_space[TARGET_KEY].shape[0]) + sum(TARGET_GROUPS[g] for g in cfg.targets[1:]),
            "robot": EnvSpec.from_config(env_cfg).robot.name,  # same-sized arms (Panda/FR3, the URs) look different
            **recorded_recipe(cfg),
        }
        out = Path(cfg.out)
        data = collect(cfg, env, Path(cfg.data) if cfg.data else out.with_suffix(".data.npz"))
    finally:
        env.close()
    if not data and not cfg.recordings:
        raise ValueError("pretrain: no frames (episodes=0 and no recordings)")
    if cfg.recordings:
        recorded = load_recordings(cfg.recordings, image_keys)
        data = {k: np.concatenate([data[k], recorded[k]]) for k in recorded} if data else recorded
        meta["recorded_frames"] = int(len(recorded["episode"]))
        log.info("added %d recorded frames from %s", meta["recorded_frames"], list(cfg.recordings))
    device = pick_device(cfg.device)
    net, metrics = train_encoder(cfg, data, meta, out.with_suffix(".state.pt"), device)
    save_encoder(out, net, {**meta, "validation": metrics, "frames": int(len(data["episode"]))})
    log.info("wrote %s: %s", out, metrics)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="pretrain")
def main(node: DictConfig) -> None:
    cfg = load_typed(PretrainConfig, node, "pretrain")
    metrics = pretrain(cfg)
    print(f"encoder: {cfg.out}")
    print(f"errors on held-out episodes (training_*: on training frames): {OmegaConf.to_yaml(OmegaConf.create(metrics)).strip()}")


if __name__ == "__main__":
    main()
