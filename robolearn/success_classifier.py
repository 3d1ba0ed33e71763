"""A success classifier on the arm's own camera images: the reward an arm can compute without a simulator or markers.

    python -m robolearn.success_classifier                              # sim: labelled by the simulator
    python -m robolearn.success_classifier env=kettle_sink_transfer     # on the transfer scene's encoder
    python -m robolearn.success_classifier env=real_fake episodes=0 encoder=<the arm's> \
        "recordings=[demos/arm_teleop.npz]" "negative_recordings=[outputs/deploy/<run>/episodes.npz]"   # the arm's frames

It reads what the policy reads: the frozen pretrained encoder's features of both cameras (robolearn/agents/pretrained.py),
of the current frame and the one before (a kettle still sliding into the basin is not yet a success), so it costs an
actor one small forward pass per step. In sim the frames are labelled by the simulator's success (`info["success"]`)
on episodes of the scripted expert with action noise and of random actions, run on past the success
(`env.terminate_on_success=false`) so each successful episode gives many positive frames beside the hard negatives
just before them (the kettle lowered, not yet down).

On an arm the frames are its own recordings (replay files of teleop demos and deploy runs): a person ends each teleop
demo once the kettle rests in the basin, so its last `positive_tail` frames are successes and its first
`negative_fraction` are not (the frames between, the kettle on its way down, are left out as ambiguous); recordings
with no success in them (failed rollouts) give negatives only. SERL's walkthrough asks for ~200 positive frames and
2-3x as many negatives.

Episodes are split three ways: training, validation (the decision threshold: the lowest whose false-positive rate
there is at most `max_false_positive`), and held-out test episodes, whose false-positive rate (negative frames called
success) and false-negative rate (success frames missed) are printed and stored in the classifier file. Loading it
for use checks them against the limits (`check_error_rates`): a classifier that fires falsely stalls learning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import hydra
import numpy as np
import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from robolearn.agents.pretrained import FEATURE_KEY, FrozenStateEncoder, load_encoder
from robolearn.config import check, load_typed, register_schema
from robolearn.envs import make_env
from robolearn.paths import CONFIG_DIR
from robolearn.rollout import run_episode

log = logging.getLogger(__name__)

FORMAT = "robolearn-success-classifier/1"
SEED_BASE = 30_000_000  # its episodes' seeds: disjoint from training, evaluation, demos (10M) and pretraining (20M)


class ClassifierFileError(RuntimeError):
    """A classifier file that is missing, unreadable, made on another encoder, or whose error rates are over the limits."""


@dataclass
class SuccessClassifierConfig:
    env: Any = None  # the kettle sim (labelled by the simulator)
    encoder: str = "encoders/kettle_sink_${encoder_tag:${env}}.pt"  # the frozen encoder whose features it reads
    out: str = "classifiers/success_${encoder_tag:${env}}.pt"
    data: Optional[str] = None  # the labelled features; null: beside `out` (<out>.data.npz), reused when present
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    # collection (sim)
    episodes: int = 80
    random_fraction: float = 0.15  # episodes of uniform random actions
    noise_scales: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3])  # per episode, on the expert's action
    expert: Any = field(default_factory=lambda: {"_target_": "sim.expert.KettleSinkExpert"})
    # frames recorded on the arm (replay files: python -m hardware.teleop, deploy record=true), labelled by where they lie:
    recordings: list[str] = field(default_factory=list)  # episodes a person ended at the success (teleop demos)
    positive_tail: int = 10  # ... their last frames are successes
    negative_fraction: float = 0.6  # ... their first frames (this share of each) are not; the frames between are left out
    negative_recordings: list[str] = field(default_factory=list)  # episodes with no success in them: every frame a failure
    mark_margin: int = 5  # frames before a person's success mark (key m during teleop) left out: their reaction time
    # training
    frames: int = 2  # 1: the current frame's features; 2: and their change since the previous frame
    epochs: int = 15  # chosen by the validation episodes' misses (10, 15, 20, 40 tried: docs/benchmarks.md)
    batch_size: int = 256
    lr: float = 1.0e-3
    hidden_dim: int = 128
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # the limits it is held to (HIL-SERL's learned rewards that fire falsely stall learning)
    max_false_positive: float = 0.01
    max_false_negative: float = 0.05

    def __post_init__(self) -> None:
        check(self.frames in (1, 2), "frames", self.frames, "1 or 2")
        check(self.episodes >= 0, "episodes", self.episodes, "must be >= 0 (0: recordings only)")
        check(self.positive_tail >= 1, "positive_tail", self.positive_tail, "must be positive")
        check(self.mark_margin >= 0, "mark_margin", self.mark_margin, "must be >= 0")
        for key in ("epochs", "batch_size", "hidden_dim"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "must be positive")
        for key in ("random_fraction", "negative_fraction", "val_fraction", "test_fraction", "max_false_positive", "max_false_negative"):
            check(0 <= getattr(self, key) <= 1, key, getattr(self, key), "a fraction in [0, 1]")
        check(self.val_fraction > 0 and self.test_fraction > 0 and self.val_fraction + self.test_fraction < 1,
              "val_fraction", (self.val_fraction, self.test_fraction), "validation and test episodes both, and some left to train on")


register_schema("success_classifier_schema", SuccessClassifierConfig)


# -- the classifier ------------------------------------------------------------------------------------------
class SuccessNet(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # logits


def stack_inputs(features: np.ndarray, episode: np.ndarray, frames: int) -> np.ndarray:
    """Per frame: its features, and with frames=2 their change since the episode's previous frame (0 on its first)."""
    if frames == 1:
        return features.astype(np.float32)
    previous = np.concatenate([features[:1], features[:-1]])
    first = np.concatenate([[True], episode[1:] != episode[:-1]])
    previous[first] = features[first]
    return np.concatenate([features, features - previous], axis=1).astype(np.float32)


