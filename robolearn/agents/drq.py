"""SAC with DrQ image augmentation, for multi-camera + proprioception observations (or state only).

SAC as the course teaches it: twin (or ensemble) critics with a Polyak-averaged target; the target is
`r + gamma^n * not_done * (min_subset Q'(s', a') - alpha * log pi(a'|s'))` with `a' ~ pi(.|s')` drawn by
reparameterisation; a tanh-squashed Gaussian actor; a learned temperature alpha toward a target entropy.
DrQ on top for images: random shifts applied independently to obs and next obs, a DrQ-v2 conv encoder
per camera shared by actor and critic and trained by the critic loss only (the actor sees detached
features). Options from RLPD/SERL: LayerNorm critics, a critic ensemble with a random target subset,
n-step returns (computed by the replay), and a frozen pretrained torchvision encoder.

`update(batch)` returns a dict of metrics; it never logs.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from gymnasium import spaces

from robolearn.agents.augment import draw_shifts, merge_frames, random_shift
from robolearn.agents.encoders import build_image_encoder
from robolearn.agents.pretrained import FEATURE_KEY, FrozenStateEncoder, build_encoder, load_encoder
from robolearn.replay import Batch
from robolearn.spec import image_keys_of


@dataclass
class AgentConfig:
    hidden_dim: int = 256
    hidden_layers: int = 2
    feature_dim: int = 50  # DrQ-v2 trunk width after the image encoder
    num_critics: int = 2
    target_subset: int = 2  # target takes the min over a random subset of this many critics
    actor_q: str = "min"  # how the actor reads the critics: "min" (SAC) or "mean" (RLPD ensembles)
    critic_layernorm: bool = True
    gamma: float = 0.99
    n_step: int = 3
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_temperature: float = 0.1
    target_entropy: float | None = None  # default: -action_dim
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    frame_stack: int = 1
    augment_pad: int = 4
    # "drqv2" (trained by the critic), "pretrained" (a frozen robolearn.pretrain file: features once per env
    # step, updates at state-only cost), or a torchvision model name for a frozen ResNet, e.g. "resnet18"
    encoder: str = "drqv2"
    encoder_weights: str | None = None  # the file for "pretrained" or the torchvision encoder
    # Observation keys only the critic sees (an asymmetric critic, e.g. the sim's privileged state); the
    # actor never reads them, so the policy acts without them. Keys the env does not have are left out.
    critic_only_keys: list[str] = field(default_factory=list)
    # Observation keys only the actor sees, e.g. the frozen encoder's `image_features` when the critic has
    # the privileged state: the critic is then the state-only critic, which learns fastest.
    actor_only_keys: list[str] = field(default_factory=list)
    # With encoder=pretrained: also the encoder's estimate of the privileged state (its own units) as the key
    # `estimated_state`, e.g. for a critic on an arm without a tracker: critic_only_keys=[estimated_state].
    estimated_state: bool = False
    # With encoder=pretrained: what the `image_features` vector holds, "all" (the encoder's 64-wide embedding and
    # its normalised estimate of the state) or "estimate" (the estimate only: a policy on it sees a moved camera
    # only through the encoder's reading of positions, not through an embedding that shifts with the image) or
    # "estimate_tcp" (the estimate with the kettle and the handle placed from the gripper: kinematics plus the
    # encoder's from-gripper vectors; an encoder pretrained with 'targets=[privileged,from_tcp]').
    encoder_features: str = "all"
    # With encoder=pretrained: Gaussian noise of this std (in the features' normalised units; 1 = the spread of a
    # state over the pretraining data) added to `image_features` in every update's batch (obs and next obs), so
    # the policy cannot lean on the encoder's particular errors, which change where a camera moves: a policy on
    # the estimate did worse when handed the true state (docs/benchmarks.md, "Twenty-second session"). 0: off.
    # Not shown to help: at 0.1 (~1 cm on the kettle and handle) one seed learnt far slower (0.50 at 44k vs 0.96 at 40k).
    feature_noise: float = 0.0
    # Behaviour cloning of the demo rows in the actor's loss (Nair et al. 2018's Q filter): the actor's mean
    # action is pulled toward a demo's action where the critic rates the demo action above the policy's,
    # so the policy starts from the demonstrations and the critic, not the demos, has the last word.
    # The SAC term is divided by the batch's mean |Q| (as TD3+BC does) so the weight means the same at
    # every reward scale. 0: plain SAC (the loss is then exactly SAC's).
    bc_weight: float = 0.0
    bc_q_filter: bool = True
    channels_last: bool = True
    compile: bool = False
    # "bfloat16": the update's hidden layers run their matmuls in bfloat16 under autocast (weights, Adam and
    # the output layers stay float32, so Q-values and action means keep their precision); a CPU with
    # avx512_bf16/AMX and recent GPUs multiply bfloat16 at ~2x float32. Acting stays float32. Not shown to
    # learn the pixel recipe (one seed stayed <= 0.40 in 50k env steps; docs/benchmarks.md).
    precision: str = "float32"
    # Rate of a Polyak average of the actor's weights, moved toward the actor after every update (0: off).
    # Deterministic acting (evaluation, best.pt, deploy) uses the average, exploration the online actor: the
    # online policy swings between snapshots a few hundred updates apart (0.70 and 0.95 success on the same
    # 20 seeds, 198 updates apart), the average over ~1/rate updates does not.
    policy_average: float = 0.0


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int, layernorm: bool = False) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods.append(nn.Linear(d, hidden))
        if layernorm:
            mods.append(nn.LayerNorm(hidden))
        mods.append(nn.ReLU())
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


def float32_head(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output layer in float32 even under bfloat16 autocast: bfloat16's 8-bit mantissa would round a
    Q-value of 50 to steps of 0.25, coarser than the TD errors the critic learns from."""
    with torch.autocast(x.device.type, enabled=False):
        return layer(x.float())


