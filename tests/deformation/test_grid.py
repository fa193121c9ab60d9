"""Eq. 3 grid: exact lattice for a uniform density, linear extrapolation, pull to a peak."""

from __future__ import annotations

import pytest
import torch

from wsi_downsample.deformation.grid import (
    clamp_to_region,
    density_to_displacement,
    resize_displacement,
    saliency_to_grid,
    uniform_grid,
)
from wsi_downsample.errors import ConfigError


def _uniform(h: int, w: int, n: int = 1) -> torch.Tensor:
    return torch.full((n, 1, h, w), 1.0 / (h * w))


def test_uniform_grid_holds_partition_centres():
    grid = uniform_grid((10, 20, 18, 24), (2, 4))
    assert grid.shape == (2, 4, 2)
    assert grid[..., 0].tolist() == [[11.0, 13.0, 15.0, 17.0]] * 2
    assert grid[..., 1].tolist() == [[21.0] * 4, [23.0] * 4]


@pytest.mark.parametrize("padding", ["replicate", "reflect"])
@pytest.mark.parametrize(
    ("d_shape", "out_shape", "box"),
    [
        ((20, 200), (80, 800), (0, 0, 20000, 2000)),
        ((5, 7), (23, 31), (100, 250, 1301, 1123)),
        ((3, 3), (3, 3), (0.5, 0.25, 9.5, 7.75)),
        ((1, 12), (4, 48), (0, 0, 4800, 400)),
    ],
)
def test_uniform_density_gives_exactly_the_uniform_grid(padding, d_shape, out_shape, box):
    grid = saliency_to_grid(_uniform(*d_shape, n=2), box, out_shape, padding=padding)
    expected = uniform_grid(box, out_shape)
    assert grid.shape == (2, *out_shape, 2)
    assert (grid - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("padding", ["replicate", "reflect"])
def test_uniform_density_leaves_lattice_nodes_in_place(padding):
    # radius 10 on a 4 x 6 lattice: reflect padding has to fold several times
    disp = density_to_displacement(_uniform(4, 6), sigma=4.25, radius=10, padding=padding)
    assert disp.shape == (1, 2, 4, 6)
    assert disp.abs().max().item() < 1e-6


def test_resize_extrapolates_linearly_beyond_outer_centres():
    # a field linear in the node index must come back linear at every output centre,
    # including the ones outside the outermost node centres (no clamping)
    h_d, w_d, h, w = 4, 5, 8, 20
    rows = torch.arange(h_d, dtype=torch.float64)[:, None].expand(h_d, w_d)
    cols = torch.arange(w_d, dtype=torch.float64)[None, :].expand(h_d, w_d)
    field = torch.stack([3.0 * cols + 1.0, -2.0 * rows])[None]
    out = resize_displacement(field, (h, w))
    u = (torch.arange(w, dtype=torch.float64) + 0.5) * w_d / w - 0.5
    v = (torch.arange(h, dtype=torch.float64) + 0.5) * h_d / h - 0.5
    assert torch.allclose(out[0, 0], (3.0 * u + 1.0).expand(h, w), atol=1e-12)
    assert torch.allclose(out[0, 1], (-2.0 * v)[:, None].expand(h, w), atol=1e-12)
    assert u[0] < 0 and u[-1] > w_d - 1  # the outer samples really were extrapolated


def _peaked(h: int, w: int, at: tuple[float, float], weight: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    d = 1.0 + weight * torch.exp(-((xs - at[0]) ** 2 + (ys - at[1]) ** 2) / (2 * 1.5**2))
    return (d / d.sum())[None, None]


def test_peaked_density_pulls_samples_towards_the_peak():
    box, point = (0, 0, 400, 400), torch.tensor([140.0, 220.0])
    uniform = saliency_to_grid(_uniform(20, 20), box, (40, 40))[0]
    peaked = saliency_to_grid(_peaked(20, 20, (7.0, 11.0), 20.0), box, (40, 40))[0]
    near_u = (uniform - point).norm(dim=-1)
    near_p = (peaked - point).norm(dim=-1)
    # samples within 60 px of the peak: mean distance falls by more than 20 %
    local = near_u < 60
    assert near_p[local].mean() < 0.8 * near_u[local].mean()
    # and more samples land within 30 px of it (denser sampling there)
    assert int((near_p < 30).sum()) >= 2 * int((near_u < 30).sum())


def test_grid_stays_inside_region_and_monotone():
    box = (100, 50, 900, 450)
    d = _peaked(10, 20, (1.0, 1.0), 500.0)  # strong pull to a corner: extrapolation overshoots
    grid = saliency_to_grid(d, box, (40, 80))[0]
    # the same grid before the clamp (eq. 3 nodes, resized, on the uniform lattice)
    disp = resize_displacement(density_to_displacement(d), (40, 80))[0].permute(1, 2, 0)
    raw = uniform_grid(box, (40, 80)) + disp * torch.tensor([800 / 20, 400 / 10])
    outside = (raw[..., 0] < 100) | (raw[..., 1] < 50)
    assert int(outside.sum()) > 0  # the premise: the raw grid leaves the region
    # the clamp moved exactly those points onto the box's edges and kept the others
    assert torch.equal(grid[~outside], raw[~outside])
    assert torch.equal(grid[outside], torch.maximum(raw[outside], torch.tensor([100.0, 50.0])))
    assert (raw[..., 0] < 900).all() and (raw[..., 1] < 450).all()  # the far edge is not hit
    # monotone along rows and columns, before and after the clamp
    for g in (raw, grid):
        assert (g[:, 1:, 0] >= g[:, :-1, 0]).all()
        assert (g[1:, :, 1] >= g[:-1, :, 1]).all()


def test_grid_is_differentiable_wrt_density():
    logits = torch.randn(1, 1, 6, 8, requires_grad=True)
    d = torch.softmax(logits.reshape(1, -1), 1).reshape(1, 1, 6, 8)
    grid = saliency_to_grid(d, (0, 0, 80, 60), (12, 16), sigma=1.5, radius=3)
    (grid[..., 0] * torch.arange(16.0)).sum().backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_unknown_padding_lists_the_choices():
    with pytest.raises(ConfigError, match="available: replicate, reflect"):
        saliency_to_grid(_uniform(4, 4), (0, 0, 8, 8), (4, 4), padding="zeros")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clamp_is_half_open_no_point_on_x1_or_y1(dtype):
    box = (100, 200, 612, 456)
    pts = torch.tensor([[50.0, 900.0], [612.0, 456.0], [611.5, 300.0], [700.0, 199.0]], dtype=dtype)
    out = clamp_to_region(pts, box)
    # the last pixel inside is column 611 / row 455: floor never reaches 612 or 456
    assert out[:, 0].floor().max().item() == 611 and out[:, 1].floor().max().item() == 455
    assert out[0].tolist() == [
        100.0,
        torch.nextafter(torch.tensor(456.0, dtype=dtype), torch.tensor(0.0, dtype=dtype)).item(),
    ]
    assert out[2, 0].item() == 611.5 and out[3, 1].item() == 200.0


def test_strong_edge_density_keeps_samples_inside_the_box():
    d = torch.full((1, 1, 8, 8), 1e-6)
    d[..., :, -1] = 1.0  # all mass on the right border column
    grid = saliency_to_grid(d / d.sum(), (0, 0, 64, 64), (16, 16), sigma=2.0, radius=4)
    assert grid[..., 0].max().item() < 64 and grid[..., 0].floor().max().item() == 63
