"""The on-disk label canvas: writes in any order, ownership of overlapping boxes, readers."""

from __future__ import annotations

import numpy as np
import pytest

from wsi_downsample.io.canvas import LabelCanvas, TissueOwner, frame_shape
from wsi_downsample.io.mask_tiff import write_label_tiff


def test_frame_shape_is_ceil_of_level0_over_d():
    assert frame_shape((1000, 700), 16) == (44, 63)
    assert frame_shape((1024, 512), 1) == (512, 1024)


def test_tiles_in_any_order_read_back_row_major(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, (300, 200), dtype=np.uint8)
    with LabelCanvas((300, 200), chunk=64, tmp_dir=tmp_path, num_classes=6) as canvas:
        tiles = [(r, c) for r in range(0, 300, 70) for c in range(0, 200, 90)]
        counts = np.zeros(6, np.int64)
        for r, c in reversed(tiles):
            counts += canvas.write(r, c, truth[r : r + 70, c : c + 90])
        assert np.array_equal(canvas.read(0, 0, 300, 200), truth)
        assert np.array_equal(counts, np.bincount(truth.ravel(), minlength=6))
        assert np.array_equal(canvas.class_counts(block=128), counts)
        # tiles sticking out of the raster are clipped
        canvas.write(290, 190, np.full((40, 40), 5, np.uint8))
        assert (canvas.read(290, 190, 10, 10) == 5).all()
    assert not any(tmp_path.iterdir())  # the store is removed


def test_keep_mask_leaves_other_pixels():
    with LabelCanvas((10, 10), chunk=4) as canvas:
        canvas.write(0, 0, np.full((10, 10), 2, np.uint8))
        keep = np.zeros((10, 10), bool)
        keep[:, 5:] = True
        counts = canvas.write(0, 0, np.full((10, 10), 3, np.uint8), keep)
        out = canvas.read(0, 0, 10, 10)
    assert (out[:, :5] == 2).all() and (out[:, 5:] == 3).all()
    assert counts[3] == 50 and counts.sum() == 50


def test_owner_splits_overlapping_boxes_by_nearest_component():
    comp = np.zeros((10, 20), np.int32)
    comp[2:8, 2:9] = 1
    comp[2:8, 11:18] = 2
    owner = TissueOwner(comp, mask_downsample=8.0, dilate_px=2)
    # mask columns 9 and 10 are equally near; each goes to its own side's nearest
    assert owner.owner[5, 9] == 1 and owner.owner[5, 10] == 2
    assert owner.owner[0, 0] == 0  # corner (2, 2) away diagonally: sqrt(8) > 2
    assert owner.owner[5, 0] == 1  # two mask pixels left of component 1
    # an output tile at D=4: pixel centres (c + 0.5) * 4 / 8 -> mask column
    tile = owner.tile(0, 0, (20, 40), 4.0)
    assert tile.shape == (20, 40)
    assert np.array_equal(tile[10, 18:22], [1, 1, 2, 2])


def test_owner_without_tissue_is_all_zero():
    owner = TissueOwner(np.zeros((5, 5), np.int32), 4.0)
    assert not owner.tile(0, 0, (3, 3), 2.0).any()


def test_overlapping_regions_leave_no_seam(tmp_path):
    """Two regions whose boxes overlap write through their owner maps: the result equals
    the two predictions cut along the owner boundary, with no background seam."""
    comp = np.zeros((8, 16), np.int32)
    comp[1:7, 1:8] = 1
    comp[1:7, 8:15] = 2
    owner = TissueOwner(comp, mask_downsample=4.0, dilate_px=1)
    with LabelCanvas((32, 64), chunk=16, tmp_dir=tmp_path) as canvas:
        boxes = {1: (0, 0, 40), 2: (0, 24, 64)}  # row0, col0, col1 at the canvas' D = 1
        values = {1: 1, 2: 3}
        for k in (2, 1):
            _, c0, c1 = boxes[k]
            keep = owner.tile(0, c0, (32, c1 - c0), 1.0) == k
            canvas.write(0, c0, np.full((32, c1 - c0), values[k], np.uint8), keep)
        out = canvas.read(0, 0, 32, 64)
    row = out[16]
    assert (row[4:32] == 1).all() and (row[32:60] == 3).all()
    assert (out[:4] == 0).sum() > 0  # outside every dilated component: background


@pytest.mark.parametrize("factor", [1, 4])
def test_upsampled_reader_feeds_the_mask_writer(tmp_path, factor):
    import tifffile

    small = np.arange(15 * 13, dtype=np.uint8).reshape(15, 13) % 7
    shape = (15 * factor - 1, 13 * factor - 2)  # level-0 size need not be a multiple of D
    with LabelCanvas(small.shape, chunk=8, tmp_dir=tmp_path) as canvas:
        canvas.write(0, 0, small)
        out = tmp_path / "m.ome.tif"
        write_label_tiff(out, shape, canvas.upsampled(factor, shape), mpp=0.5, tile_size=16)
    full = tifffile.imread(out)
    expect = np.repeat(np.repeat(small, factor, 0), factor, 1)[: shape[0], : shape[1]]
    assert np.array_equal(full, expect)


def test_thumbnail_is_nearest_subsample():
    data = (np.arange(100)[:, None] // 10 + np.zeros((1, 60), int)).astype(np.uint8)
    with LabelCanvas((100, 60), chunk=32) as canvas:
        canvas.write(0, 0, data)
        thumb = canvas.thumbnail((30, 50))
    assert thumb.shape == (50, 30)
    assert np.array_equal(thumb[:, 0], data[1::2, 0])
