"""Slide-backed deformed sampler: equality with the in-memory sampler, tile counts, level
choice, gradients, cache bounds, backends."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from wsi_downsample.deformation.grid import saliency_to_grid, uniform_grid
from wsi_downsample.deformation.sampler import sample_image, sample_labels
from wsi_downsample.deformation.slide_sampler import (
    SlideSampler,
    choose_levels,
    footprint_tiles,
    local_spacing,
)
from wsi_downsample.deformation.tile_cache import ArrayTileSource, ReadStats, TileCache
from wsi_downsample.errors import LevelError, MissingMppError
from wsi_downsample.slides.open import open_slide

SIDES = (1024, 256, 64)  # downsamples 1, 4, 16
TILE = 32


def write_pyramid(path: Path, levels: list[np.ndarray], *, mpp: float | None = 0.5) -> Path:
    """An Aperio-style tiled zlib SVS: level 0, a stripped thumbnail, then lower levels."""
    desc = "Aperio Image Library v12.0.0\nsynthetic|AppMag = 20"
    desc += f"|MPP = {mpp}" if mpp else ""
    kw = {"photometric": "rgb", "metadata": None, "compression": "zlib"}
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], tile=(TILE, TILE), description=desc, **kw)
        tw.write(levels[-1][:16, :16], photometric="rgb", metadata=None, description="thumb")
        for level in levels[1:]:
            tw.write(level, tile=(TILE, TILE), subfiletype=0, **kw)
    return path


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """Independent random content per level, so the level a value came from is visible."""
    rng = np.random.default_rng(0)
    levels = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in SIDES]
    return write_pyramid(tmp_path_factory.mktemp("pyr") / "p.svs", levels), levels


def _reference(level: np.ndarray, grid: torch.Tensor, ds: float) -> torch.Tensor:
    """The in-memory sampler on the level loaded whole, in float64 unless the grid needs grad
    (float32 grid_sample's normalise/unnormalise round trip alone costs ~1e-5 at x ~ 1000)."""
    dtype = grid.dtype if grid.requires_grad else torch.float64
    image = torch.from_numpy(level).permute(2, 0, 1)[None].to(dtype) / 255.0
    return sample_image(image, grid[None].to(dtype), downsample=ds)[0]


def _random_grid(h: int, w: int, lo: float = -40.0, hi: float = 1080.0, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(h, w, 2, generator=gen)


@pytest.mark.parametrize("backend", ["tiffslide", "openslide"])
@pytest.mark.parametrize("level", [0, 1, 2])
def test_fixed_level_equals_in_memory_sampler(pyramid, backend, level):
    path, levels = pyramid
    grid = _random_grid(17, 23)  # points outside the slide too: border padding
    with open_slide(path, backend=backend) as slide, SlideSampler(slide, source_level=level) as s:
        out = s.sample(grid)
    assert out.image.shape == (3, 17, 23)
    assert torch.equal(out.levels, torch.full((17, 23), level))
    ref = _reference(levels[level], grid, 4.0**level)
    assert (out.image - ref).abs().max().item() < 1e-5


def test_backends_give_the_same_values(pyramid):
    path, _ = pyramid
    grid = _random_grid(9, 9, seed=3)
    results = []
    for backend in ("tiffslide", "openslide"):
        with open_slide(path, backend=backend) as slide:
            results.append(
                SlideSampler(slide, level_choice="adaptive", source_level=0).sample(grid)
            )
    assert torch.equal(results[0].image, results[1].image)
    assert results[0].stats.as_dict() == results[1].stats.as_dict()


def test_uniform_grid_reads_exactly_the_minimum_tiles(pyramid):
    path, _ = pyramid
    # level 1 (ds 4): x = 256 + 64 j + 32 -> u = 71.5 + 16 j -> columns 71..184 -> tiles 2..5
    grid = uniform_grid((256, 256, 768, 768), (8, 8))
    with open_slide(path) as slide, SlideSampler(slide, source_level=1) as s:
        out = s.sample(grid)
        minimum = footprint_tiles(slide, grid, out.levels)
    assert out.stats.tiles_decoded == 16 == len(minimum[1])
    assert sorted(map(tuple, minimum[1].tolist())) == [
        (r, c) for r in range(2, 6) for c in range(2, 6)
    ]
    assert out.stats.pixels_decoded == 16 * TILE * TILE
    assert out.stats.level(1).points == 64 and out.stats.cache_hits == 0


def _brute_force_tiles(grid: torch.Tensor, ds: float, side: int) -> set[tuple[int, int]]:
    """Tiles of every neighbour pixel with a non-zero bilinear weight, one point at a time."""
    tiles = set()
    for x, y in grid.reshape(-1, 2).tolist():
        u, v = x / ds - 0.5, y / ds - 0.5
        for i in {math.floor(v), math.ceil(v)}:
            for j in {math.floor(u), math.ceil(u)}:
                ci, cj = min(max(i, 0), side - 1), min(max(j, 0), side - 1)
                tiles.add((ci // TILE, cj // TILE))
    return tiles


def test_concentrated_grid_reads_exactly_the_minimum_tiles(pyramid):
    path, _ = pyramid
    density = torch.full((1, 1, 8, 8), 0.1)
    density[..., 2:4, 5:7] = 20.0  # most mass on 1/16 of the region
    grid = saliency_to_grid(density, (0, 0, 1024, 1024), (24, 24), sigma=1.5, radius=4)[0]
    with open_slide(path) as slide, SlideSampler(slide, source_level=0) as s:
        out = s.sample(grid)
        minimum = footprint_tiles(slide, grid, out.levels)
    expected = _brute_force_tiles(grid, 1.0, SIDES[0])
    assert set(map(tuple, minimum[0].tolist())) == expected
    assert out.stats.tiles_decoded == len(expected) < 24 * 24
    assert out.stats.level(0).bytes_read > 0


def test_gradients_reach_the_grid_and_equal_grid_sample_gradients(pyramid):
    path, levels = pyramid
    grid = _random_grid(5, 6, lo=10.0, hi=1000.0, seed=5).double().requires_grad_(True)
    weights = torch.randn(3, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with open_slide(path) as slide, SlideSampler(slide, source_level=1) as s:
        out = s.sample(grid)
        (out.image * weights).sum().backward()
        full = footprint_tiles(slide, grid, out.levels, with_grad=True)
    assert out.stats.tiles_decoded == len(full[1])  # all 2 x 2 neighbours: the gradient needs them
    ours = grid.grad.clone()
    grid.grad = None
    (_reference(levels[1], grid, 4.0) * weights).sum().backward()
    assert ours.abs().min() > 0
    torch.testing.assert_close(ours, grid.grad, rtol=1e-6, atol=1e-9)


def test_gradcheck_against_finite_differences(pyramid):
    path, _ = pyramid
    grid = _random_grid(2, 3, lo=50.0, hi=900.0, seed=7).double().requires_grad_(True)
    with open_slide(path) as slide, SlideSampler(slide, source_level=1) as s:
        assert torch.autograd.gradcheck(lambda g: s.sample(g).image, (grid,), eps=1e-4, atol=1e-6)


def test_local_spacing_of_a_uniform_grid():
    grid = uniform_grid((0, 0, 640, 320), (10, 20))  # 64 x 16 level-0 px per step
    spacing = local_spacing(grid)
    assert torch.allclose(spacing, torch.full((10, 20), 32.0, dtype=torch.float64))
    geo = local_spacing(grid, "geomean")
    assert torch.allclose(geo, torch.full((10, 20), math.sqrt(32.0 * 32.0), dtype=torch.float64))
    anis = local_spacing(uniform_grid((0, 0, 640, 160), (10, 20)), "geomean")
    assert torch.allclose(anis, torch.full((10, 20), math.sqrt(32.0 * 16.0), dtype=torch.float64))


@pytest.mark.parametrize(
    ("step", "source", "expected"),
    [(16.0, 0, 2), (15.9, 0, 1), (8.0, 0, 1), (3.0, 0, 0), (3.0, 1, 1), (64.0, 2, 2), (4.0, 0, 1)],
)
def test_adaptive_level_for_a_uniform_grid(step, source, expected):
    grid = uniform_grid((0, 0, 40 * step, 30 * step), (30, 40))
    levels = choose_levels(grid, (1.0, 4.0, 16.0), source, "adaptive")
    assert torch.equal(levels, torch.full((30, 40), expected))
    assert torch.equal(
        choose_levels(grid, (1.0, 4.0, 16.0), source, "fixed"), torch.full((30, 40), source)
    )


def test_adaptive_tolerates_aperio_downsamples():
    grid = uniform_grid((0, 0, 640, 640), (40, 40))  # spacing 16
    assert choose_levels(grid, (1.0, 4.0003, 16.0012), 0, "adaptive").unique().tolist() == [2]


def test_adaptive_sampling_reads_each_point_from_its_level(pyramid):
    path, levels = pyramid
    # steps of 2, 8 and 40 level-0 px along both axes: dense top-left, sparse bottom-right
    axis = torch.cat(
        [1 + 2 * torch.arange(40), 88 + 8 * torch.arange(20), 280 + 40 * torch.arange(19)]
    )
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).float()
    with (
        open_slide(path) as slide,
        SlideSampler(slide, level_choice="adaptive", source_level=0) as s,
    ):
        out = s.sample(grid)
    spacing = local_spacing(grid)
    assert set(out.levels.unique().tolist()) == {0, 1, 2}
    for k in range(3):
        mask = out.levels == k
        assert bool((spacing[mask] >= 4.0**k * 0.999).all())
        if k < 2:  # the coarsest level that fits: the next one is too coarse
            assert bool((spacing[mask] < 4.0 ** (k + 1)).all())
        ref = _reference(levels[k], grid, 4.0**k)
        assert (out.image - ref).abs()[:, mask].max() < 1e-5
        assert out.stats.level(k).points == int(mask.sum())
    with open_slide(path) as slide:
        fixed = SlideSampler(slide, source_level=0).sample(grid)
    assert fixed.stats.tiles_decoded > out.stats.tiles_decoded


def test_cache_is_bounded_and_hits_are_counted(pyramid):
    path, _ = pyramid
    grid = _random_grid(20, 20, lo=0.0, hi=1024.0, seed=9)
    with open_slide(path) as slide, SlideSampler(slide, source_level=0, cache_tiles=5) as s:
        first = s.sample(grid)
        assert len(s.cache) == 5 <= s.cache.max_tiles
    assert first.stats.tiles_decoded > 100
    with open_slide(path) as slide, SlideSampler(slide, source_level=1, cache_tiles=1000) as s:
        a, b = s.sample(grid), s.sample(grid)
        assert torch.equal(a.image, b.image)
        assert b.stats.tiles_decoded == 0 and b.stats.cache_hits == a.stats.tiles_decoded == 64
        assert s.stats.tiles_decoded == 64 and s.stats.cache_hits == 64  # accumulated


def test_bad_arguments_are_reported(pyramid):
    path, _ = pyramid
    with open_slide(path) as slide:
        with pytest.raises(ValueError, match="level choice"):
            SlideSampler(slide, level_choice="mip")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="spacing rule"):
            SlideSampler(slide, spacing="mean")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="not both"):
            SlideSampler(slide, source_level=0, source_mpp=0.5)
        with pytest.raises(ValueError, match=r"\(h, w, 2\)"):
            SlideSampler(slide).sample(torch.zeros(4, 2))


def test_tile_cache_lru_order():
    cache = TileCache(2)
    tiles = {k: np.full((1, 1), k[2], np.uint8) for k in [(0, 0, 1), (0, 0, 2), (0, 0, 3)]}
    cache.put((0, 0, 1), tiles[(0, 0, 1)])
    cache.put((0, 0, 2), tiles[(0, 0, 2)])
    assert cache.get((0, 0, 1)) is not None  # 1 becomes most recent
    cache.put((0, 0, 3), tiles[(0, 0, 3)])
    assert (0, 0, 2) not in cache and (0, 0, 1) in cache and len(cache) == 2
    TileCache(0).put((0, 0, 1), tiles[(0, 0, 1)])


def test_read_stats_accumulate():
    a, b = ReadStats(), ReadStats()
    a.level(0).tiles_decoded, a.level(1).bytes_read = 3, 100
    b.level(1).bytes_read, b.level(1).cache_hits = 50, 2
    total = a + b
    assert total.tiles_decoded == 3 and total.bytes_read == 150 and total.cache_hits == 2
    assert total.as_dict()["per_level"]["1"]["bytes_read"] == 150


def test_array_source_and_labels_match_in_memory(pyramid):
    _, levels = pyramid
    source = ArrayTileSource(levels, [1.0, 4.0, 16.0], tiles_hw=[(TILE, TILE)] * 3)
    grid = _random_grid(11, 13, seed=11)
    out = SlideSampler(source, source_level=2).sample(grid)
    assert (out.image - _reference(levels[2], grid, 16.0)).abs().max() < 1e-5
    labels = [lv[..., 0] % 6 for lv in levels]
    mask = ArrayTileSource(labels, [1.0, 4.0, 16.0], tiles_hw=[(TILE, TILE)] * 3)
    got = SlideSampler(mask, source_level=1).sample_labels(grid)
    ref = sample_labels(torch.from_numpy(labels[1])[None], grid[None], downsample=4.0)[0]
    assert torch.equal(got.values, ref.long())
    minimum = footprint_tiles(mask, grid, got.levels, nearest=True)
    assert got.stats.tiles_decoded == len(minimum[1])


def test_source_level_from_mpp(pyramid, tmp_path):
    path, levels = pyramid
    with open_slide(path) as slide:  # level mpps 0.5, 2, 8
        assert SlideSampler(slide).source_level == 0
        assert SlideSampler(slide, source_mpp=1.0).source_level == 0  # tie: finer wins
        assert SlideSampler(slide, source_mpp=1.1).source_level == 1
        assert SlideSampler(slide, source_mpp=6.0).source_level == 2
        with pytest.raises(LevelError, match="levels 0..2"):
            SlideSampler(slide, source_level=3)
    nompp = write_pyramid(tmp_path / "n.svs", levels, mpp=None)
    with open_slide(nompp) as slide, pytest.raises(MissingMppError, match="source_level"):
        SlideSampler(slide)


@pytest.mark.real
def test_real_svs_matches_read_region_and_grid_sample(real_file):
    path = real_file("openslide-cmu1-small-region/CMU-1-Small-Region.svs")
    box = (300, 500, 1500, 2300)  # x0, y0, x1, y1
    density = torch.ones(1, 1, 6, 4)
    density[..., 1:3, 1:3] = 10.0
    grid = saliency_to_grid(density, box, (48, 32))[0]
    for backend in ("tiffslide", "openslide"):
        with open_slide(path, backend=backend) as slide:
            out = SlideSampler(slide, source_level=0).sample(grid)
            region = slide.read_region(box[:2], 0, (box[2] - box[0], box[3] - box[1]))
        image = torch.from_numpy(region).permute(2, 0, 1)[None].double() / 255.0
        ref = sample_image(image, grid[None].double(), origin_xy=box[:2])[0]
        assert (out.image - ref).abs().max() < 1e-5, backend
        # the density pulls points inwards: x in [414, 1386], y in [643, 2086] -> 240-px tile
        # columns 1..5 and rows 2..8
        assert out.stats.tiles_decoded == 35 == len(footprint_tiles(slide, grid, out.levels)[0])


def test_zarr_level_cache_samples_like_its_level(pyramid, tmp_path):
    from wsi_downsample.slides.zarr_cache import open_level_cache

    path, levels = pyramid
    grid = _random_grid(12, 10, seed=13)
    with open_slide(path) as slide:
        cache = open_level_cache(
            slide, tmp_path / "l1.zarr", level=1, chunk_hw=(64, 64), progress=False
        )
        direct = SlideSampler(slide, source_level=1).sample(grid)
    source = ArrayTileSource.from_level_cache(cache)
    assert source.levels[0].downsample == 4.0 and source.levels[0].tile_hw == (64, 64)
    out = SlideSampler(source, source_mpp=2.0).sample(grid)  # cache mpp 2.0 = level 0 here
    assert torch.equal(out.image, direct.image)
    assert out.stats.tiles_decoded == len(footprint_tiles(source, grid, out.levels)[0])


def test_levels_override(pyramid):
    path, levels = pyramid
    grid = _random_grid(4, 5, seed=17)
    chosen = torch.tensor([0, 1, 2, 1, 0]).repeat(4, 1)
    with open_slide(path) as slide, SlideSampler(slide, source_level=0) as s:
        out = s.sample(grid, levels=chosen)
        with pytest.raises(ValueError, match="do not match"):
            s.sample(grid, levels=chosen[:2])
    assert torch.equal(out.levels, chosen)
    for k in range(3):
        ref = _reference(levels[k], grid, 4.0**k)
        assert (out.image - ref).abs()[:, chosen == k].max() < 1e-5


def test_synthetic_jpeg_slide_and_mask(synthetic_slide):
    """JPEG tiles: each backend equals the in-memory sampler on its own decode of the level;
    across backends the decoders may differ (tolerance 2/255; here they agree exactly)."""
    from wsi_downsample.slides.masks import open_mask

    r = synthetic_slide.regions[0]
    grid = uniform_grid((r.x0, r.y0, r.x1, r.y1), (40, 50)) + 0.37
    images = []
    for backend in ("tiffslide", "openslide"):
        with open_slide(synthetic_slide.slide_path, backend=backend) as slide:
            out = SlideSampler(slide, source_level=1).sample(grid)
            level = np.asarray(slide.level_array(1)[:])
        assert (out.image - _reference(level, grid, 4.0)).abs().max() < 1e-5
        images.append(out.image)
    assert (images[0] - images[1]).abs().max() <= 2 / 255
    with open_mask(synthetic_slide.mask_path) as mask:
        got = SlideSampler(mask, source_level=0).sample_labels(grid)
        labels = torch.from_numpy(np.asarray(mask.level_array(0)[:]))
    ref = sample_labels(labels[None], grid[None])[0].long()
    assert torch.equal(got.values, ref) and set(ref.unique().tolist()) >= {0, 1}