def error_rates(prob: np.ndarray, label: np.ndarray, threshold: float) -> dict[str, float]:
    """False-positive rate (negative frames called success) and false-negative rate (success frames missed)."""
    said = prob >= threshold
    negatives, positives = int((~label).sum()), int(label.sum())
    return {"false_positive": float((said & ~label).sum() / max(negatives, 1)),
            "false_negative": float((~said & label).sum() / max(positives, 1)),
            "positives": positives, "negatives": negatives}


def episode_outcomes(said: np.ndarray, label: np.ndarray, episode: np.ndarray) -> dict[str, float]:
    """What episodes ended by the classifier's first firing would see (frames in episode order): `ended_early`, the
    share of episodes it fires in before any true success (an episode without one included); `never_fired`, the
    share of episodes with a true success where it never fires; `median_delay_frames`, from the first true success
    to its first firing where that comes at or after it. The frame rates above count every frame alike; these say
    what the learner's episodes get (a miss while the truth flickers after the success ends nothing early)."""
    early = never = succeeded = 0
    delays = []
    ids = np.unique(episode)
    for e in ids:
        rows = np.flatnonzero(episode == e)
        fired, true = np.flatnonzero(said[rows]), np.flatnonzero(label[rows])
        succeeded += bool(len(true))
        if len(fired) and (not len(true) or fired[0] < true[0]):
            early += 1
        elif len(true) and not len(fired):
            never += 1
        elif len(true):
            delays.append(int(fired[0] - true[0]))
    return {"ended_early": early / max(len(ids), 1), "never_fired": never / max(succeeded, 1),
            "median_delay_frames": float(np.median(delays)) if delays else float("nan")}


def choose_threshold(prob: np.ndarray, label: np.ndarray, max_false_positive: float) -> float:
    """The lowest threshold (fewest misses) whose false-positive rate on these frames is at most the limit."""
    negatives = np.sort(prob[~label])[::-1]
    allowed = int(np.floor(max_false_positive * len(negatives)))  # negatives that may lie at or above it
    if len(negatives) == 0:
        return 0.5
    # Just above the (allowed+1)-th highest negative: at most `allowed` negatives remain at or above it.
    return float(min(np.nextafter(negatives[allowed], np.inf), 1.0)) if allowed < len(negatives) else 0.0


class SuccessClassifier:
    """A loaded classifier: the encoder's features of a frame (and of the previous frame) in, success out."""

    def __init__(self, net: SuccessNet, meta: dict):
        self.net = net.eval().requires_grad_(False)
        self.meta = meta
        self.frames = int(meta["frames"])
        self.threshold = float(meta["threshold"])
        self._previous: Optional[np.ndarray] = None

    def reset(self) -> None:
        self._previous = None

    @torch.no_grad()
    def probability(self, features: np.ndarray) -> float:
        """One frame's features (its episode's frames in order; `reset()` between episodes)."""
        features = np.asarray(features, np.float32)
        x = features if self.frames == 1 else np.concatenate(
            [features, features - (features if self._previous is None else self._previous)])
        self._previous = features
        return float(torch.sigmoid(self.net(torch.as_tensor(x)[None]))[0])

    def success(self, features: np.ndarray) -> bool:
        return self.probability(features) >= self.threshold


