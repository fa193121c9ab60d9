"""Exact tiled inverse of the sampling grid, the scatter baseline, output frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from shapely import Polygon, contains_xy

from wsi_downsample.deformation import _quads as qd
from wsi_downsample.deformation import inverse as inv
from wsi_downsample.deformation._tiles import output_nodes
from wsi_downsample.deformation.grid import saliency_to_grid, uniform_grid
from wsi_downsample.deformation.inverse import (
    OutputFrame,
    auto_output_downsample,
    invert_grid,
    invert_labels,
    iter_inverse_tiles,
    scatter_nearest_inverse,
)
from wsi_downsample.deformation.sampler import sample_labels
from wsi_downsample.metrics import intrinsic_iou


def _blocks(shape_hw: tuple[int, int], k: int, num_classes: int, seed: int) -> np.ndarray:
    """Labels constant on the k x k blocks of an integer-factor partition."""
    assert shape_hw[0] % k == 0 and shape_hw[1] % k == 0
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, num_classes, (shape_hw[0] // k, shape_hw[1] // k))
    return np.kron(coarse, np.ones((k, k), dtype=np.int64)).astype(np.uint8)


def _warped_grid(box, out_hw, seed: int = 0) -> torch.Tensor:
    """A smooth non-uniform grid from a random positive density."""
    gen = torch.Generator().manual_seed(seed)
    d = torch.rand(1, 1, max(out_hw[0] // 4, 1), max(out_hw[1] // 4, 1), generator=gen) ** 4
    d = torch.nn.functional.avg_pool2d(d + 0.02, 3, 1, 1, count_include_pad=False)
    return saliency_to_grid(d / d.sum(), box, out_hw, sigma=2.0, radius=5)[0]


def _smooth_labels(shape_hw, num_classes: int, seed: int, sigma: float = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((num_classes, *shape_hw))
    field = ndimage.gaussian_filter(noise, sigma, axes=(1, 2))
    return field.argmax(0).astype(np.uint8)


@pytest.mark.parametrize("k", [3, 4, 5])
def test_block_labels_on_uniform_grid_come_back_exactly(k):
    labels = _blocks((60, 120), k, 4, seed=k)
    grid = uniform_grid((0, 0, 120, 60), (60 // k, 120 // k))
    sampled = sample_labels(torch.from_numpy(labels)[None], grid[None])[0]
    nearest = invert_labels(
        sampled, grid, labels.shape, num_classes=4, tile_size=32, interpolation="nearest"
    )
    assert (nearest == labels).all()
    if k % 2:  # odd k: every sample centre is a pixel centre, scatter has no distance ties
        assert (scatter_nearest_inverse(sampled, grid, labels.shape, tile_size=32) == labels).all()
    # bilinear one-hot voting rounds corners where 3+ blocks of two classes meet (saddles) ...
    bilinear = invert_labels(sampled, grid, labels.shape, num_classes=4, tile_size=32)
    assert 0.85 < intrinsic_iou(bilinear, labels, 4) < 1.0  # random blocks: many saddles
    # ... but is exact on blocks that only change along one axis (straight boundaries)
    stripes = np.repeat(labels[:1], 60, axis=0)
    sampled = sample_labels(torch.from_numpy(stripes)[None], grid[None])[0]
    assert (invert_labels(sampled, grid, stripes.shape, num_classes=4) == stripes).all()


def test_inverse_coordinates_reproduce_pixel_centres():
    """Forward map of the recovered (quad, lam, mu) lands on the pixel centre."""
    grid = _warped_grid((0, 0, 400, 300), (30, 40), seed=1)
    quads = qd.build_quads(output_nodes(grid, (0, 0), 1.0))
    tile = (0, 300, 0, 400)
    owner = qd.tile_owner(quads, tile)
    nodes = quads.nodes
    inside_hull = owner >= 0
    assert inside_hull.mean() > 0.9
    rr, cc = np.divmod(np.arange(300 * 400), 400)
    x, y = (cc + 0.5).astype(np.float32), (rr + 0.5).astype(np.float32)
    gi, gj = qd.first_guess(quads, x, y)  # a deliberately poor start for the walk
    i, j, lam, mu = qd.settle(quads, x, y, gi, gj)
    assert ((i * 39 + j)[inside_hull] == owner[inside_hull]).mean() > 0.999  # shared edges
    p = (
        nodes[i, j] * ((1 - lam) * (1 - mu))[:, None]
        + nodes[i, j + 1] * (lam * (1 - mu))[:, None]
        + nodes[i + 1, j] * ((1 - lam) * mu)[:, None]
        + nodes[i + 1, j + 1] * (lam * mu)[:, None]
    )
    err = np.linalg.norm(p - np.stack([x, y], 1), axis=1)[inside_hull]
    assert np.quantile(err, 0.999) < 1e-4 and err.max() < 5e-3  # float32 coordinates


def test_exact_and_scatter_agree_on_a_smooth_label():
    labels = _smooth_labels((300, 450), 3, seed=2, sigma=40)
    grid = _warped_grid((0, 0, 450, 300), (75, 112), seed=3)
    sampled = sample_labels(torch.from_numpy(labels)[None], grid[None])[0]
    exact = invert_labels(sampled, grid, labels.shape, num_classes=3, tile_size=100)
    scatter = scatter_nearest_inverse(sampled, grid, labels.shape, tile_size=100)
    assert (exact == scatter).mean() > 0.99
    assert (exact == labels).mean() > (scatter == labels).mean() > 0.98


def test_exact_and_scatter_agree_at_sample_centres():
    labels = _blocks((75, 105), 5, 5, seed=4)
    grid = uniform_grid((0, 0, 105, 75), (15, 21))
    sampled = sample_labels(torch.from_numpy(labels)[None], grid[None])[0].numpy()
    exact = invert_labels(sampled, grid, labels.shape, num_classes=5)
    scatter = scatter_nearest_inverse(sampled, grid, labels.shape)
    rows, cols = (
        np.floor(grid[..., 1].numpy()).astype(int),
        np.floor(grid[..., 0].numpy()).astype(int),
    )
    assert (exact[rows, cols] == sampled).all() and (scatter[rows, cols] == sampled).all()


def test_probabilities_are_interpolated_before_the_argmax():
    # two samples, class 1 wins at both ends only by a little: the mix favours class 0 nowhere,
    # but a score that rises across the cell flips the argmax at the exact crossing point
    grid = uniform_grid((0, 0, 20, 2), (1, 2)).expand(2, 2, 2).clone()
    grid[1, :, 1] = 1.5
    grid[0, :, 1] = 0.5
    scores = np.zeros((2, 2, 2), dtype=np.float32)
    scores[0, :, 0], scores[1, :, 0] = 0.8, 0.2  # left sample (x=5): class 0
    scores[0, :, 1], scores[1, :, 1] = 0.1, 0.9  # right sample (x=15): class 1
    out = invert_grid(scores, grid, (2, 20))
    # score0 - score1 = 0.6 - 1.4 t, t = (x - 5) / 10: zero at x = 9.29 -> pixels 0..8 class 0
    assert out[0].tolist() == [0] * 9 + [1] * 11


def test_tiling_and_workers_do_not_change_the_result():
    labels = _smooth_labels((150, 230), 4, seed=5)
    grid = _warped_grid((0, 0, 230, 150), (30, 46), seed=6)
    sampled = sample_labels(torch.from_numpy(labels)[None], grid[None])[0]
    ref = invert_labels(sampled, grid, labels.shape, num_classes=4, tile_size=512)
    for tile_size, workers in [(37, 1), (64, 2)]:
        got = invert_labels(
            sampled, grid, labels.shape, num_classes=4, tile_size=tile_size, workers=workers
        )
        assert (got == ref).all()
    tiles = list(iter_inverse_tiles(np.ones((1, 30, 46)), grid, (150, 230), tile_size=64))
    assert [(t.row0, t.col0, t.labels.shape) for t in tiles[:5]] == [
        (0, 0, (64, 64)),
        (0, 64, (64, 64)),
        (0, 128, (64, 64)),
        (0, 192, (64, 38)),
        (64, 0, (64, 64)),
    ]
    assert sum(t.labels.size for t in tiles) == 150 * 230


def test_output_downsample_and_origin():
    labels = _blocks((40, 64), 4, 3, seed=7)
    box = (1000, 2000, 1064, 2040)  # the region's level-0 box
    grid = uniform_grid(box, (10, 16))
    sampled = sample_labels(torch.from_numpy(labels)[None], grid[None], origin_xy=box[:2])[0]
    frame = OutputFrame.for_region(box, 2)
    assert frame == OutputFrame(1000, 500, (20, 32), 2.0) and frame.origin_xy == (1000.0, 2000.0)
    out = invert_labels(
        sampled, grid, frame.shape_hw, num_classes=3, origin_xy=frame.origin_xy, downsample=2
    )
    assert (out == labels[1::2, 1::2]).all()  # output centres sit at level-0 odd offsets
    odd = OutputFrame.for_region((3, 5, 10, 12), 4)
    assert (odd.row0, odd.col0, odd.shape_hw) == (1, 0, (2, 3))


def _hull_and_border(grid: np.ndarray) -> tuple[Polygon, np.ndarray]:
    """The grid's outline as a polygon, and its border samples' (row, col) indices."""
    h, w = grid.shape[:2]
    ring = [(0, c) for c in range(w)] + [(r, w - 1) for r in range(1, h)]
    ring += [(h - 1, c) for c in range(w - 2, -1, -1)] + [(r, 0) for r in range(h - 2, 0, -1)]
    return Polygon([tuple(grid[r, c]) for r, c in ring]), np.array(ring)


def test_pixels_outside_the_hull_take_the_nearest_border_sample():
    # a sheared grid: the Euclidean nearest border sample is often not the corner of the
    # border quad beside the pixel (on a uniform grid both notions coincide)
    i, j = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    grid = np.stack([10.0 + 10 * j + 8 * i, 10.0 + 10 * i], -1)
    labels = i * 5 + j
    out = invert_labels(labels, grid, (50, 90), num_classes=20)
    # (0.5, 35.5): nearest border sample (18, 20) = row 1 -> 5, not (26, 30) or (34, 40)
    assert out[35, 0] == 5 and out[0, 0] == 0 and out[49, 89] == 19
    hull, border = _hull_and_border(grid)
    rr, cc = np.divmod(np.arange(50 * 90), 90)
    centres = np.stack([cc + 0.5, rr + 0.5], 1)
    dist = np.linalg.norm(centres[:, None] - grid[border[:, 0], border[:, 1]][None], axis=2)
    first, second = np.sort(dist, 1)[:, :2].T
    outside = ~contains_xy(hull, centres[:, 0], centres[:, 1]) & (second - first > 1e-3)
    nearest = labels[tuple(border[dist.argmin(1)].T)]
    assert outside.sum() > 2000
    assert (out.reshape(-1)[outside] == nearest[outside]).all()
    # the premise: the rounded border-quad corner (the old rule) differs for many pixels
    row_band = np.clip(np.round((centres[:, 1] - 10) / 10), 0, 3).astype(int)
    col_band = np.clip(np.round((centres[:, 0] - 10 - 8 * row_band) / 10), 0, 4).astype(int)
    assert (nearest != row_band * 5 + col_band)[outside].sum() > 50


@pytest.mark.parametrize("downsample", [2, 4])
def test_linear_scores_come_back_exactly_inside_a_warped_hull(downsample):
    """A score linear in the level-0 position is bilinear in each quad's (lam, mu), so the
    inverse reproduces it exactly at every output pixel inside the hull, at any D."""
    box = (1000, 600, 1400, 900)
    grid = _warped_grid(box, (24, 32), seed=11).double()
    origin = (1000.0, 600.0)
    frame_hw = (300 // downsample, 400 // downsample)

    def ramp(x, y):  # noqa: ANN001, ANN202
        return 0.7 * (x - 1190.3) - 0.4 * (y - 750.1)

    f = ramp(grid[..., 0], grid[..., 1]).numpy()
    scores = np.stack([f, -f]).astype(np.float32)  # class 0 where the ramp is positive
    got = invert_grid(scores, grid, frame_hw, origin_xy=origin, downsample=downsample)
    rr, cc = np.divmod(np.arange(frame_hw[0] * frame_hw[1]), frame_hw[1])
    x, y = origin[0] + (cc + 0.5) * downsample, origin[1] + (rr + 0.5) * downsample
    hull, _ = _hull_and_border(grid.numpy())
    inside = contains_xy(hull.buffer(-1e-3), x, y)
    value = ramp(x, y)
    clear = inside & (np.abs(value) > 1e-2)  # away from the hull's edge and the zero line
    assert clear.mean() > 0.75 and (value[clear] > 0).any() and (value[clear] < 0).any()
    assert (got.reshape(-1)[clear] == (value[clear] < 0)).all()
    # and the value itself, interpolated with the inverse's own (quad, lam, mu)
    quads = qd.build_quads(output_nodes(grid, origin, float(downsample)))
    px, py = (cc + 0.5).astype(np.float32), (rr + 0.5).astype(np.float32)
    i, j, lam, mu = qd.settle(quads, px, py, *qd.first_guess(quads, px, py))
    interp = (
        f[i, j] * (1 - lam) * (1 - mu)
        + f[i, j + 1] * lam * (1 - mu)
        + f[i + 1, j] * (1 - lam) * mu
        + f[i + 1, j + 1] * lam * mu
    )
    err = np.abs(interp - value)[inside]
    assert err.max() < 2e-3 and np.median(err) < 1e-5  # measured 6e-4, 6e-7 (float32 nodes)


def test_ignore_index_votes_as_its_own_class():
    grid = uniform_grid((0, 0, 30, 10), (1, 3))
    labels = np.array([[1, 255, 2]])
    out = invert_labels(labels, grid, (10, 30), num_classes=3)
    assert out[0].tolist() == [1] * 10 + [255] * 10 + [2] * 10


def test_single_row_grid_uses_nearest_samples():
    grid = uniform_grid((0, 0, 30, 10), (1, 3))[:1]
    out = invert_grid(np.eye(3, dtype=np.float32)[:, None, :], grid, (10, 30))
    assert out[5].tolist() == [0] * 10 + [1] * 10 + [2] * 10


def test_scatter_fills_far_tiles_from_the_nearest_sample():
    grid = uniform_grid((0, 0, 20, 20), (2, 2))
    labels = np.array([[0, 1], [2, 3]])
    out = scatter_nearest_inverse(labels, grid, (200, 200), tile_size=32)
    assert out[199, 199] == 3 and out[199, 0] == 2 and out[0, 199] == 1 and out[100, 5] == 2


def test_mismatched_inputs_raise():
    grid = uniform_grid((0, 0, 10, 10), (2, 2))
    with pytest.raises(ValueError, match="do not match"):
        invert_grid(np.ones((2, 3, 3)), grid, (10, 10))
    with pytest.raises(ValueError, match="outside 0..1"):
        invert_labels(np.array([[0, 5], [1, 1]]), grid, (10, 10), num_classes=2)


@pytest.mark.parametrize(("spacing", "expected"), [(25.0, 4), (7.9, 1), (8.0, 2), (64.0, 16)])
def test_auto_output_downsample(spacing, expected):
    grid = uniform_grid((0, 0, 40 * spacing, 20 * spacing), (20, 40))
    assert auto_output_downsample(grid) == expected


def test_auto_output_downsample_ignores_a_few_squeezed_border_cells():
    grid = uniform_grid((0, 0, 2000 * 10, 2000), (80, 800)).clone()
    grid[0, :5, 0] = grid[0, 0, 0]  # five samples clamped onto one point
    assert auto_output_downsample(grid) == 4


def _brute_force_labels(grid: np.ndarray, labels: np.ndarray, shape_hw):
    """Per pixel: every quad tested; the bilinear one-hot vote of the quad holding it, and
    how many quads hold it (more than one where a non-convex quad's bilinear map folds)."""
    w = labels.shape[1]
    quads = qd.build_quads(grid.astype(np.float32))
    rr, cc = np.divmod(np.arange(shape_hw[0] * shape_hw[1]), shape_hw[1])
    x, y = (cc + 0.5).astype(np.float32), (rr + 0.5).astype(np.float32)
    out, hits = np.full(x.size, -1), np.zeros(x.size, dtype=int)
    coef = quads.coef.reshape(10, -1)
    for q in range(coef.shape[1]):
        lam, mu = qd.solve(np.repeat(coef[:, q : q + 1], x.size, 1), x, y)
        hit = qd.inside(lam, mu)
        hits += hit
        i, j = divmod(q, w - 1)
        lab, m = np.clip(lam[hit], 0, 1), np.clip(mu[hit], 0, 1)
        corners = [labels[i, j], labels[i, j + 1], labels[i + 1, j], labels[i + 1, j + 1]]
        weights = [(1 - lab) * (1 - m), lab * (1 - m), (1 - lab) * m, lab * m]
        pairs = list(zip(weights, corners, strict=True))
        votes = np.stack([sum(wt * (c == k) for wt, c in pairs) for k in range(3)])
        out[hit] = votes.argmax(0)
    return out.reshape(shape_hw), hits.reshape(shape_hw)


def test_matches_brute_force_with_non_convex_quads():
    rng = np.random.default_rng(8)
    ys, xs = np.meshgrid(np.arange(7) * 10.0 + 5, np.arange(9) * 10.0 + 5, indexing="ij")
    grid = np.stack([xs, ys], -1) + rng.uniform(-2, 2, (7, 9, 2))
    grid[3, 4] -= 6.5  # past the diagonal of quad (2, 3): an arrowhead, still no fold
    grid[1, 6] += 6.5  # and quad (1, 6)
    quads = qd.build_quads(grid.astype(np.float32))
    convex = qd.convex(quads.nodes)
    assert (~convex).sum() >= 2
    labels = rng.integers(0, 3, (7, 9))
    got = invert_labels(labels, grid, (90, 90), num_classes=3, tile_size=40)
    ref, hits = _brute_force_labels(grid, labels, (90, 90))
    unique = hits == 1
    assert unique.mean() > 0.55 and (hits > 1).sum() > 0
    assert (got[unique] == ref[unique]).all()


def test_single_class_comes_back_whole():
    grid = _warped_grid((0, 0, 64, 48), (12, 16), seed=9)
    out = invert_labels(np.full((12, 16), 2), grid, (48, 64), num_classes=3)
    assert (out == 2).all()


@pytest.mark.parametrize("num_classes", [5, 20])  # with and without per-quad class pruning
def test_probabilities_match_full_interpolation_everywhere(num_classes):
    grid = _warped_grid((0, 0, 200, 160), (32, 40), seed=10)
    rng = np.random.default_rng(num_classes)
    scores = rng.random((num_classes, 32, 40)).astype(np.float32)
    scores[0, :16] += 2.0  # a region where class 0 wins at every sample
    got = invert_grid(scores, grid, (160, 200), tile_size=64)
    quads = qd.build_quads(output_nodes(grid, (0, 0), 1.0))
    rr, cc = np.divmod(np.arange(160 * 200), 200)
    x, y = (cc + 0.5).astype(np.float32), (rr + 0.5).astype(np.float32)
    i, j, lam, mu = qd.settle(quads, x, y, *qd.first_guess(quads, x, y))
    ref = inv._interpolated_argmax(scores.reshape(num_classes, -1), 40, i, j, lam, mu)
    assert (got == ref.reshape(160, 200)).all()
    assert (got[:60] == 0).all() and len(np.unique(got)) > 3
