"""In-memory sampler: bilinear images (== F.interpolate on a uniform grid), nearest labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wsi_downsample.deformation.grid import saliency_to_grid, uniform_grid
from wsi_downsample.deformation.sampler import normalize_grid, sample_image, sample_labels


@pytest.mark.parametrize(
    ("src", "dst"), [((37, 53), (10, 14)), ((12, 9), (30, 25)), ((8, 8), (8, 8))]
)
def test_uniform_grid_sampling_equals_interpolate(src, dst):
    torch.manual_seed(0)
    image = torch.rand(2, 3, *src, dtype=torch.float64)
    grid = uniform_grid((0, 0, src[1], src[0]), dst, dtype=torch.float64)
    got = sample_image(image, grid.expand(2, *dst, 2))
    ref = F.interpolate(image, size=dst, mode="bilinear", align_corners=False, antialias=False)
    assert (got - ref).abs().max().item() < 1e-5


def test_origin_and_downsample_map_level0_to_the_array():
    torch.manual_seed(1)
    level0 = torch.rand(1, 1, 64, 96, dtype=torch.float64)
    level1 = F.avg_pool2d(level0, 2)  # 32 x 48 at downsample 2
    crop = level1[..., 5:25, 10:40]  # starts at level-0 (20, 10)
    grid = uniform_grid((24, 14, 76, 46), (7, 9), dtype=torch.float64)[None]
    whole = sample_image(level1, grid, downsample=2.0)
    part = sample_image(crop, grid, origin_xy=(20.0, 10.0), downsample=2.0)
    assert torch.allclose(whole, part, atol=1e-12)
    norm = normalize_grid(grid, (32, 48), downsample=2.0)
    x0, y0 = 24 + 52 / 18, 14 + 32 / 14  # first sample, level 0
    expected = [2 * (x0 / 2) / 48 - 1, 2 * (y0 / 2) / 32 - 1]
    assert norm[0, 0, 0].tolist() == pytest.approx(expected, abs=1e-12)


def test_labels_take_the_pixel_holding_each_point():
    labels = torch.arange(12).reshape(1, 3, 4)
    pts = torch.tensor([[[0.0, 0.0], [0.999, 0.5], [1.0, 0.5], [3.5, 2.999], [9.0, -3.0]]])
    got = sample_labels(labels, pts[:, None])
    assert got.tolist() == [[[0, 0, 1, 11, 3]]]  # floor, then clamped into the array


def test_sampled_labels_never_invent_classes():
    torch.manual_seed(2)
    labels = torch.tensor([0, 3, 7], dtype=torch.uint8)[torch.randint(0, 3, (1, 50, 70))]
    d = torch.rand(1, 1, 6, 8) + 0.05
    grid = saliency_to_grid(d / d.sum(), (0, 0, 70, 50), (17, 23), sigma=1.5, radius=3)
    got = sample_labels(labels, grid)
    assert got.dtype == torch.uint8
    assert set(got.unique().tolist()) <= {0, 3, 7}


def test_gradients_reach_the_grid():
    torch.manual_seed(3)
    image = torch.rand(1, 3, 20, 30)
    grid = uniform_grid((0, 0, 30, 20), (5, 6))[None].clone().requires_grad_(True)
    sample_image(image, grid).sum().backward()
    assert grid.grad is not None
    assert torch.isfinite(grid.grad).all() and (grid.grad.abs() > 0).float().mean() > 0.9
