"""Low-resolution view X_lr: level choice, exact area averages, pixels read."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F

from wsi_downsample._types import Region
from wsi_downsample.deformation.lowres import area_resize, area_weights, lowres_level, read_lowres
from wsi_downsample.slides.open import open_slide

SIDES = (1024, 256, 64)  # downsamples 1, 4, 16


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """Level 2 is constant on 4 x 4 blocks; levels 0 and 1 hold other values (never read)."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    levels = [
        np.full((1024, 1024, 3), 7, np.uint8),
        np.full((256, 256, 3), 9, np.uint8),
        np.repeat(np.repeat(blocks, 4, 0), 4, 1),
    ]
    levels[2][60:, 50:] = rng.integers(0, 256, (4, 14, 3), dtype=np.uint8)  # not block-constant
    path = tmp_path_factory.mktemp("lowres") / "p.svs"
    kw = {"photometric": "rgb", "metadata": None, "compression": "zlib"}
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], tile=(32, 32), description="Aperio Image Library v12|MPP = 0.5", **kw)
        tw.write(levels[2][:16, :16], photometric="rgb", metadata=None, description="thumb")
        for level in levels[1:]:
            tw.write(level, tile=(32, 32), subfiletype=0, **kw)
    return path, levels


class CountingSlide:
    """A slide proxy recording every window read through ``level_array``."""

    def __init__(self, slide: Any) -> None:
        self.slide, self.reads = slide, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.slide, name)

    def level_array(self, level: int) -> Any:
        array, reads = self.slide.level_array(level), self.reads

        class _View:
            def __getitem__(self, key: Any) -> np.ndarray:
                block = np.asarray(array[key])
                reads.append((level, block.shape[0] * block.shape[1]))
                return block

        return _View()


@pytest.mark.parametrize(
    ("shape_hw", "expected"),
    [
        ((16, 16), 2),
        ((64, 64), 2),
        ((65, 64), 1),
        ((256, 200), 1),
        ((256, 300), 0),
        ((257, 256), 0),
        ((2048, 2048), 0),
    ],
)
def test_lowres_level_is_just_finer_than_the_spacing(shape_hw, expected):
    region = Region(0, 0, 0, 1024, 1024, 1024 * 1024)
    assert lowres_level((1.0, 4.0, 16.0), region, shape_hw) == expected


def test_block_constant_image_averages_exactly_reading_only_the_coarse_level(pyramid):
    path, levels = pyramid
    region = Region(0, 0, 0, 1024, 960, 1.0)  # 16 x 15 cells of 64 level-0 px
    with open_slide(path) as slide:
        counting = CountingSlide(slide)
        view = read_lowres(counting, region, (15, 16))  # type: ignore[arg-type]
    assert view.shape == (3, 15, 16) and view.dtype == torch.float32
    expected = torch.from_numpy(levels[2][:60:4, ::4].astype(np.float32) / 255).permute(2, 0, 1)
    assert torch.equal(view, expected)
    assert counting.reads == [(2, 60 * 64)]  # level 2 only, only the region's pixels


def _brute_force(
    level: np.ndarray, box: tuple[float, ...], shape_hw: tuple[int, int]
) -> np.ndarray:
    """Area average per output cell, one input pixel at a time (independent implementation)."""
    x0, y0, x1, y1 = box
    h, w = shape_hw
    out = np.zeros((h, w, 3))
    for i in range(h):
        a, b = y0 + (y1 - y0) * i / h, y0 + (y1 - y0) * (i + 1) / h
        for j in range(w):
            c, d = x0 + (x1 - x0) * j / w, x0 + (x1 - x0) * (j + 1) / w
            acc, area = np.zeros(3), 0.0
            for p in range(math.floor(a), math.ceil(b)):
                for q in range(math.floor(c), math.ceil(d)):
                    wgt = (min(b, p + 1) - max(a, p)) * (min(d, q + 1) - max(c, q))
                    acc += wgt * level[p, q]
                    area += wgt
            out[i, j] = acc / area
    return out / 255.0


def test_non_integer_factors_average_exactly(pyramid):
    path, levels = pyramid
    region = Region(0, 100, 36, 900, 1000, 1.0)  # spacing 114.3 x 137.7 -> level 2 (ds 16)
    with open_slide(path) as slide:
        view = read_lowres(slide, region, (7, 7))
    box = (100 / 16, 36 / 16, 900 / 16, 1000 / 16)
    ref = _brute_force(levels[2], box, (7, 7))
    np.testing.assert_allclose(view.permute(1, 2, 0).numpy(), ref, atol=1e-6)


def test_integer_factors_equal_interpolate_area():
    image = torch.rand(3, 24, 36, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = area_resize(image, (0, 0, 36, 24), (6, 4))
    ref = F.interpolate(image[None], size=(6, 4), mode="area")[0]
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def test_area_weights_rows_sum_to_one_and_clip_at_the_edge():
    wts = area_weights(0.5, 3.5, 2, 3)  # cells [0.5, 2) and [2, 3.5); pixels 0..2
    expected = torch.tensor([[0.5, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(wts, expected / expected.sum(1, keepdim=True))
    with pytest.raises(ValueError, match="outside"):
        area_weights(5.0, 6.0, 1, 3)


def test_full_resolution_view_is_the_region_itself(pyramid):
    path, _ = pyramid
    region = Region(0, 10, 20, 42, 36, 1.0)
    with open_slide(path) as slide:
        counting = CountingSlide(slide)
        view = read_lowres(counting, region, (16, 32))  # type: ignore[arg-type]
    assert torch.equal(view, torch.full((3, 16, 32), 7 / 255))
    assert counting.reads == [(0, 16 * 32)]


def test_backends_agree(pyramid):
    path, _ = pyramid
    region = Region(0, 64, 128, 1000, 900, 1.0)
    views = []
    for backend in ("tiffslide", "openslide"):
        with open_slide(path, backend=backend) as slide:
            views.append(read_lowres(slide, region, (9, 11)))
    assert torch.equal(views[0], views[1])


@pytest.mark.real
def test_real_svs_block_means(real_file):
    path = real_file("openslide-cmu1-small-region/CMU-1-Small-Region.svs")
    region = Region(0, 600, 900, 1650, 1700, 1.0)
    with open_slide(path) as slide:
        view = read_lowres(slide, region, (20, 35))  # cells of 40 rows x 30 columns
        pixels = slide.read_region((600, 900), 0, (1050, 800)).astype(np.float64)
    ref = pixels.reshape(20, 40, 35, 30, 3).mean(axis=(1, 3)) / 255.0
    np.testing.assert_allclose(view.permute(1, 2, 0).numpy(), ref, atol=1e-6)
