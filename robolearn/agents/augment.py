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


def warp_matrices(batch: int, degrees: float, translate: float, scale: float,
                  generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """(batch, 2, 3) affine maps in `affine_grid`'s normalised coordinates (output pixel -> source pixel): a turn
    uniform in +-degrees, a shift uniform in +-translate of the image's size along each axis, a zoom by a factor
    uniform in [1 - scale, 1 + scale]."""
    def uniform(half_width: float) -> torch.Tensor:
        return (torch.rand(batch, generator=generator, device=device) * 2 - 1) * half_width

    angle = uniform(degrees) * (torch.pi / 180)
    zoom = 1 + uniform(scale)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift_x, shift_y = uniform(2 * translate), uniform(2 * translate)  # the image spans [-1, 1]: a fraction f is 2f
    return torch.stack([torch.stack([cos, -sin, shift_x], -1), torch.stack([sin, cos, shift_y], -1)], 1)


def random_warp(images: torch.Tensor, degrees: float, translate: float, scale: float,
                matrices: torch.Tensor | None = None) -> torch.Tensor:
    """images: (B, H, W, C), any dtype. Each image turned, shifted and zoomed by its own draw (warp_matrices), the
    border pixels repeated where the warp looks outside the image; same shape and dtype back. A camera moved a few
    centimetres or turned a few degrees moves the whole image by about this much (parallax aside)."""
    if matrices is None:
        if not (degrees or translate or scale):
            return images
        matrices = warp_matrices(images.shape[0], degrees, translate, scale, device=images.device)
    x = images.permute(0, 3, 1, 2).float()
    grid = torch.nn.functional.affine_grid(matrices.to(x.dtype), list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out.permute(0, 2, 3, 1)
    if not images.dtype.is_floating_point:
        out = out.round_().clamp_(torch.iinfo(images.dtype).min, torch.iinfo(images.dtype).max)
    return out.to(images.dtype).contiguous()
