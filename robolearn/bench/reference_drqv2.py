"""A plain PyTorch SAC/DrQ update in the published DrQ-v2 style: the learner benchmark's baseline.

Written the straightforward way the DrQ-v2 code base is: NCHW float images, augmentation by
`grid_sample` on a padded float image with integer pixel shifts, the published encoder (four 3x3
convs, 32 channels), a Linear+LayerNorm+tanh trunk of width 50, 1024-wide heads, and two separate
critic networks. It computes the same SAC update as `robolearn.agents.DrQAgent` (a test checks the
losses and the updated weights agree given the same weights and random draws), so the benchmark
ratio measures how the update is computed, not what.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from robolearn.agents.drq import squashed_sample


def grid_sample_shift(x: torch.Tensor, pad: int, shifts: torch.Tensor) -> torch.Tensor:
    """DrQ-v2-style shift: replicate-pad, then bilinear `grid_sample` at integer pixel offsets."""
    n, _, h, w = x.shape
    assert h == w
    x = F.pad(x, (pad,) * 4, mode="replicate")
    eps = 1.0 / (h + 2 * pad)
    arange = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * pad, device=x.device)[:h]
    arange = arange.unsqueeze(0).repeat(h, 1).unsqueeze(2)
    base_grid = torch.cat([arange, arange.transpose(1, 0)], dim=2).unsqueeze(0).repeat(n, 1, 1, 1)
    # shifts are (dy, dx); grid coordinates are (x, y).
    shift = shifts.flip(1).to(x.dtype).view(n, 1, 1, 2) * (2.0 / (h + 2 * pad))
    return F.grid_sample(x, base_grid + shift, padding_mode="zeros", align_corners=False)


class ReferenceDrQv2(nn.Module):
    def __init__(self, in_channels: int, image_size: int, action_dim: int, feature_dim: int = 50, hidden_dim: int = 1024,
                 lr: float = 3e-4, tau: float = 0.005, init_temperature: float = 0.1, pad: int = 4):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, stride=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
        )
        side = (image_size - 3) // 2 + 1 - 6
        repr_dim = 32 * side * side
        self.actor_trunk = nn.Sequential(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.actor_policy = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 2 * action_dim),
        )
        self.critic = nn.ModuleDict(
            {
                "trunk": nn.Sequential(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh()),
                "q1": self._q(feature_dim + action_dim, hidden_dim),
                "q2": self._q(feature_dim + action_dim, hidden_dim),
            }
        )
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_temperature)))
        self.target_entropy = -float(action_dim)
        self.tau, self.pad = tau, pad
        self.critic_opt = torch.optim.Adam([*self.encoder.parameters(), *self.critic.parameters()], lr=lr)
        self.actor_opt = torch.optim.Adam([*self.actor_trunk.parameters(), *self.actor_policy.parameters()], lr=lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)

    @staticmethod
    def _q(in_dim: int, hidden_dim: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder(obs / 255.0 - 0.5).flatten(1)

    def policy(self, features: torch.Tensor):
        mean, log_std = self.actor_policy(self.actor_trunk(features)).chunk(2, dim=-1)
        log_std = -5.0 + 0.5 * (2.0 - -5.0) * (torch.tanh(log_std) + 1)
        return mean, log_std

    @staticmethod
    def q_values(critic: nn.ModuleDict, features: torch.Tensor, action: torch.Tensor):
        h = torch.cat([critic["trunk"](features), action], dim=-1)
        return critic["q1"](h).squeeze(-1), critic["q2"](h).squeeze(-1)

    def update(self, obs, action, reward, discount, next_obs, noise: dict) -> dict[str, float]:
        """obs, next_obs: (B, C, H, W) uint8 as the DrQ-v2 replay gives them."""
        obs = grid_sample_shift(obs.float(), self.pad, noise["shift_obs"])
        next_obs = grid_sample_shift(next_obs.float(), self.pad, noise["shift_next"])
        features = self.encode(obs)
        with torch.no_grad():
            next_features = self.encode(next_obs)
            mean, log_std = self.policy(next_features)
            next_action, next_log_prob = squashed_sample(mean, log_std, noise.get("eps_target"))
            tq1, tq2 = self.q_values(self.critic_target, next_features, next_action)
            target = reward + discount * (torch.min(tq1, tq2) - self.log_alpha.exp() * next_log_prob)
        q1, q2 = self.q_values(self.critic, features, action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        mean, log_std = self.policy(features.detach())
        pi, log_prob = squashed_sample(mean, log_std, noise.get("eps_actor"))
        q1, q2 = self.q_values(self.critic, features.detach(), pi)
        alpha = self.log_alpha.exp().detach()
        actor_loss = (alpha * log_prob - torch.min(q1, q2)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self.critic_opt.zero_grad(set_to_none=True)

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.critic_target.parameters()):
                tp.lerp_(p, self.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha_loss": alpha_loss.item()}

    @torch.no_grad()
    def copy_weights_into(self, agent, camera: str) -> None:
        """Give a DrQAgent (one camera, no proprioception, 2 critics, no critic LayerNorm) these weights."""
        for dst, src in zip(agent.encoders[camera].convnet, self.encoder):
            if isinstance(src, nn.Conv2d):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
        def hwc_order(trunk_state: dict) -> dict:
            # Our encoder flattens features in (H, W, C) order, the published one in (C, H, W) order.
            weight = trunk_state["0.weight"]
            side = int(round((weight.shape[1] // 32) ** 0.5))
            hwc = weight.reshape(-1, 32, side, side).permute(0, 2, 3, 1).reshape(weight.shape)
            return {**trunk_state, "0.weight": hwc}

        agent.actor.trunk.net.load_state_dict(hwc_order(self.actor_trunk.state_dict()))
        agent.actor.net.load_state_dict(self.actor_policy.state_dict())
        for critic, ours in ((self.critic, agent.critic), (self.critic_target, agent.critic_target)):
            ours.trunk.net.load_state_dict(hwc_order(critic["trunk"].state_dict()))
            linears = [m for m in ours.heads if hasattr(m, "weight")]
            for i, name in enumerate(("q1", "q2")):
                theirs = [m for m in critic[name] if isinstance(m, nn.Linear)]
                for dst, src in zip(linears, theirs):
                    dst.weight[i].copy_(src.weight.T)
                    dst.bias[i, 0].copy_(src.bias)
        agent.log_alpha.copy_(self.log_alpha)
