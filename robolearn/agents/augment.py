"""DrQ random-shift augmentation: pad by `pad` pixels (edge replicate) and crop back at a random integer
offset per sample, the same offset for every stacked frame of a sample.

The crop is an integer index, not `grid_sample`, and the replicate padding is folded into it: a crop of
the padded image at offset s reads source pixel clamp(i + s - pad, 0, H - 1). It runs on uint8 frames
(B, K, H, W, C) straight from the replay batch and writes (B, H, W, K * C) in the same gather, so frame
merging costs nothing extra; viewed as (B, K * C, H, W) the result is channels-last for the convolutions.
"""

from __future__ import annotations

import torch


def draw_shifts(batch: int, pad: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """(batch, 2) integer offsets (dy, dx) in [0, 2 * pad]; the unshifted crop is (pad, pad)."""
    return torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator, device=device)


def merge_frames(frames: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W, C) -> (B, H, W, K * C): stacked frames become channels, oldest first."""
    b, k, h, w, c = frames.shape
    return frames.permute(0, 2, 3, 1, 4).reshape(b, h, w, k * c)


def random_shift(frames: torch.Tensor, pad: int, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """frames: (B, K, H, W, C), any dtype. Returns shifted, merged images (B, H, W, K * C)."""
    if pad == 0:
        return merge_frames(frames)
    b, k, h, w, c = frames.shape
    if shifts is None:
        shifts = draw_shifts(b, pad, device=frames.device)
    rows = (shifts[:, 0, None] + torch.arange(h, device=frames.device) - pad).clamp_(0, h - 1)  # (B, H)
    cols = (shifts[:, 1, None] + torch.arange(w, device=frames.device) - pad).clamp_(0, w - 1)  # (B, W)
    batch_index = torch.arange(b, device=frames.device)[:, None, None]
    # Advanced indices on dims 0, 2, 3 around the frame slice: the result is laid out (B, H, W, K, C).
    shifted = frames[batch_index, :, rows[:, :, None], cols[:, None, :]]
    return shifted.reshape(b, h, w, k * c)
