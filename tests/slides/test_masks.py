"""Label masks: OME-TIFF SubIFD pyramids, PANDA RGB TIFFs, PNGs, and frame checks."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image
from slide_testkit import write_pyramid_tiff

from wsi_downsample._types import Mpp
from wsi_downsample.errors import ConfigError, MaskMismatchError, NotASlideError
from wsi_downsample.slides import SlideReader, open_mask, open_slide


def _labels(h: int = 256, w: int = 384) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    lab[32:96, 64:200] = 3
    lab[128:, 256:] = 5
    lab[200:210, 10:20] = 1
    return lab


@pytest.fixture
def slide_path(tmp_path):
    img = np.full((256, 384, 3), 230, np.uint8)
    return write_pyramid_tiff(tmp_path / "slide.tif", img, factors=(1, 4), mpp=0.5)


def test_ome_subifd_pyramid_mask(tmp_path, slide_path) -> None:
    lab = _labels()
    path = write_pyramid_tiff(
        tmp_path / "m.ome.tif", lab, factors=(1, 2, 4), subifds=True, mpp=0.5, nearest=True
    )
    with open_slide(slide_path) as slide, open_mask(path, slide=slide) as mask:
        assert isinstance(mask, SlideReader) and mask.is_mask and mask.backend == "tifffile"
        assert mask.level_dimensions == ((384, 256), (192, 128), (96, 64))
        assert mask.level_downsamples == (1.0, 2.0, 4.0)
        assert mask.mpp == Mpp(0.5, 0.5) and mask.frame_downsample == 1.0
        assert np.array_equal(mask.read_region((0, 0), 0, (384, 256)), lab)
        assert np.array_equal(mask.level_array(2)[:], lab[::4, ::4])
        # level-2 read at level-0 (64, 32): level-2 pixel (16, 8)
        assert np.array_equal(mask.read_region((64, 32), 2, (10, 6)), lab[::4, ::4][8:14, 16:26])
        assert np.array_equal(mask.read_tile(1, 1, 2), lab[::2, ::2][64:128, 128:192])
        assert mask.tile_nbytes(0, 0, 0) > 0
        out = mask.read_region((-5, 250), 0, (10, 10))
        assert out.dtype == np.uint8 and out.shape == (10, 10)
        assert (out[:, :5] == 0).all() and (out[6:] == 0).all()  # masks pad with 0
        assert np.array_equal(out[:6, 5:], lab[250:256, 0:5])


def test_panda_rgb_mask_reads_red_channel(tmp_path) -> None:
    lab = _labels()
    rgb = np.stack([lab, 255 - lab, np.full_like(lab, 9)], axis=-1)
    path = write_pyramid_tiff(tmp_path / "panda.tiff", rgb, factors=(1, 2), nearest=True)
    with open_mask(path) as mask:
        assert mask.mpp == Mpp(0.5, 0.5)
        assert mask.level_array(0).shape == (256, 384)
        assert np.array_equal(mask.read_region((0, 0), 0, (384, 256)), lab)
        assert np.array_equal(mask.read_region((0, 0), 1, (192, 128)), lab[::2, ::2])
        assert np.array_equal(mask.read_tile(0, 1, 1), lab[64:128, 64:128])
        thumb = mask.get_thumbnail((96, 96))
        assert thumb.shape == (64, 96) and set(np.unique(thumb)) <= {0, 1, 3, 5}


def test_png_masks_palette_gray_and_rgb(tmp_path) -> None:
    lab = _labels()
    gray = tmp_path / "gray.png"
    Image.fromarray(lab).save(gray)
    pal = Image.fromarray(lab, mode="L").convert("P")
    pal.putpalette([v for i in range(256) for v in (i * 7 % 256, i, 255 - i)])
    pal.save(tmp_path / "pal.png")
    Image.fromarray(np.stack([lab, lab * 0 + 200, lab], -1)).save(tmp_path / "rgb.png")
    for name in ("gray.png", "pal.png", "rgb.png"):
        with open_mask(tmp_path / name) as mask:
            assert mask.backend == "image" and mask.level_count == 1, name
            assert np.array_equal(mask.read_region((0, 0), 0, (384, 256)), lab), name


def test_uint16_single_channel_tiff_is_cast(tmp_path) -> None:
    lab = _labels().astype(np.uint16)
    tifffile.imwrite(tmp_path / "m16.tif", lab, tile=(64, 64), compression="zlib")
    with open_mask(tmp_path / "m16.tif") as mask:
        assert np.array_equal(mask.read_region((0, 0), 0, (384, 256)), lab.astype(np.uint8))
    tifffile.imwrite(tmp_path / "mf.tif", lab.astype(np.float32))
    with pytest.raises(NotASlideError, match="mf.tif: mask pixels are float32"):
        open_mask(tmp_path / "mf.tif")
    lab[5, 5] = 300
    tifffile.imwrite(tmp_path / "big.tif", lab)
    with open_mask(tmp_path / "big.tif") as mask, pytest.raises(NotASlideError, match="0..300"):
        mask.read_region((0, 0), 0, (16, 16))


def test_downsampled_mask_frame_and_mpp(tmp_path, slide_path) -> None:
    # slide 384x256, mask at downsample 4: 96x64, with one pixel of rounding slack
    for w, h in ((96, 64), (97, 65), (95, 63)):
        path = tmp_path / f"m{w}.png"
        Image.fromarray(np.ones((h, w), np.uint8)).save(path)
        with open_slide(slide_path) as slide, open_mask(path, slide=slide, downsample=4) as mask:
            assert mask.frame_downsample == 4.0
            assert mask.mpp == Mpp(2.0, 2.0)
    Image.fromarray(np.ones((64, 98), np.uint8)).save(tmp_path / "m98.png")
    with open_slide(slide_path) as slide, pytest.raises(MaskMismatchError, match="98x64"):
        open_mask(tmp_path / "m98.png", slide=slide, downsample=4)


def test_mismatched_mask_names_both_files_and_the_fix(tmp_path, slide_path) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(np.ones((64, 96), np.uint8)).save(path)
    with open_slide(slide_path) as slide:
        with pytest.raises(MaskMismatchError) as err:
            open_mask(path, slide=slide)
        msg = str(err.value)
        assert "small.png is 96x64" in msg and "slide.tif is 384x256" in msg
        assert err.value.hint == {"downsample": 4} and msg.endswith("; try downsample=4")
        assert "--" not in msg  # the CLI renders the hint as its own flag
        with pytest.raises(MaskMismatchError) as err:
            open_mask(path, slide=slide, downsample=2)
        assert "expected 384x256 / 2 = 192x128" in str(err.value)
        assert err.value.hint == {"downsample": 4}
        other = tmp_path / "other.png"
        Image.fromarray(np.ones((250, 384), np.uint8)).save(other)
        with pytest.raises(MaskMismatchError, match="other.png is 384x250.*belongs to this slide"):
            open_mask(other, slide=slide)
        assert not err.value.hint or err.value.hint == {"downsample": 4}


def test_mask_backend_and_axes_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown mask backend 'openslide'"):
        open_mask(tmp_path / "x.png", backend="openslide")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 16, 16, 3), np.uint8))
    with pytest.raises(NotASlideError, match="axes are 'QYXS'|axes are"):
        open_mask(tmp_path / "stack.tif")
