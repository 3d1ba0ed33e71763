"""DrQ random shifts: bounds, replicate padding, one shift per sample, independence."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robolearn.agents.augment import draw_shifts, merge_frames, random_shift
from robolearn.bench.reference_drqv2 import grid_sample_shift


def frames(b=6, k=2, h=12, w=12):
    return torch.randint(0, 256, (b, k, h, w, 3), dtype=torch.uint8)


def test_shift_equals_pad_then_crop_for_every_offset():
    x = frames(b=1, k=1)
    padded = F.pad(x[:, 0].permute(0, 3, 1, 2).float(), (4, 4, 4, 4), mode="replicate")
    for dy in range(9):
        for dx in range(9):
            out = random_shift(x, 4, torch.tensor([[dy, dx]]))
            expected = padded[:, :, dy : dy + 12, dx : dx + 12].permute(0, 2, 3, 1)
            assert torch.equal(out.float(), expected)


def test_shift_bounds():
    shifts = draw_shifts(10_000, 4)
    assert shifts.min() == 0 and shifts.max() == 8


def test_frames_of_a_sample_share_a_shift_and_merge_oldest_first():
    x = frames(b=3, k=3)
    shifts = draw_shifts(3, 4)
    out = random_shift(x, 4, shifts)
    assert out.shape == (3, 12, 12, 9)
    for j in range(3):
        assert torch.equal(out[..., 3 * j : 3 * j + 3], random_shift(x[:, j : j + 1], 4, shifts))
    assert torch.equal(random_shift(x, 0), merge_frames(x))


def test_samples_are_shifted_independently_and_obs_next_obs_differ():
    torch.manual_seed(0)
    x = frames(b=64, k=1)
    same = x[:1].expand(64, -1, -1, -1, -1).contiguous()
    out = random_shift(same, 4)
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 20  # 81 possible offsets over 64 samples
    a, b = random_shift(x, 4), random_shift(x, 4)
    assert not torch.equal(a, b)


def test_matches_the_published_grid_sample_shift():
    x = frames(b=5, k=1, h=20, w=20)
    shifts = draw_shifts(5, 4)
    ours = random_shift(x, 4, shifts).float()
    nchw = x[:, 0].permute(0, 3, 1, 2).float()
    theirs = grid_sample_shift(nchw, 4, shifts).permute(0, 2, 3, 1)
    assert torch.allclose(ours, theirs, atol=1e-3)
