"""DrQ random shifts: bounds, replicate padding, one shift per sample, independence."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robolearn.agents.augment import draw_shifts, merge_frames, random_shift, random_warp, warp_matrices
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


# -- camera-like warps (the encoder's pretraining) -------------------------------------------------------
def test_warp_of_nothing_is_the_image_itself():
    x = frames(k=1)[:, 0]
    assert torch.equal(random_warp(x, 0.0, 0.0, 0.0), x)
    assert torch.equal(random_warp(x, 0.0, 0.0, 0.0, warp_matrices(len(x), 0.0, 0.0, 0.0)), x)


def test_warp_shifts_turns_and_keeps_dtype():
    x = torch.zeros(1, 84, 84, 1, dtype=torch.uint8)
    x[0, 40, 30] = 255
    shift = torch.tensor([[[1.0, 0.0, -2 * 10 / 84], [0.0, 1.0, 0.0]]])  # a tenth of the width, to the right
    out = random_warp(x, 0, 0, 0, shift)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert (out[0, :, :, 0] == out.max()).nonzero().tolist() == [[40, 40]]
    quarter_turn = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]])
    y = torch.zeros(1, 8, 8, 1)
    y[0, 1, 6] = 1.0  # row 1, column 6: read back at row 1, column 1 (the output samples the source turned)
    assert (random_warp(y, 0, 0, 0, quarter_turn)[0, :, :, 0] > 0.5).nonzero().tolist() == [[1, 1]]


def test_warp_draws_stay_within_their_ranges_and_differ_per_image():
    m = warp_matrices(2000, degrees=6.0, translate=0.1, scale=0.05)
    zoom = 1 / torch.linalg.det(m[:, :, :2]).sqrt()
    angle = torch.atan2(m[:, 1, 0], m[:, 0, 0]) * 180 / torch.pi
    assert zoom.min() >= 0.95 - 1e-5 and zoom.max() <= 1.05 + 1e-5 and zoom.std() > 0.02
    assert angle.abs().max() <= 6.0 + 1e-4 and angle.abs().max() > 5.5
    assert m[:, :, 2].abs().max() <= 0.2 + 1e-6 and m[:, :, 2].abs().max() > 0.19
    x = frames(b=4, k=1, h=32, w=32)[:, 0]
    out = random_warp(x, 6.0, 0.1, 0.05)
    assert not torch.equal(out[0], x[0]) and not torch.equal(out[0], out[1])