def encoder_digest(encoder: FrozenStateEncoder) -> str:
    """What the classifier's inputs depend on: the encoder's exact weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def check_error_rates(meta: dict, max_false_positive: float, max_false_negative: float, where: str) -> None:
    test = meta["test"]
    if test["false_positive"] > max_false_positive or test["false_negative"] > max_false_negative:
        raise ClassifierFileError(
            f"{where}: on its held-out episodes the classifier calls {test['false_positive']:.1%} of the failure frames a "
            f"success and misses {test['false_negative']:.1%} of the success frames; the limits are {max_false_positive:.1%} "
            f"and {max_false_negative:.1%}. Label more frames (more positives, and negatives like its false positives), "
            "train it again, or raise the limits knowingly")


def read_meta(path: str | Path) -> dict:
    """A classifier file's meta: the encoder it was made on, its threshold and error rates."""
    return _read(path)["meta"]


def _read(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ClassifierFileError(f"success classifier {path} does not exist; make it with `python -m robolearn.success_classifier`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for truncated or foreign files
        raise ClassifierFileError(f"success classifier {path} is unreadable: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ClassifierFileError(f"{path} is not a robolearn success classifier (format {FORMAT})")
    return payload


def load_classifier(path: str | Path, encoder: FrozenStateEncoder | None = None, *, max_false_positive: float = 0.01,
                    max_false_negative: float = 0.05) -> SuccessClassifier:
    """Load and check a classifier file: made on `encoder` (its weights' digest), error rates within the limits."""
    payload = _read(path)
    meta = payload["meta"]
    if encoder is not None and meta["encoder_digest"] != encoder_digest(encoder):
        raise ClassifierFileError(f"success classifier {path} was trained on the features of another encoder "
                                  f"({meta['encoder']}, digest {meta['encoder_digest']}): train it again on this one")
    check_error_rates(meta, max_false_positive, max_false_negative, str(path))
    net = SuccessNet(int(meta["in_dim"]), int(meta["hidden_dim"]))
    net.load_state_dict(payload["state_dict"])
    return SuccessClassifier(net, meta)


# -- labelled frames in sim ----------------------------------------------------------------------------------
def collect(cfg: SuccessClassifierConfig, env, encoder: FrozenStateEncoder, first: int = 0) -> dict[str, np.ndarray]:
    """Episodes `first`..`cfg.episodes - 1` of the scripted expert (noisy) and of random actions: every frame's
    features and the simulator's success. Each episode is seeded by its index: collecting on later adds episodes."""
    from hydra.utils import instantiate

    expert = instantiate(cfg.expert, env=env)
    features, labels, episodes = [], [], []
    for episode in tqdm(range(first, cfg.episodes), desc="collect", unit="ep", disable=not cfg.progress):
        rng = np.random.default_rng([cfg.seed, episode])
        expert.reset()
        random_episode = rng.uniform() < cfg.random_fraction
        noise = rng.choice(cfg.noise_scales)
        frames: list[dict] = []
        success: list[bool] = []

        def act(obs) -> np.ndarray:
            action = expert.act(obs)
            action = rng.uniform(-1, 1, action.shape) if random_episode else action + noise * rng.standard_normal(action.shape)
            return np.clip(action, -1, 1).astype(np.float32)

        def start(obs, info) -> None:
            frames.append(obs)
            success.append(bool(info.get("success", False)))

        def record(step) -> None:
            frames.append(step.next_obs)
            success.append(bool(step.info.get("success", False)))

        run_episode(env, act, seed=SEED_BASE + cfg.seed * 100_000 + episode, on_start=start, record=record)
        batch = {k: np.stack([f[k] for f in frames]) for k in (*encoder.image_keys, *encoder.proprio_keys)}
        features.append(encoder.features(batch))
        labels.append(np.array(success))
        episodes.append(np.full(len(frames), episode))
    return {"features": np.concatenate(features), "label": np.concatenate(labels), "episode": np.concatenate(episodes)}


def collection_key(cfg: SuccessClassifierConfig) -> str:
    """What decides the collected frames besides the encoder: the scene and the collection's settings."""
    env = dataclasses.asdict(cfg.env) if dataclasses.is_dataclass(cfg.env) else OmegaConf.to_container(OmegaConf.create(cfg.env or {}))
    keys = {"env": env, "seed": cfg.seed, "random_fraction": cfg.random_fraction, "noise_scales": list(cfg.noise_scales),
            "expert": OmegaConf.to_container(OmegaConf.create(cfg.expert))}
    return json.dumps(keys, sort_keys=True, default=str)


def load_recordings(cfg: SuccessClassifierConfig, encoder: FrozenStateEncoder) -> dict[str, np.ndarray]:
    """Frames recorded on the arm, labelled by the person where they marked the success during teleop (key m: that
    frame on successes, the frames before it failures but the last `mark_margin`, their reaction time), else by
    where they lie in their episode (`recordings`: the last `positive_tail` frames are successes, the first
    `negative_fraction` are not; `negative_recordings`: no frame is)."""
    from robolearn.replay.codec import obs_name
    from robolearn.replay.recording import NO_LABEL, SUCCESS_LABEL

    keys = (*encoder.image_keys, *encoder.proprio_keys)
    parts: dict[str, list[np.ndarray]] = {"features": [], "label": [], "episode": []}
    for number, (path, successful) in enumerate([(p, True) for p in cfg.recordings] + [(p, False) for p in cfg.negative_recordings]):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"success_classifier: no such recording {path}")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if obs_name(k) not in data.files]
            if missing:
                raise ValueError(f"success_classifier: {path} has no {missing} (the encoder reads {list(keys)})")
            episode = np.cumsum(data["prev"] < 0)  # a row without a predecessor starts an episode
            label = np.zeros(len(episode), bool)
            keep = np.ones(len(episode), bool)
            marks = data[SUCCESS_LABEL] if SUCCESS_LABEL in data.files else np.full(len(episode), NO_LABEL)
            if successful:
                for e in np.unique(episode):
                    rows = np.flatnonzero(episode == e)
                    if (marks[rows] != NO_LABEL).all():  # the person's labels
                        label[rows] = marks[rows] == 1
                        first = rows[np.flatnonzero(label[rows])[:1]]
                        if len(first):
                            keep[max(rows[0], first[0] - cfg.mark_margin) : first[0]] = False  # ambiguous: left out
                        continue
                    label[rows[-cfg.positive_tail:]] = True
                    keep[rows[int(cfg.negative_fraction * len(rows)):-cfg.positive_tail]] = False  # ambiguous: left out
            features = encoder.features({k: data[obs_name(k)][keep] for k in keys})
        parts["features"].append(features)
        parts["label"].append(label[keep])
        parts["episode"].append(1_000_000 * (number + 1) + episode[keep])
    if not parts["features"]:
        return {}
    return {k: np.concatenate(v) for k, v in parts.items()}


def split_episodes(episode: np.ndarray, cfg: SuccessClassifierConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame masks of the training, validation and test episodes (a seeded draw of whole episodes)."""
    ids = np.unique(episode)
    rng = np.random.default_rng([cfg.seed, 7])
    rng.shuffle(ids)
    n_test = max(1, round(cfg.test_fraction * len(ids)))
    n_val = max(1, round(cfg.val_fraction * len(ids)))
    test, val = ids[:n_test], ids[n_test:n_test + n_val]
    is_test, is_val = np.isin(episode, test), np.isin(episode, val)
    return ~(is_test | is_val), is_val, is_test


def train_classifier(cfg: SuccessClassifierConfig, data: dict[str, np.ndarray]) -> tuple[SuccessNet, dict]:
    torch.manual_seed(cfg.seed)
    x = stack_inputs(data["features"], data["episode"], cfg.frames)
    y = data["label"].astype(bool)
    train, val, test = split_episodes(data["episode"], cfg)
    if y[train].all() or not y[train].any():
        raise ValueError("success classifier: the training episodes hold only one class of frames; collect more episodes")
    # Inputs standardised by the training frames' statistics (kept in the net's first layer by folding them in).
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    net = SuccessNet(x.shape[1], cfg.hidden_dim)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    xt, yt = torch.as_tensor((x - mean) / std), torch.as_tensor(y, dtype=torch.float32)
    train_idx = np.flatnonzero(train)
    pos_weight = torch.tensor(float((~y[train]).sum() / max(y[train].sum(), 1)))  # balance the classes
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    rng = np.random.default_rng(cfg.seed)
    for _ in tqdm(range(cfg.epochs), desc="train", unit="epoch", disable=not cfg.progress):
        net.train()
        order = rng.permutation(train_idx)
        for start in range(0, len(order), cfg.batch_size):
            idx = torch.as_tensor(order[start:start + cfg.batch_size])
            loss = loss_fn(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        first = net.net[0]
        first.bias -= first.weight @ torch.as_tensor(mean / std)  # W((x - m) / s) + b == (W / s) x + (b - W m / s)
        first.weight /= torch.as_tensor(std)
        net.eval()
        prob = torch.sigmoid(net(torch.as_tensor(x))).numpy()
    threshold = choose_threshold(prob[val], y[val], cfg.max_false_positive)
    metrics = {"threshold": threshold,
               **{name: {**error_rates(prob[mask], y[mask], threshold), "episodes": int(len(np.unique(data["episode"][mask]))),
                         **episode_outcomes(prob[mask] >= threshold, y[mask], data["episode"][mask])}
                  for name, mask in (("train", train), ("validation", val), ("test", test))}}
    return net, metrics


def train_and_save(cfg: SuccessClassifierConfig | DictConfig) -> dict:
    """Label (sim episodes and/or the arm's recordings), train, evaluate on held-out episodes, write the file."""
    from robolearn.spec import EnvSpec

    cfg = load_typed(SuccessClassifierConfig, cfg, "success_classifier")
    env_cfg = dataclasses.replace(cfg.env, terminate_on_success=False) if dataclasses.is_dataclass(cfg.env) else \
        {**(cfg.env or {}), "terminate_on_success": False}  # on past the success: positive frames, and still ones
    out = Path(cfg.out)
    data_path = Path(cfg.data) if cfg.data else out.with_suffix(".data.npz")
    data: dict[str, np.ndarray] = {}
    if cfg.episodes:  # sim episodes, labelled by the simulator (cached beside `out`: the rendering is the slow part)
        env = make_env(env_cfg)
        try:
            encoder = load_encoder(cfg.encoder, env.observation_space)
            digest = encoder_digest(encoder)
            held = 0  # episodes the data file holds for this encoder and collection (seeded by index: a prefix is the same)
            if data_path.exists():
                with np.load(data_path) as saved:
                    if str(saved["encoder_digest"]) == digest and (str(saved["collection"]) if "collection" in saved.files else "") == collection_key(cfg):
                        held = int(saved["episodes"])
                        data = {k: saved[k] for k in ("features", "label", "episode")}
                        log.info("labelled features of %d episodes from %s", held, data_path)
                    else:
                        log.warning("%s holds another encoder's features or another collection: collecting again", data_path)
            if held < cfg.episodes:  # collect the rest, and keep the file whole (a larger one is never cut down)
                more = collect(cfg, env, encoder, first=held)
                data = {k: np.concatenate([data[k], more[k]]) for k in more} if data else more
                data_path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(data_path, **data, encoder_digest=np.array(digest), episodes=np.array(cfg.episodes),
                         collection=np.array(collection_key(cfg)))
            keep = data["episode"] < cfg.episodes  # the first `episodes` of a larger file
            data = {k: v[keep] for k, v in data.items()}
        finally:
            env.close()
    else:  # the arm's recordings only: its observation space from the config, no arm connected
        encoder = load_encoder(cfg.encoder, EnvSpec.from_config(env_cfg).observation_space())
        digest = encoder_digest(encoder)
    recorded = load_recordings(cfg, encoder)
    if recorded:
        data = {k: np.concatenate([data[k], recorded[k]]) for k in recorded} if data else recorded
    if not data:
        raise ValueError("success_classifier: no frames (episodes=0 and no recordings)")
    net, metrics = train_classifier(cfg, data)
    meta = {"encoder": str(cfg.encoder), "encoder_digest": digest, "frames": cfg.frames, "in_dim": int(net.net[0].in_features),
            "hidden_dim": cfg.hidden_dim, "feature_key": FEATURE_KEY, "episodes": int(len(np.unique(data["episode"]))),
            "frames_labelled": int(len(data["label"])), "recorded_frames": int(len(recorded.get("label", []))), **metrics}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "meta": meta, "state_dict": net.state_dict()}, out)
    return meta


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="success_classifier")
def main(node: DictConfig) -> None:
    cfg = load_typed(SuccessClassifierConfig, node, "success_classifier")
    meta = train_and_save(cfg)
    test = meta["test"]
    print(f"success classifier: {cfg.out} (threshold {meta['threshold']:.3f})")
    print(f"held-out test episodes ({test['episodes']}; {test['positives']} success and {test['negatives']} other frames): "
          f"false positives {test['false_positive']:.2%}, false negatives {test['false_negative']:.2%}; as episodes ended by "
          f"it: {test['ended_early']:.1%} ended before the true success, {test['never_fired']:.1%} of the successful "
          f"never ended, median delay {test['median_delay_frames']:.0f} frames")
    print(OmegaConf.to_yaml(OmegaConf.create({k: meta[k] for k in ("train", "validation", "test")})).strip())
    try:
        check_error_rates(meta, cfg.max_false_positive, cfg.max_false_negative, cfg.out)
    except ClassifierFileError as exc:
        print(f"NOT within the limits: {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
