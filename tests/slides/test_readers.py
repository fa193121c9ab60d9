"""Slide readers on real files and small synthetic TIFFs: metadata, pixels across backends,
native tiles, padding, thumbnails and the errors bad input raises."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from slide_testkit import write_pyramid_tiff

from wsi_downsample._types import Mpp
from wsi_downsample.errors import (
    ConfigError,
    CorruptSlideError,
    LevelError,
    MissingMppError,
    NotASlideError,
    SlideNotFoundError,
    UnsupportedCompressionError,
)
from wsi_downsample.slides import (
    SlideReader,
    check_decodable,
    choose_backend,
    describe_slide,
    open_slide,
    require_mpp,
)

CMU1 = "openslide-cmu1-small-region/CMU-1-Small-Region.svs"
TCGA = "tcga-cr-7395-aperio-j2k/tcga-cr-7395-01a-01-ts1.svs"
FIX = "openslide-python-fixtures/"
OME = "openslide-os-ometiff-crops/"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_cmu1_metadata_both_backends(real_file) -> None:
    path = real_file(CMU1)
    for backend in ("auto", "openslide"):
        with open_slide(path, backend=backend) as slide:
            assert isinstance(slide, SlideReader)
            assert slide.backend == ("tiffslide" if backend == "auto" else "openslide")
            assert slide.dimensions == (2220, 2967)
            assert slide.level_count == 1 and slide.level_downsamples == (1.0,)
            assert slide.mpp == Mpp(0.499, 0.499)
            assert slide.objective_power == 20.0 and slide.vendor == "aperio"
            assert slide.levels[0].tile_hw == (240, 240)
            images = slide.associated_images
            assert sorted(images) == ["label", "macro", "thumbnail"]
            assert images["label"].shape == (463, 387, 3)
            assert images["macro"].shape == (431, 1280, 3)
            assert images["thumbnail"].shape == (768, 574, 3)


def test_cmu1_pixels_equal_across_backends(real_file) -> None:
    path = real_file(CMU1)
    with open_slide(path, backend="tiffslide") as ts, open_slide(path, backend="openslide") as os_:
        a = ts.read_region((700, 1500), 0, (400, 300))
        b = os_.read_region((700, 1500), 0, (400, 300))
        assert a.shape == (300, 400, 3) and a.dtype == np.uint8
        # both decode the same JPEG tiles with libjpeg(-turbo): identical here
        assert np.abs(a.astype(int) - b).max() <= 2
        assert float(np.abs(a.astype(int) - b).mean()) < 0.01
        assert 100 < a.mean() < 250  # real tissue, not padding


def test_tcga_levels_missing_mpp_and_override(real_file) -> None:
    path = real_file(TCGA)
    with open_slide(path) as slide:
        assert slide.backend == "tiffslide"
        assert slide.level_dimensions == ((4443, 3567), (2221, 1783))
        assert slide.level_downsamples[1] == pytest.approx(2.0005055500659967)
        assert slide.mpp is None and slide.objective_power is None
        with pytest.raises(MissingMppError, match="no plausible mpp in its metadata") as err:
            require_mpp(slide)
        assert err.value.hint == {"mpp": "UM_PER_PX"} and "--" not in err.value.message
    with open_slide(path, mpp=0.25) as slide:
        assert require_mpp(slide) == Mpp(0.25, 0.25)
    with open_slide(path, backend="openslide", mpp=(0.25, 0.26)) as slide:
        assert slide.mpp == Mpp(0.25, 0.26)


def test_tcga_jpeg2000_equal_across_backends(real_file) -> None:
    path = real_file(TCGA)
    with open_slide(path, backend="tiffslide") as ts, open_slide(path, backend="openslide") as os_:
        assert np.array_equal(
            ts.read_region((1024, 512), 0, (300, 200)), os_.read_region((1024, 512), 0, (300, 200))
        )
        assert np.array_equal(
            ts.read_region((0, 0), 1, (300, 200)), os_.read_region((0, 0), 1, (300, 200))
        )
        # level 1 is 2.0005x: OpenSlide's own read_region resamples by the sub-pixel offset
        # round(x * ds) / ds - x (<= 0.25 px) away from the origin; both readers return the
        # stored pixels (the OpenSlide reader decodes Aperio tiles natively)
        a = ts.read_region((1024, 512), 1, (300, 200))
        assert os_._tiles is not None
        assert np.array_equal(a, os_.read_region((1024, 512), 1, (300, 200)))
        ds = os_.level_downsamples[1]
        at = (round((1024 // ds) * ds), round((512 // ds) * ds))  # level-1 pixel (511, 255)
        raw = np.asarray(os_._slide.read_region(at, 1, (300, 200)))[..., :3]
        assert 0 < np.abs(a.astype(int) - raw).mean() < 2.0


def test_native_tiles_are_exact_and_cheap(real_file) -> None:
    path = real_file(CMU1)
    with open_slide(path) as slide, tifffile.TiffFile(path) as tf:
        assert slide.tile_grid_hw(0) == (13, 10)  # 2967 / 240, 2220 / 240
        page = tf.pages[0]
        nbytes = [slide.tile_nbytes(0, r, c) for r in range(13) for c in range(10)]
        assert nbytes == [int(n) for n in page.databytecounts]
        level = slide.level_array(0)
        assert np.array_equal(slide.read_tile(0, 4, 7), level[960:1200, 1680:1920])
        # the last tile is clipped to the level's edge: 2967 - 12 * 240 = 87 rows
        last = slide.read_tile(0, 12, 9)
        assert last.shape == (87, 60, 3)
        assert np.array_equal(last, level[2880:2967, 2160:2220])
        with pytest.raises(IndexError, match="13x10 tile grid"):
            slide.read_tile(0, 13, 0)
    with open_slide(path, backend="openslide") as slide:
        assert slide.tile_nbytes(0, 1, 2) == int(page.databytecounts[12])


def test_windows_assembled_from_tiles_equal_zarr_slices(real_file) -> None:
    rng = np.random.default_rng(0)
    cases = [(CMU1, 0), (TCGA, 1), (OME + "OS-1-detail.ome.tif", 0), (FIX + "boxes.tiff", 2)]
    for rel, level in cases:
        with open_slide(real_file(rel)) as slide:
            zarr_level, view = slide.level_array(level), slide.window_view(level)
            h, w = slide.levels[level].shape_hw
            for _ in range(4):
                y0, x0 = int(rng.integers(0, h - 1)), int(rng.integers(0, w - 1))
                y1, x1 = (
                    min(h, y0 + int(rng.integers(1, 600))),
                    min(w, x0 + int(rng.integers(1, 600))),
                )
                assert np.array_equal(view[y0:y1, x0:x1], zarr_level[y0:y1, x0:x1]), (rel, y0, x0)


def test_ome_tiff_crops_auto_picks_tiffslide(real_file) -> None:
    for name, mpp, size in [
        ("OS-1-detail.ome.tif", 0.2271, 1101),
        ("OS-2-vsi.ome.tif", 0.3461, 1445),
    ]:
        path = real_file(OME + name)
        assert choose_backend(path) == "tiffslide"
        with open_slide(path) as slide:
            assert slide.backend == "tiffslide"
            assert slide.dimensions == (size, size)
            assert slide.mpp is not None
            assert slide.mpp.x == pytest.approx(mpp, abs=1e-4)
            assert slide.mpp.y == pytest.approx(mpp, abs=1e-4)
            check_decodable(slide)
        with pytest.raises(NotASlideError, match="OpenSlide does not recognise") as err:
            open_slide(path, backend="openslide")
        assert err.value.hint == {"backend": "tiffslide"} and "backend=" not in err.value.message


def test_boxes_pyramid_equal_across_backends_exactly(real_file) -> None:
    path = real_file(FIX + "boxes.tiff")
    with open_slide(path) as ts, open_slide(path, backend="openslide") as os_:
        assert ts.level_dimensions == ((300, 250), (150, 125), (75, 62), (37, 31))
        assert ts.level_dimensions == os_.level_dimensions
        assert ts.level_downsamples == pytest.approx(os_.level_downsamples)
        # its resolution tags are the 72 dpi default (352.8 um/px): unknown, not a pixel size
        assert ts.properties["tiffslide.mpp-x"] == pytest.approx(352.7777798337701)
        assert ts.mpp is None and os_.mpp is None
        for level in range(4):
            w, h = ts.level_dimensions[level]
            a, b = ts.read_region((0, 0), level, (w, h)), os_.read_region((0, 0), level, (w, h))
            assert np.array_equal(a, b), level  # deflate: exact
        assert np.array_equal(
            np.asarray(os_.level_array(1)[10:70, 20:90]), ts.level_array(1)[10:70, 20:90]
        )


def test_plain_png_equals_tiff_level0(real_file) -> None:
    png, tiff = real_file(FIX + "boxes.png"), real_file(FIX + "boxes.tiff")
    assert choose_backend(png) == "image"
    with open_slide(png, mpp=0.5) as image, open_slide(tiff) as slide:
        assert image.backend == "image" and image.mpp == Mpp(0.5, 0.5)
        assert image.levels[0].tile_hw == (250, 256)  # virtual 256 tiles, clipped to 250 rows
        assert np.array_equal(image.read_region((0, 0), 0, (300, 250)), slide.level_array(0)[:])
        assert np.array_equal(image.read_tile(0, 0, 1), slide.level_array(0)[0:250, 256:300])
        assert image.tile_nbytes(0, 0, 0) == 0


def test_small_svs_and_region_padding(real_file) -> None:
    path = real_file(FIX + "small.svs")
    with open_slide(path) as slide:
        assert slide.dimensions == (16, 16) and slide.mpp == Mpp(0.499, 0.499)
        inside = slide.level_array(0)[:]
        out = slide.read_region((-4, 10), 0, (24, 10))
        assert out.shape == (10, 24, 3)
        assert (out[:, :4] == 255).all() and (out[6:] == 255).all() and (out[:, 20:] == 255).all()
        assert np.array_equal(out[:6, 4:20], inside[10:16])
        assert (slide.read_region((100, 100), 0, (5, 5)) == 255).all()
        with pytest.raises(LevelError, match="no level 1; levels .*0: 16x16"):
            slide.read_region((0, 0), 1, (4, 4))


def test_read_region_level_k_uses_floor_of_location_over_downsample(tmp_path) -> None:
    img = np.arange(64 * 96 * 3, dtype=np.uint32).reshape(64, 96, 3).astype(np.uint8)
    path = write_pyramid_tiff(tmp_path / "s.tif", img, factors=(1, 2), tile=16)
    with open_slide(path) as slide:
        level1 = np.asarray(slide.level_array(1)[:])
        # level-0 (9, 7) / 2 = (4.5, 3.5) -> level-1 pixel (col 4, row 3)
        assert np.array_equal(slide.read_region((9, 7), 1, (5, 4)), level1[3:7, 4:9])
        assert np.array_equal(slide.read_region((8, 6), 1, (5, 4)), level1[3:7, 4:9])


def test_thumbnail_area_average_and_aspect(tmp_path) -> None:
    img = np.zeros((128, 256, 3), np.uint8)
    img[:, 128:] = 200
    img[::2, ::2] = 100  # a checkerboard-ish pattern that point sampling would alias
    path = write_pyramid_tiff(tmp_path / "t.tif", img, factors=(1, 4))
    with open_slide(path) as slide:
        thumb = slide.get_thumbnail((64, 64))
        assert thumb.shape == (32, 64, 3)  # aspect 2:1 kept
        # level 1 (ds 4) is just finer than the 4x thumbnail: it is the thumbnail
        assert np.array_equal(thumb, slide.level_array(1)[:])
        assert thumb[0, 0, 0] == 25 and thumb[0, 63, 0] == 175  # means of 4x4 cells
        small = slide.get_thumbnail((16, 100))
        assert small.shape == (8, 16, 3)
        assert small[0, 0, 0] == 25 and small[0, 15, 0] == 175


def test_auto_rule_plain_vs_tiled_tiff(tmp_path) -> None:
    img = np.full((40, 50, 3), 77, np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", img, photometric="rgb")
    tiled = write_pyramid_tiff(tmp_path / "tiled.tif", img, tile=16)
    assert choose_backend(tmp_path / "plain.tif") == "image"
    assert choose_backend(tiled) == "tiffslide"
    with open_slide(tmp_path / "plain.tif") as slide:
        assert slide.backend == "image" and slide.mpp is None
        assert (slide.read_region((0, 0), 0, (50, 40)) == 77).all()


def test_describe_slide_is_json(tmp_path, real_file) -> None:
    with open_slide(real_file(TCGA), mpp=0.5) as slide:
        info = json.loads(json.dumps(describe_slide(slide)))
    assert info["backend"] == "tiffslide" and info["vendor"] == "aperio"
    assert info["mpp"] == [0.5, 0.5] and info["objective_power"] is None
    assert [(lv["width"], lv["height"]) for lv in info["levels"]] == [(4443, 3567), (2221, 1783)]
    assert info["levels"][1]["mpp"][0] == pytest.approx(0.5 * 2.0005055500659967)
    assert info["levels"][1]["tile_width"] == 256
    assert info["associated_images"] == ["thumbnail"]
    assert info["file_bytes"] == 3901814


def test_missing_directory_and_non_image(tmp_path, real_file) -> None:
    with pytest.raises(SlideNotFoundError, match="no such file") as err:
        open_slide(tmp_path / "nope.svs")
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(SlideNotFoundError, match="is a directory"):
        open_slide(tmp_path)
    (tmp_path / "notes.txt").write_text("not a slide\n" * 50)
    with pytest.raises(NotASlideError, match="notes.txt"):
        open_slide(tmp_path / "notes.txt")
    (tmp_path / "fake.png").write_bytes(b"\x89PNG not really")
    with pytest.raises((NotASlideError, CorruptSlideError), match="fake.png"):
        open_slide(tmp_path / "fake.png")
    with pytest.raises(ConfigError, match="available"):
        open_slide(real_file(FIX + "small.svs"), backend="bioformats")


def test_unsupported_compression_both_backends(real_file) -> None:
    path = real_file(FIX + "unopenable.tiff")
    for backend in ("auto", "tiffslide", "openslide"):
        with pytest.raises(UnsupportedCompressionError, match="52479") as err:
            open_slide(path, backend=backend)
        assert isinstance(err.value, NotASlideError)
        assert "unopenable.tiff" in str(err.value)


def test_unreadable_svs_corrupt_on_decode(real_file) -> None:
    path = real_file(FIX + "unreadable.svs")
    for backend in ("auto", "openslide"):
        with open_slide(path, backend=backend) as slide:
            assert slide.dimensions == (16, 16)
            with pytest.raises(
                CorruptSlideError,
                match="Bogus marker length.*unreadable|unreadable.*Bogus marker length",
            ):
                check_decodable(slide)
            with pytest.raises(CorruptSlideError, match="re-copy or re-export"):
                slide.read_region((0, 0), 0, (8, 8))


def test_truncated_tiff_is_corrupt(tmp_path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    path = write_pyramid_tiff(tmp_path / "full.tif", img, factors=(1, 2), tile=64)
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tf:
        first = int(tf.pages[0].dataoffsets[0])
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: first + 100])  # tifffile writes the first IFD before the tiles
    with open_slide(cut) as slide:
        with pytest.raises(CorruptSlideError, match=r"cut.tif: level 0's image data ends"):
            check_decodable(slide)
        with pytest.raises(CorruptSlideError, match="cut.tif: tile .0, 0. of level 0"):
            slide.read_tile(0, 0, 0)


def test_pickle_reopens_by_path(tmp_path, real_file) -> None:
    import pickle

    from wsi_downsample.slides import open_mask

    with open_slide(real_file(TCGA), mpp=0.25) as slide:
        clone = pickle.loads(pickle.dumps(slide))
        assert clone.backend == "tiffslide" and clone.mpp == Mpp(0.25, 0.25)
        assert np.array_equal(clone.read_tile(1, 1, 1), slide.read_tile(1, 1, 1))
        clone.close()
    lab = np.zeros((64, 64), np.uint8)
    lab[8:40, 16:48] = 2
    tifffile.imwrite(tmp_path / "m.tif", lab, tile=(32, 32))
    mask = open_mask(tmp_path / "m.tif", downsample=4)
    mask._mpp_override = Mpp(2.0, 2.0)
    clone = pickle.loads(pickle.dumps(mask))
    assert clone.is_mask and clone.frame_downsample == 4.0 and clone.mpp == Mpp(2.0, 2.0)
    assert np.array_equal(clone.read_region((0, 0), 0, (64, 64)), lab)


def test_non_ascii_path_both_backends(tmp_path, real_file) -> None:
    import shutil

    path = tmp_path / "😐 slide.svs"
    shutil.copy(real_file(FIX + "small.svs"), path)
    with open_slide(path) as ts, open_slide(path, backend="openslide") as os_:
        assert np.array_equal(
            ts.read_region((0, 0), 0, (16, 16)), os_.read_region((0, 0), 0, (16, 16))
        )


def test_auto_falls_back_to_openslide_when_tiffslide_refuses(monkeypatch, real_file) -> None:
    from wsi_downsample.slides import tiffslide as ts_module

    def refuse(self, path, *, mpp=None):
        raise NotASlideError(f"{path}: tiffslide cannot open it as a slide (test)")

    monkeypatch.setattr(ts_module.TiffSlideReader, "__init__", refuse)
    with open_slide(real_file(CMU1)) as slide:
        assert slide.backend == "openslide" and slide.dimensions == (2220, 2967)
    with pytest.raises(NotASlideError, match="tiffslide cannot open"):
        open_slide(real_file(CMU1), backend="tiffslide")


def test_tiles_decode_identically_from_threads(real_file) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with open_slide(real_file(CMU1)) as slide:
        keys = [(r, c) for r in range(13) for c in range(10)]
        serial = [slide.read_tile(0, r, c) for r, c in keys]
        with ThreadPoolExecutor(4) as pool:
            threaded = list(pool.map(lambda k: slide.read_tile(0, *k), keys * 2))
        assert all(np.array_equal(a, b) for a, b in zip(serial * 2, threaded, strict=True))
