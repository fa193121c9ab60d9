"""Tissue masks and regions on synthetic slides with tissue at known positions."""

from __future__ import annotations

import numpy as np
import pytest
from slide_testkit import tissue_image, write_pyramid_tiff

from wsi_downsample._types import Region
from wsi_downsample.slides import detect_tissue, find_tissue_regions, open_slide, tissue_mask
from wsi_downsample.slides.tissue import clean_mask

# (x0, y0, x1, y1) level-0 boxes on a 2048 x 1536 slide at 0.5 um/px; the last is debris
CORES = [(1200, 900, 1800, 1400), (200, 300, 900, 700)]
DEBRIS = (100, 1300, 110, 1310)


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    img = tissue_image((1536, 2048), CORES + [DEBRIS])
    out = tmp_path_factory.mktemp("tissue") / "cores.tif"
    return write_pyramid_tiff(out, img, factors=(1, 4, 16), tile=256, mpp=0.5)


def test_tissue_mask_level_choice_and_pixels(slide_path) -> None:
    with open_slide(slide_path) as slide:
        mask, ds = tissue_mask(slide)  # 8 um/px on a 0.5 um/px slide: the 16x level
        assert ds == 16.0 and mask.shape == (96, 128) and mask.dtype == bool
        expected = np.zeros((96, 128), bool)
        for x0, y0, x1, y1 in CORES:
            expected[y0 // 16 : -(-y1 // 16), x0 // 16 : -(-x1 // 16)] = True
        # only the mask pixels straddling a core edge may differ
        assert (mask & ~expected).sum() == 0
        assert expected.sum() - mask.sum() <= 2 * (44 + 25 + 38 + 32)
        mask4, ds4 = tissue_mask(slide, mpp=2.0)
        assert ds4 == 4.0 and mask4.shape == (384, 512)


def test_two_cores_in_reading_order(slide_path) -> None:
    for backend in ("tiffslide", "openslide"):
        with open_slide(slide_path, backend=backend) as slide:
            regions = find_tissue_regions(slide)
        assert [r.index for r in regions] == [0, 1]
        truth = sorted(CORES, key=lambda b: (b[1], b[0]))
        for region, (x0, y0, x1, y1) in zip(regions, truth, strict=True):
            # boxes match the core within one 16-px mask pixel (edge pixels mostly glass
            # average to pale pink and may drop out)
            got = (region.x0, region.y0, region.x1, region.y1)
            assert all(abs(g - t) < 16 for g, t in zip(got, (x0, y0, x1, y1), strict=True))
            true_area = (x1 - x0) * (y1 - y0)
            assert abs(region.area - true_area) <= 2 * 16 * (x1 - x0 + y1 - y0)
            assert region.area <= (region.x1 - region.x0) * (region.y1 - region.y0)


def test_pad_clips_to_slide_and_small_min_area_keeps_debris(slide_path) -> None:
    with open_slide(slide_path) as slide:
        padded = find_tissue_regions(slide, pad=400)
        assert (padded[0].x0, padded[0].y0, padded[0].x1) == (0, 0, 1296)  # 192 - 400 -> 0
        assert padded[1].x1 == 2048 and padded[1].y1 == 1536
        # the 10x10 px (5x5 um) debris survives only with mask resolution and no size floor
        fine = find_tissue_regions(slide, mpp=2.0, min_area_um2=0.0, smooth_px=0)
        assert len(fine) == 3
        assert fine[2] == Region(2, 100, 1300, 112, 1312, fine[2].area)


def test_blank_slide_has_no_regions(tmp_path) -> None:
    blank = write_pyramid_tiff(tmp_path / "blank.tif", tissue_image((512, 512), []), tile=128)
    with open_slide(blank) as slide:
        assert find_tissue_regions(slide) == []
        mask, _ = tissue_mask(slide)
        assert not mask.any()


def test_plain_image_is_one_region(tmp_path) -> None:
    from PIL import Image

    Image.fromarray(tissue_image((300, 400), [(0, 0, 10, 10)])).save(tmp_path / "tile.png")
    with open_slide(tmp_path / "tile.png") as slide:
        assert find_tissue_regions(slide) == [Region(0, 0, 0, 400, 300, 120000.0)]


def test_no_mpp_uses_area_fraction(tmp_path) -> None:
    path = write_pyramid_tiff(
        tmp_path / "nompp.tif", tissue_image((1536, 2048), CORES), factors=(1, 4), mpp=None
    )
    with open_slide(path) as slide:
        assert slide.mpp is None
        regions = find_tissue_regions(slide, max_side=512)  # ds 4 from max_side alone
        assert [(r.x0, r.y0, r.x1, r.y1) for r in regions] == [
            (200, 300, 900, 700),
            (1200, 900, 1800, 1400),
        ]


def test_detect_tissue_thresholds() -> None:
    # glass (saturation 0.01) next to pale pink (0.1): Otsu splits them
    pale = np.zeros((4, 8, 3), np.uint8)
    pale[:, :4], pale[:, 4:] = (238, 236, 237), (210, 189, 200)
    assert detect_tissue(pale).tolist() == [[False] * 4 + [True] * 4] * 4
    # dense tissue (0.3 and 0.6): Otsu would split it, the threshold is clamped to 0.2
    dense = np.zeros((4, 8, 3), np.uint8)
    dense[:, :4], dense[:, 4:] = (200, 140, 180), (200, 80, 160)
    assert detect_tissue(dense).all()
    # near-black padding and near-white glass are never tissue, whatever their saturation
    odd = np.array([[(20, 0, 10), (250, 222, 240), (120, 40, 100)]], np.uint8)
    assert detect_tissue(odd).tolist() == [[False, False, True]]
    # a blank (white) image: nothing is tissue
    assert not detect_tissue(np.full((8, 8, 3), 244, np.uint8)).any()


def test_clean_mask_keeps_border_tissue_and_fills_holes() -> None:
    mask = np.zeros((40, 40), bool)
    mask[0:20, 0:20] = True  # touches the border
    mask[8:12, 8:12] = False  # a hole
    mask[30, 30] = True  # a speck
    out = clean_mask(mask, min_pixels=5, smooth_px=2)
    expected = np.zeros((40, 40), bool)
    expected[0:20, 0:20] = True
    expected[19, 19] = False  # opening with a 3x3 cross rounds the one inner corner
    assert np.array_equal(out, expected)
