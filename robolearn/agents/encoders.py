"""Image encoders: the DrQ-v2 conv encoder (trained) and frozen pretrained torchvision backbones."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn


class DrQv2Encoder(nn.Module):
    """DrQ-v2's encoder: four 3x3 convs with 32 channels (the first with stride 2), ReLU, flatten."""

    def __init__(self, in_channels: int, height: int, width: int):
        super().__init__()
        self.convnet = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, stride=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
        )
        h, w = (height - 3) // 2 + 1 - 6, (width - 3) // 2 + 1 - 6
        self.out_dim = 32 * h * w
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight, nn.init.calculate_gain("relu"))
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, C, H, W) float in [0, 255]. Features are flattened in (H, W, C) order: for
        channels-last activations that is a view, where (C, H, W) order would copy them (and their
        gradients). The order is a fixed permutation of the trunk's inputs, so it changes no maths."""
        return self.convnet(images / 255.0 - 0.5).permute(0, 2, 3, 1).flatten(1)


class FrozenPretrainedEncoder(nn.Module):
    """A torchvision classifier backbone with its head removed, frozen; each stacked frame is encoded
    separately (the backbone expects 3 channels) and the features concatenated."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, name: str, frames: int, weights_path: str | None):
        super().__init__()
        import torchvision

        try:
            builder = getattr(torchvision.models, name)
        except AttributeError:
            raise ValueError(f"agent.encoder: torchvision has no model {name!r}") from None
        if weights_path is not None:
            path = Path(weights_path).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"agent.encoder_weights: no such file {path}")
            model = builder(weights=None)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        else:
            # Random weights unless the user passes a file: we never download at run time.
            model = builder(weights=None)
        out_dim = model.fc.in_features if hasattr(model, "fc") else None
        if out_dim is None:
            raise ValueError(f"agent.encoder: {name!r} has no `fc` head to remove (use a ResNet)")
        model.fc = nn.Identity()
        self.backbone = model.eval().requires_grad_(False)
        self.frames = frames
        self.out_dim = out_dim * frames
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1) * 255)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: batch-norm statistics never move
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        frames = images.reshape(b * self.frames, 3, *images.shape[-2:])
        return self.backbone((frames - self.mean) / self.std).reshape(b, self.out_dim)


def build_image_encoder(kind: str, image_shape: tuple[int, ...], frames: int, weights_path: str | None) -> nn.Module:
    height, width, channels = image_shape
    if kind == "drqv2":
        return DrQv2Encoder(channels * frames, height, width)
    return FrozenPretrainedEncoder(kind, frames, weights_path)