class EnsembleLinear(nn.Module):
    """`n` independent linear layers evaluated as one batched matmul: x (n, B, in) -> (n, B, out)."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        bound = 1 / math.sqrt(in_dim)  # nn.Linear's default initialisation, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class Trunk(nn.Module):
    """Image features -> feature_dim (Linear, LayerNorm, tanh as in DrQ-v2), then proprioception appended."""

    def __init__(self, image_dim: int, feature_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(image_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh()) if image_dim else None

    def forward(self, image_features: torch.Tensor | None, vector: torch.Tensor) -> torch.Tensor:
        if self.net is None:
            return vector
        return torch.cat([self.net(image_features), vector], dim=-1)


class Actor(nn.Module):
    def __init__(self, image_dim: int, vector_dim: int, action_dim: int, cfg: AgentConfig):
        super().__init__()
        self.trunk = Trunk(image_dim, cfg.feature_dim)
        in_dim = (cfg.feature_dim if image_dim else 0) + vector_dim
        self.net = mlp(in_dim, cfg.hidden_dim, cfg.hidden_layers, 2 * action_dim)
        self.log_std_min, self.log_std_max = cfg.log_std_min, cfg.log_std_max

    def forward(self, image_features, vector) -> tuple[torch.Tensor, torch.Tensor]:
        *body, head = self.net
        x = self.trunk(image_features, vector)
        for layer in body:
            x = layer(x)
        mean, log_std = float32_head(head, x).chunk(2, dim=-1)
        # Soft bound on log std (as in SAC implementations): keeps exp() finite and gradients alive.
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1)
        return mean, log_std


def squashed_sample(mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor | None = None):
    """a = tanh(mean + std * eps); returns (a, log pi(a)) with the tanh change-of-variables correction."""
    if eps is None:
        eps = torch.randn_like(mean)
    u = mean + log_std.exp() * eps
    gaussian_log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), numerically stable.
    correction = (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
    return torch.tanh(u), gaussian_log_prob - correction


class Critic(nn.Module):
    def __init__(self, image_dim: int, vector_dim: int, action_dim: int, cfg: AgentConfig):
        super().__init__()
        self.trunk = Trunk(image_dim, cfg.feature_dim)
        in_dim = (cfg.feature_dim if image_dim else 0) + vector_dim + action_dim
        n, h = cfg.num_critics, cfg.hidden_dim
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(cfg.hidden_layers):
            layers.append(EnsembleLinear(n, d, h))
            if cfg.critic_layernorm:
                layers.append(nn.LayerNorm(h))
            layers.append(nn.ReLU())
            d = h
        layers.append(EnsembleLinear(n, d, 1))
        self.heads = nn.Sequential(*layers)
        self.n = n

    def forward(self, image_features, vector, action) -> torch.Tensor:
        x = torch.cat([self.trunk(image_features, vector), action], dim=-1).unsqueeze(0).expand(self.n, -1, -1)
        *body, head = self.heads
        for layer in body:
            x = layer(x)
        return float32_head(head, x).squeeze(-1)  # (n, B)


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam as one fused kernel over all parameters: the same maths, measured ~5% of a state-sized update
    faster on a 2-core CPU (the per-parameter loop costs more than the arithmetic at these sizes). A checkpoint
    made before keeps the unfused setting it was saved with (Optimizer.load_state_dict restores it)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}


def nchw_float(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, H, W) float32 view in channels-last memory (what oneDNN convs want)."""
    return images.permute(0, 3, 1, 2).float()


