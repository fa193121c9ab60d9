"""The slide layer on the project's synthetic Aperio-style slide and its label mask."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("wsi_downsample.synthetic")

from wsi_downsample._types import Mpp  # noqa: E402
from wsi_downsample.slides import (  # noqa: E402
    check_decodable,
    find_tissue_regions,
    open_mask,
    open_slide,
)


def test_tiffslide_and_openslide_agree_on_every_level(synthetic_slide) -> None:
    with (
        open_slide(synthetic_slide.slide_path) as ts,
        open_slide(synthetic_slide.slide_path, backend="openslide") as os_,
    ):
        assert ts.backend == "tiffslide" and ts.vendor == os_.vendor == "aperio"
        assert ts.level_dimensions == os_.level_dimensions
        assert ts.level_dimensions[0] == (2048, 1536)
        assert ts.mpp == os_.mpp == Mpp(0.5, 0.5)
        assert sorted(ts.associated_images) == sorted(os_.associated_images)
        check_decodable(ts)
        for level, (w, h) in enumerate(ts.level_dimensions):
            assert np.array_equal(
                ts.read_region((0, 0), level, (w, h)), os_.read_region((0, 0), level, (w, h))
            )
        rows, cols = ts.tile_grid_hw(1)
        for r in range(rows):
            for c in range(cols):
                assert ts.tile_nbytes(1, r, c) == os_.tile_nbytes(1, r, c) > 0


def test_regions_recovered_within_one_mask_pixel(synthetic_slide) -> None:
    truth = synthetic_slide.regions
    with open_slide(synthetic_slide.slide_path) as slide:
        found = find_tissue_regions(slide)  # 8 um/px mask on 0.5 um/px: 16 level-0 px
    assert len(found) == len(truth) >= 2
    for got, want in zip(found, truth, strict=True):
        assert got.index == want.index
        for g, t in zip(
            (got.x0, got.y0, got.x1, got.y1), (want.x0, want.y0, want.x1, want.y1), strict=True
        ):
            assert abs(g - t) < 16
        assert got.area == pytest.approx(want.area, rel=0.05)


def test_mask_matches_slide_frame_and_labels(synthetic_slide) -> None:
    with (
        open_slide(synthetic_slide.slide_path) as slide,
        open_mask(synthetic_slide.mask_path, slide=slide) as mask,
    ):
        assert mask.dimensions == slide.dimensions and mask.mpp == Mpp(0.5, 0.5)
        counts = np.zeros(len(synthetic_slide.class_counts), np.int64)
        h, w = mask.levels[0].shape_hw
        for y in range(0, h, 512):
            labels = mask.read_region((0, y), 0, (w, min(512, h - y)))
            counts += np.bincount(labels.ravel(), minlength=counts.size)
        assert tuple(int(c) for c in counts) == synthetic_slide.class_counts
