"""An image encoder pretrained in sim to regress the privileged state, used frozen by SAC.

Frozen, its features are computed once per env step (and stored in the replay instead of the images), so
an update costs what a state-only update costs (SERL freezes its ResNet for the same reason). The
features are the fused embedding of both cameras and the joint encoders plus the regressed state itself
(normalised), which is what the policy needs to find the kettle and the sink.

The file is made by `python -m robolearn.pretrain` and holds the weights with what it was made for
(camera names and shapes, proprioception keys and sizes, target layout, robot); loading it against another
observation spec is a clear error. Its default name says what it was made for (robolearn/paths.py). A
training checkpoint of the pixel recipe carries the encoder too and loads here in the file's place.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from gymnasium import spaces

FORMAT = "robolearn-pretrained-encoder/1"
FEATURE_KEY = "image_features"  # the observation key that replaces the image keys in the replay
# With `agent.estimated_state`, the encoder's estimate of the privileged state (its own units) under this key
# too: what a critic reads on an arm without a tracker, in place of the privileged state.
ESTIMATE_KEY = "estimated_state"
# What `image_features` holds (agent.encoder_features): "all", the fused embedding and the normalised regression of
# the state; "estimate", the regression only, which moves with the state an image shows and not with the image
# itself (a moved camera shifts the embedding even where the estimate holds: docs/benchmarks.md, twentieth session);
# "estimate_tcp", the regression with the kettle and the handle placed from the gripper: the arm's kinematics
# (joint encoders, exact) plus the encoder's kettle-from-gripper and handle-from-gripper vectors (its `from_tcp`
# targets). A camera moved from where the sim had it shifts the base-frame positions it reads, but hardly the
# gripper-to-kettle vector both it and the wrist camera see. Measured, it learned slower and held the moved cameras
# no better than "estimate" (docs/benchmarks.md, twenty-third session): an option, not the recipe.
FEATURE_SETS = ("all", "estimate", "estimate_tcp")
ANCHORED = {"kettle": (slice(0, 3), 0), "handle": (slice(7, 10), 3)}  # privileged slice, offset in the from_tcp group


class EncoderFileError(RuntimeError):
    """A pretrained encoder file that is missing, unreadable, or made for another observation spec."""


class StridedConvEncoder(nn.Module):
    """Four 3x3 convs with 32 channels, strides 2, 2, 2, 1: ~12x cheaper than DrQ-v2's (stride 2, 1, 1, 1)."""

    def __init__(self, channels: int, height: int, width: int):
        super().__init__()
        layers: list[nn.Module] = []
        c, h, w = channels, height, width
        for stride in (2, 2, 2, 1):
            layers += [nn.Conv2d(c, 32, 3, stride=stride), nn.ReLU()]
            c, h, w = 32, (h - 3) // stride + 1, (w - 3) // stride + 1
        self.convnet = nn.Sequential(*layers)
        self.out_dim = 32 * h * w

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, H, W, C) uint8 -> (B, out_dim)."""
        x = images.permute(0, 3, 1, 2).float() / 255.0 - 0.5
        return self.convnet(x).flatten(1)


class StateRegressionEncoder(nn.Module):
    """Both cameras and the joint encoders -> an embedding, and from it the (normalised) privileged state."""

    def __init__(self, image_shapes: dict[str, tuple[int, int, int]], proprio_dims: dict[str, int], target_dim: int,
                 embed_dim: int = 64, hidden_dim: int = 256):
        super().__init__()
        self.image_keys = list(image_shapes)
        self.proprio_keys = list(proprio_dims)
        self.convs = nn.ModuleDict({k: StridedConvEncoder(s[2], s[0], s[1]) for k, s in image_shapes.items()})
        conv_dim = sum(c.out_dim for c in self.convs.values())
        self.fuse = nn.Sequential(
            nn.Linear(conv_dim + sum(proprio_dims.values()), hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, embed_dim), nn.LayerNorm(embed_dim), nn.Tanh(),
        )
        self.head = nn.Linear(embed_dim, target_dim)
        self.register_buffer("target_mean", torch.zeros(target_dim))
        self.register_buffer("target_std", torch.ones(target_dim))
        self.out_dim = embed_dim + target_dim

    def embed_and_predict(self, images: dict[str, torch.Tensor], proprio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.convs[k](images[k]) for k in self.image_keys] + [proprio], dim=-1)
        embedding = self.fuse(x)
        return embedding, self.head(embedding)  # the prediction is in normalised units

    def predict_state(self, images, proprio) -> torch.Tensor:
        """The privileged state in its own units (metres, quaternion)."""
        return self.embed_and_predict(images, proprio)[1] * self.target_std + self.target_mean

    def features(self, images, proprio) -> torch.Tensor:
        embedding, prediction = self.embed_and_predict(images, proprio)
        return torch.cat([embedding, prediction], dim=-1)


def proprio_tensor(obs: dict[str, Any], keys: list[str], device: torch.device) -> torch.Tensor:
    return torch.cat([torch.as_tensor(np.asarray(obs[k]), dtype=torch.float32, device=device).flatten(1) for k in keys], dim=-1)


class FrozenStateEncoder:
    """The loaded encoder, frozen: numpy observations in, float32 features out."""

    def __init__(self, net: StateRegressionEncoder, meta: dict, device: str | torch.device = "cpu", estimate: bool = False,
                 features: str = "all"):
        if features not in FEATURE_SETS:
            raise ValueError(f"agent.encoder_features must be one of {list(FEATURE_SETS)}, got {features!r}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.meta = meta
        self.image_keys, self.proprio_keys = net.image_keys, net.proprio_keys
        self.feature_set = features
        self.out_dim = net.out_dim if features == "all" else net.head.out_features
        self.estimate = estimate  # also the ESTIMATE_KEY observation
        self.estimate_dim = privileged_dim(meta)
        self.anchor = None  # (robot, where the from_tcp group starts) for "estimate_tcp"
        if features == "estimate_tcp":
            from robolearn.pretrain import target_group_start
            from robolearn.robots import ROBOTS

            start = target_group_start(meta.get("targets", ["privileged"]), "from_tcp")
            if start is None or "joint_pos" not in self.proprio_keys:
                raise EncoderFileError("agent.encoder_features=estimate_tcp needs an encoder pretrained with "
                                       "'targets=[privileged,from_tcp]' (this one regresses "
                                       f"{meta.get('targets', ['privileged'])})")
            self.anchor = (ROBOTS[meta["robot"]], start)

    @torch.no_grad()
    def features(self, obs: dict[str, np.ndarray], batch_size: int = 512) -> np.ndarray:
        """Batched observations (B, ...) -> (B, out_dim) float32, in chunks to bound memory."""
        return self._run(obs, batch_size)[0]

    @torch.no_grad()
    def _run(self, obs: dict[str, np.ndarray], batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """(features, the privileged state's estimate in its own units), both (B, ...) float32."""
        n = len(obs[self.image_keys[0]])
        out = np.empty((n, self.out_dim), dtype=np.float32)
        estimate = np.empty((n, self.estimate_dim), dtype=np.float32)
        for start in range(0, n, batch_size):
            part = {k: np.asarray(obs[k][start : start + batch_size]) for k in (*self.image_keys, *self.proprio_keys)}
            images = {k: torch.as_tensor(part[k], device=self.device) for k in self.image_keys}
            embedding, prediction = self.net.embed_and_predict(images, proprio_tensor(part, self.proprio_keys, self.device))
            rows = slice(start, start + len(embedding))
            state = prediction * self.net.target_std + self.net.target_mean
            if self.anchor is not None:
                prediction, state = self._anchored(prediction, state, part["joint_pos"])
            out[rows] = (torch.cat([embedding, prediction], dim=-1) if self.feature_set == "all" else prediction).cpu().numpy()
            estimate[rows] = state[:, : self.estimate_dim].cpu().numpy()
        return out, estimate

    def _anchored(self, prediction: torch.Tensor, state: torch.Tensor, joint_pos: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The kettle and the handle moved to the gripper's position (kinematics) plus the regressed vectors
        from it; the normalised prediction follows with the privileged targets' own scaling."""
        robot, group = self.anchor
        tcp = torch.as_tensor(robot.tcp_positions(np.asarray(joint_pos, dtype=np.float64).reshape(len(state), -1)),
                              dtype=state.dtype, device=state.device)
        prediction, state = prediction.clone(), state.clone()
        for part, offset in ANCHORED.values():
            state[:, part] = tcp + state[:, group + offset : group + offset + 3]
            prediction[:, part] = (state[:, part] - self.net.target_mean[part]) / self.net.target_std[part]
        return prediction, state

    def featurize(self, obs: dict[str, np.ndarray], batched: bool = True) -> dict[str, np.ndarray]:
        """Replace the image keys of an observation by one `image_features` vector (and, with `estimate`,
        add the privileged state's estimate as `estimated_state`)."""
        if not batched:
            return {k: v[0] for k, v in self.featurize({k: np.asarray(v)[None] for k, v in obs.items()}).items()}
        out = {k: v for k, v in obs.items() if k not in self.image_keys}
        out[FEATURE_KEY], estimate = self._run(obs)
        if self.estimate:
            out[ESTIMATE_KEY] = estimate
        return out

    def feature_space(self, observation_space: spaces.Dict) -> spaces.Dict:
        """The observation space with the image keys replaced by the feature vector (what the replay stores).

        The features come first (an OrderedDict: gymnasium would sort a dict), so the policy's inputs are in
        the same order whether the features are actor-only (the sim recipe) or shared with the critic (an arm
        without a tracker): a sim checkpoint's policy, the learner fine-tuning it and the actors it
        broadcasts to read them alike, whichever split each was configured with."""
        rest = [(k, s) for k, s in observation_space.spaces.items() if k not in self.image_keys]
        if self.estimate:
            rest.append((ESTIMATE_KEY, spaces.Box(-np.inf, np.inf, (self.estimate_dim,), np.float32)))
        return spaces.Dict(OrderedDict([(FEATURE_KEY, spaces.Box(-np.inf, np.inf, (self.out_dim,), np.float32)), *rest]))


def privileged_dim(meta: dict) -> int:
    """How many of an encoder's regression targets are the privileged state (it comes first; robolearn.pretrain)."""
    from robolearn.pretrain import TARGET_GROUPS

    return int(meta["target_dim"]) - sum(TARGET_GROUPS[g] for g in meta.get("targets", ["privileged"])[1:])


def input_signature(observation_space: spaces.Dict, image_keys: list[str], proprio_keys: list[str]) -> dict:
    """What an encoder file is bound to: each input key with its shape."""
    missing = [k for k in (*image_keys, *proprio_keys) if k not in observation_space.spaces]
    if missing:
        raise EncoderFileError(f"the observation space has no {missing} (it has {sorted(observation_space.spaces)})")
    return {k: list(observation_space[k].shape) for k in (*image_keys, *proprio_keys)}


def save_encoder(path: str | Path, net: StateRegressionEncoder, meta: dict) -> None:
    from robolearn.checkpoint import save_checkpoint

    save_checkpoint(path, {"format": FORMAT, "meta": meta, "state_dict": net.state_dict()})


def load_encoder(path: str | Path | None, observation_space: spaces.Dict, device: str | torch.device = "cpu",
                 estimate: bool = False, features: str = "all") -> FrozenStateEncoder:
    """Load and check an encoder file against the observation space it will see."""
    if not path:
        raise EncoderFileError("agent.encoder=pretrained needs agent.encoder_weights: a file made by "
                               "`python -m robolearn.pretrain` (its default name: `python -m robolearn.paths`)")
    path = Path(path).expanduser()
    if not path.is_file():
        raise EncoderFileError(f"pretrained encoder {path} does not exist; make it with "
                               f"`python -m robolearn.pretrain out={path}` (minutes on a CPU)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise EncoderFileError(f"pretrained encoder {path} is unreadable: {type(exc).__name__}: {exc}") from None
    if isinstance(payload, dict) and payload.get("encoder_meta") and isinstance(payload.get("agent"), dict):
        # A training checkpoint of the pixel recipe carries its frozen encoder: starting from the checkpoint
        # (online fine-tuning, a learner box) needs no separate encoder file.
        prefix = "frozen_encoder."
        model = payload["agent"].get("model", {})
        payload = {"meta": payload["encoder_meta"], "state_dict": {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}}
    elif not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise EncoderFileError(f"{path} is not a robolearn pretrained encoder (format {FORMAT}) nor a checkpoint that carries one")
    meta = payload["meta"]
    expected = meta["inputs"]
    actual = input_signature(observation_space, meta["image_keys"], meta["proprio_keys"])
    if actual != expected:
        raise EncoderFileError(f"pretrained encoder {path} was made for other observations:\n"
                               f"  encoder: {expected}\n  this env: {actual}")
    net = build_encoder(meta)
    net.load_state_dict(payload["state_dict"])
    return FrozenStateEncoder(net, meta, device, estimate, features)


def build_encoder(meta: dict) -> StateRegressionEncoder:
    inputs = meta["inputs"]
    return StateRegressionEncoder(
        {k: tuple(inputs[k]) for k in meta["image_keys"]},
        {k: int(np.prod(inputs[k])) for k in meta["proprio_keys"]},
        meta["target_dim"], embed_dim=meta["embed_dim"], hidden_dim=meta["hidden_dim"],
    )


def learning_space(observation_space: spaces.Dict, encoder: str, encoder_weights: str | None,
                   estimate: bool = False, features: str = "all") -> tuple[spaces.Dict, FrozenStateEncoder | None]:
    """What the replay stores for an agent config: the env's observations, or with a frozen pretrained
    encoder its features in place of the images (and the encoder, to featurize demos with)."""
    if encoder != "pretrained":
        return observation_space, None
    frozen = load_encoder(encoder_weights, observation_space, estimate=estimate, features=features)
    return frozen.feature_space(observation_space), frozen