class DrQAgent(nn.Module):
    """SAC/DrQ over a dict observation space: uint8 HxWx3 images plus float vectors."""

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Box, cfg: AgentConfig | None = None, device: str | torch.device = "cpu",
                 encoder_meta: dict | None = None):
        """`encoder_meta` builds the frozen pretrained encoder without its file (a checkpoint carries both)."""
        super().__init__()
        self.cfg = cfg = cfg or AgentConfig()
        if cfg.target_subset > cfg.num_critics:
            raise ValueError(f"agent.target_subset ({cfg.target_subset}) exceeds agent.num_critics ({cfg.num_critics})")
        if cfg.actor_q not in ("min", "mean"):
            raise ValueError(f"agent.actor_q must be 'min' or 'mean', got {cfg.actor_q!r}")
        if not 0 <= cfg.policy_average <= 1:
            raise ValueError(f"agent.policy_average must be in [0, 1], got {cfg.policy_average}")
        if cfg.feature_noise < 0 or (cfg.feature_noise > 0 and cfg.encoder != "pretrained"):
            raise ValueError(f"agent.feature_noise (std, >= 0) is for agent.encoder=pretrained's features, got "
                             f"{cfg.feature_noise} with encoder {cfg.encoder!r}")
        if cfg.precision not in PRECISIONS:
            raise ValueError(f"agent.precision must be one of {sorted(PRECISIONS)}, got {cfg.precision!r}")
        self.device = torch.device(device)
        self._matmul_dtype = PRECISIONS[cfg.precision]
        self.frozen: FrozenStateEncoder | None = None
        if cfg.estimated_state and cfg.encoder != "pretrained":
            raise ValueError(f"agent.estimated_state needs agent.encoder=pretrained (the encoder that estimates the state), got {cfg.encoder!r}")
        if cfg.encoder == "pretrained":
            if encoder_meta is not None:
                self.frozen = FrozenStateEncoder(build_encoder(encoder_meta), encoder_meta, self.device, cfg.estimated_state,
                                                 cfg.encoder_features)
            else:
                self.frozen = load_encoder(cfg.encoder_weights, observation_space, self.device, cfg.estimated_state,
                                           cfg.encoder_features)
            self.frozen_encoder = self.frozen.net  # a submodule: checkpoints carry its weights
            observation_space = self.frozen.feature_space(observation_space)
        self.learning_space = observation_space  # what the replay stores: features instead of images when frozen
        self.image_keys = image_keys_of(observation_space)
        vectors = [k for k in observation_space.spaces if k not in self.image_keys]
        if set(cfg.actor_only_keys) & set(cfg.critic_only_keys):
            raise ValueError(f"agent.actor_only_keys and agent.critic_only_keys share {sorted(set(cfg.actor_only_keys) & set(cfg.critic_only_keys))}")
        actor_only = [k for k in vectors if k in cfg.actor_only_keys]
        shared = [k for k in vectors if k not in cfg.actor_only_keys and k not in cfg.critic_only_keys]
        self.critic_only_keys = [k for k in vectors if k in cfg.critic_only_keys]
        self.actor_keys = actor_only + shared
        # One vector [actor-only | shared | critic-only]: the actor reads the leading part, the critic the trailing.
        self.vector_keys = self.actor_keys + self.critic_only_keys
        self.action_dim = int(np.prod(action_space.shape))
        width = {k: int(np.prod(observation_space[k].shape)) for k in self.vector_keys}
        self.actor_vector_dim = sum(width[k] for k in self.actor_keys)
        self.actor_only_dim = sum(width[k] for k in actor_only)
        vector_dim = sum(width.values()) - self.actor_only_dim  # the critic's part
        # The columns of `image_features` in the vector (agent.feature_noise); None without them.
        start = sum(width[k] for k in self.vector_keys[: self.vector_keys.index(FEATURE_KEY)]) if FEATURE_KEY in width else None
        self._feature_columns = None if start is None else slice(start, start + width[FEATURE_KEY])
        self.encoders = nn.ModuleDict(
            {
                k: build_image_encoder(cfg.encoder, observation_space[k].shape, cfg.frame_stack, cfg.encoder_weights)
                for k in self.image_keys
            }
        )
        image_dim = sum(enc.out_dim for enc in self.encoders.values())
        self.actor = Actor(image_dim, self.actor_vector_dim, self.action_dim, cfg)
        self.critic = Critic(image_dim, vector_dim, self.action_dim, cfg)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_average = copy.deepcopy(self.actor).requires_grad_(False) if cfg.policy_average > 0 else None
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.init_temperature)))
        self.target_entropy = float(cfg.target_entropy if cfg.target_entropy is not None else -self.action_dim)
        self.to(self.device)
        if cfg.channels_last:
            self.encoders.to(memory_format=torch.channels_last)
        trainable_encoder = [p for p in self.encoders.parameters() if p.requires_grad]
        self.critic_opt = adam([*trainable_encoder, *self.critic.parameters()], cfg.critic_lr)
        self.actor_opt = adam(self.actor.parameters(), cfg.actor_lr)
        self.alpha_opt = adam([self.log_alpha], cfg.alpha_lr)
        self._target_pairs = (list(self.critic_target.parameters()), list(self.critic.parameters()))
        self._average_pairs = (list(self.actor_average.parameters()), list(self.actor.parameters())) if self.actor_average is not None else None
        # Compiled, the augmentation gather, uint8->float, normalisation and encoder fuse into few passes.
        self._encode = torch.compile(self._encode_images) if cfg.compile else self._encode_images
        self._augment_encode = torch.compile(self._augment_and_encode) if cfg.compile else self._augment_and_encode

    # -- inputs --------------------------------------------------------------------------------------
    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def check_trainable(self) -> None:
        """For the training roles: a critic that would see neither the actor-only keys nor any critic-only
        key (actor_only_keys set, and an env without the privileged state: a real arm without a tracker)
        sees only the joints and cannot learn the task. Acting does not need the critic."""
        actor_only = [k for k in self.actor_keys if k in self.cfg.actor_only_keys]
        if actor_only and self.cfg.critic_only_keys and not self.critic_only_keys:
            raise ValueError(
                f"agent.actor_only_keys={actor_only} hides them from the critic, and this env has none of "
                f"agent.critic_only_keys={list(self.cfg.critic_only_keys)}: the critic would see only the joints. "
                f"Set agent.actor_only_keys=[] (and agent.critic_only_keys=[]) here, e.g. on an arm without a tracker")

    def observe(self, obs: dict[str, np.ndarray], batched: bool = False) -> dict[str, np.ndarray]:
        """An env observation as the agent learns from it: with a frozen encoder, images become features."""
        if self.frozen is None or FEATURE_KEY in obs:
            return obs
        return self.frozen.featurize(obs, batched=batched)

    def to_tensors(self, obs: dict[str, np.ndarray], keys: list[str] | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Numpy batch -> (uint8 frames (B, K, H, W, C), concatenated float vector (B, D)) of `keys`
        (default: every vector key, the critic's view; the actor's is the leading `actor_vector_dim`).

        On the CPU `torch.as_tensor` shares numpy's memory: no copy of the images."""
        keys = self.vector_keys if keys is None else keys
        images = {k: torch.as_tensor(obs[k], device=self.device) for k in self.image_keys}
        if keys:
            vector = torch.cat([torch.as_tensor(obs[k], device=self.device, dtype=torch.float32).flatten(1) for k in keys], dim=-1)
        else:
            vector = torch.zeros(len(next(iter(obs.values()))), 0, device=self.device)
        return images, vector

    def _actor_view(self, vector: torch.Tensor) -> torch.Tensor:
        return vector[:, : self.actor_vector_dim]

    def _critic_view(self, vector: torch.Tensor) -> torch.Tensor:
        return vector[:, self.actor_only_dim :]

    def _encode_images(self, images: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.image_keys:
            return None
        return torch.cat([self.encoders[k](images[k]) for k in self.image_keys], dim=-1)

    def _augment_and_encode(self, images: dict[str, torch.Tensor], shifts: dict[str, torch.Tensor] | None) -> torch.Tensor | None:
        return self._encode_images(self._augment(images, shifts))

    def _augment(self, images: dict[str, torch.Tensor], shifts: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """Shift uint8 frames (B, K, H, W, C), merge frames into channels, view as float (B, K*C, H, W)."""
        return {
            k: nchw_float(random_shift(img, self.cfg.augment_pad, None if shifts is None else shifts[k]))
            for k, img in images.items()
        }

    # -- acting --------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray:
        """One observation (no batch axis; images as (K, H, W, C) frame stacks) -> action in [-1, 1].
        Reads only what the actor sees: critic-only keys may be absent (a real arm without a tracker).
        Deterministic acting uses the actor's weight average when the agent keeps one (agent.policy_average)."""
        batched = {k: np.asarray(v)[None] for k, v in self.observe(obs).items()}
        images, vector = self.to_tensors(batched, self.actor_keys)
        features = self._encode({k: nchw_float(merge_frames(v)) for k, v in images.items()})
        actor = self.actor_average if deterministic and self.actor_average is not None else self.actor
        mean, log_std = actor(features, vector)
        action = torch.tanh(mean) if deterministic else squashed_sample(mean, log_std)[0]
        return action[0].cpu().numpy().astype(np.float32)

    # -- learning ------------------------------------------------------------------------------------
    def update(self, batch: Batch, noise: dict[str, Any] | None = None) -> dict[str, float]:
        """One SAC/DrQ update. `noise` fixes the random draws (shifts, eps, target subset) for tests."""
        noise = noise or {}
        images, vector = self.to_tensors(batch.obs)
        next_images, next_vector = self.to_tensors(batch.next_obs)
        action = torch.as_tensor(batch.action, device=self.device)
        reward = torch.as_tensor(batch.reward, device=self.device)
        discount = torch.as_tensor(batch.discount, device=self.device)
        b = len(action)
        if self.image_keys and "shift_obs" not in noise:
            noise["shift_obs"] = {k: draw_shifts(b, self.cfg.augment_pad, device=self.device) for k in self.image_keys}
            noise["shift_next"] = {k: draw_shifts(b, self.cfg.augment_pad, device=self.device) for k in self.image_keys}

        if self.cfg.feature_noise > 0 and self._feature_columns is not None:
            vector = self.with_feature_noise(vector, noise.get("features_obs"))
            next_vector = self.with_feature_noise(next_vector, noise.get("features_next"))
        # Critic (and encoder): features of obs carry gradients; next-obs features do not.
        features = self._augment_encode(images, noise.get("shift_obs"))
        with torch.no_grad():
            next_features = self._augment_encode(next_images, noise.get("shift_next"))
        metrics = self.update_critic(features, vector, action, reward, discount, next_features, next_vector, noise)
        # Actor and temperature see detached features: the encoder learns from the critic only.
        detached = None if features is None else features.detach()
        demo = None
        if self.cfg.bc_weight > 0 and batch.demo is not None and batch.demo.any():
            demo = torch.as_tensor(batch.demo, device=self.device)
        metrics.update(self.update_actor_and_alpha(detached, vector, noise.get("eps_actor"), demo, action))
        self.update_target()
        # One device sync per update, at its end: a GPU runs the whole update while the CPU queues it.
        return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))

    def with_feature_noise(self, vector: torch.Tensor, draw: torch.Tensor | None = None) -> torch.Tensor:
        """`vector` with agent.feature_noise times `draw` (default: standard normal) added to its image_features."""
        columns = self._feature_columns
        if draw is None:
            draw = torch.randn(len(vector), columns.stop - columns.start, device=vector.device)
        vector = vector.clone()
        vector[:, columns] += self.cfg.feature_noise * draw
        return vector

    def critic_target_value(self, reward, discount, next_features, next_vector, eps=None, subset=None) -> torch.Tensor:
        with torch.no_grad():
            mean, log_std = self.actor(next_features, self._actor_view(next_vector))
            next_action, next_log_prob = squashed_sample(mean, log_std, eps)
            target_q = self.critic_target(next_features, self._critic_view(next_vector), next_action)
            if subset is None:
                subset = torch.randperm(self.cfg.num_critics, device=self.device)[: self.cfg.target_subset]
            min_q = target_q[subset].min(dim=0).values
            return reward + discount * (min_q - self.alpha.detach() * next_log_prob)

    def update_critic(self, features, vector, action, reward, discount, next_features, next_vector, noise) -> dict[str, torch.Tensor]:
        """One critic (and encoder) step; metrics as 0-dim tensors (`update` turns them into floats)."""
        with self._autocast():
            target = self.critic_target_value(reward, discount, next_features, next_vector, noise.get("eps_target"), noise.get("subset"))
            q = self.critic(features, self._critic_view(vector), action)
        # Sum over critics of each critic's mean squared error (as Q1 and Q2 losses are summed in SAC).
        critic_loss = (q - target.unsqueeze(0)).pow(2).mean(dim=1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        return {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean(), "target_q_mean": target.mean()}

    def update_actor_and_alpha(self, features, vector, eps=None, demo=None, batch_action=None) -> dict[str, torch.Tensor]:
        """One actor and temperature step; metrics as 0-dim tensors (`update` turns them into floats).
        `demo` (B,) bool flags the demo rows of the batch, whose `batch_action` the BC term clones."""
        with self._autocast():
            mean, log_std = self.actor(features, self._actor_view(vector))
            action, log_prob = squashed_sample(mean, log_std, eps)
            # The actor needs dQ/da only: with the critic's parameters frozen, autograd skips their gradients
            # (which the critic would discard anyway).
            self.critic.requires_grad_(False)
            try:
                q = self.critic(features, self._critic_view(vector), action)
            finally:
                self.critic.requires_grad_(True)
        q = q.min(dim=0).values if self.cfg.actor_q == "min" else q.mean(dim=0)
        alpha = self.alpha.detach()
        actor_loss = (alpha * log_prob - q).mean()
        extra: dict[str, torch.Tensor] = {}
        if demo is not None:
            bc_loss, kept = self._demo_bc_loss(features, vector, mean, q.detach(), demo, batch_action)
            actor_loss = actor_loss / q.detach().abs().mean().clamp_min(1e-3) + self.cfg.bc_weight * bc_loss
            extra = {"bc_loss": bc_loss.detach(), "bc_kept": kept}
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        return {
            "actor_loss": actor_loss.detach(),
            "alpha_loss": alpha_loss.detach(),
            "alpha": self.alpha.detach(),
            "entropy": -log_prob.detach().mean(),
            **extra,
        }

    def _demo_bc_loss(self, features, vector, mean, q_policy, demo, batch_action) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared error between the policy's mean action and the demo action on the demo rows the critic
        rates better than the policy's own action (all demo rows without the filter); and the kept share."""
        rows = demo.nonzero().squeeze(1)
        demo_action = batch_action[rows]
        keep = torch.ones(len(rows), device=self.device)
        if self.cfg.bc_q_filter:
            with torch.no_grad(), self._autocast():  # the critic on the demo rows only
                q_demo = self.critic(None if features is None else features[rows], self._critic_view(vector[rows]), demo_action)
                q_demo = q_demo.min(dim=0).values if self.cfg.actor_q == "min" else q_demo.mean(dim=0)
                keep = (q_demo > q_policy[rows]).float()
        error = (torch.tanh(mean[rows]) - demo_action).pow(2).sum(dim=-1)
        return (error * keep).mean(), keep.mean()

    def _autocast(self):
        """The update's forward passes in `agent.precision` (a no-op context for float32)."""
        if self._matmul_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._matmul_dtype)

    @torch.no_grad()
    def update_target(self) -> None:
        # One multi-tensor op instead of a Python loop of small ones (measured: ~0.8 ms of a 15 ms CPU update).
        torch._foreach_lerp_(*self._target_pairs, self.cfg.tau)
        if self._average_pairs is not None:
            torch._foreach_lerp_(*self._average_pairs, self.cfg.policy_average)

    # -- state ---------------------------------------------------------------------------------------
    def with_policy_average(self, model: dict[str, Any]) -> dict[str, Any]:
        """A model state fitted to this agent's `policy_average`: one saved without the actor's weight average
        (a run made before it was the recipe's default, resumed now) starts the average from its actor; one
        saved with it, loaded where policy_average is 0, leaves it out."""
        prefix = "actor_average."
        saved = any(k.startswith(prefix) for k in model)
        if self.actor_average is not None and not saved:
            return {**model, **{prefix + k[len("actor."):]: v for k, v in model.items() if k.startswith("actor.")}}
        if self.actor_average is None and saved:
            return {k: v for k, v in model.items() if not k.startswith(prefix)}
        return model

    def training_state(self) -> dict[str, Any]:
        return {
            "model": self.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(self.with_policy_average(state["model"]))
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
