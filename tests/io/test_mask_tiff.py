"""The streamed pyramidal OME-TIFF label writer: exact levels, tags, readers, atomicity."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from wsi_downsample.io import _pyramid
from wsi_downsample.io.mask_tiff import count_levels, write_label_tiff

SHAPE = (300, 437)  # odd sizes: partial tiles and odd levels
TILE = 64


def _labels(shape: tuple[int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    """Blocky classes 0..5 with single-pixel noise: level errors cannot hide."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = ((yy // 7 + xx // 5) % 6).astype(np.uint8)
    noise = rng.random(shape) < 0.2
    labels[noise] = rng.integers(0, 6, int(noise.sum()))
    return labels


def _nearest_reference(a: np.ndarray, k: int) -> np.ndarray:
    """Level k: level-0 pixel ``2**(k-1) * min(2i+1, n_{k-1}-1)`` per axis (the centre)."""
    idx = []
    for n0 in a.shape:
        n_prev, n_k = math.ceil(n0 / 2 ** (k - 1)), math.ceil(n0 / 2**k)
        idx.append(2 ** (k - 1) * np.minimum(2 * np.arange(n_k) + 1, n_prev - 1))
    return a[np.ix_(*idx)]


def _mode_reference(a: np.ndarray) -> np.ndarray:
    """Mode of each 2x2 block (of the pixels that exist), ties to the larger value."""
    out = np.zeros(((a.shape[0] + 1) // 2, (a.shape[1] + 1) // 2), np.uint8)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            values, counts = np.unique(a[2 * i : 2 * i + 2, 2 * j : 2 * j + 2], return_counts=True)
            out[i, j] = values[counts == counts.max()].max()
    return out


def _levels(path: Path) -> list[np.ndarray]:
    with tifffile.TiffFile(path) as tif:
        return [level.asarray() for level in tif.series[0].levels]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("mask") / "m.mask.ome.tif"
    labels = _labels()
    legend = {"MapAnnotation": {"Namespace": "wsi-seg/classes", "0": "background", "3": "G4"}}
    write_label_tiff(path, SHAPE, labels, mpp=0.5, tile_size=TILE, metadata=legend)
    return path, labels


def test_level_count_rule() -> None:
    assert count_levels(SHAPE, TILE, 32) == 4  # 300x437 -> 150x219 -> 75x110 -> 38x55
    assert count_levels((100, 100), 128, 32) == 1
    assert count_levels((100, 5000), 64, 32) == 2  # 50x2500 then 25 < 32 stops
    assert count_levels((1536, 2048), 512, 32) == 3


def test_nearest_levels_are_centre_samples(written: tuple[Path, np.ndarray]) -> None:
    path, labels = written
    levels = _levels(path)
    assert [lv.shape for lv in levels] == [(300, 437), (150, 219), (75, 110), (38, 55)]
    assert np.array_equal(levels[0], labels)
    for k in range(1, 4):
        assert np.array_equal(levels[k], _nearest_reference(labels, k)), k
    # away from the odd edge, level k pixel (i, j) is level-0 (2^k i + 2^(k-1), 2^k j + ...)
    assert np.array_equal(levels[2][:74, :109], labels[2:298:4, 2:438:4][:74, :109])


def test_mode_levels_exact(tmp_path: Path) -> None:
    labels = _labels((70, 91), seed=3)
    path = tmp_path / "mode.ome.tif"
    result = write_label_tiff(
        path, labels.shape, labels, mpp=1.0, tile_size=16, pyramid="mode", min_level_size=4
    )
    levels = _levels(path)
    assert [lv.shape for lv in levels] == list(result.level_shapes)
    assert len(levels) == 4  # 70x91 -> 35x46 -> 18x23 -> 9x12 (fits one 16-tile)
    expected = labels
    for k in range(1, len(levels)):
        expected = _mode_reference(expected)
        assert np.array_equal(levels[k], expected), k


def test_tags_compression_full_tile_grid_and_resolution(written: tuple[Path, np.ndarray]) -> None:
    path, _ = written
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_bigtiff and tif.is_ome
        pages = [tif.pages[0], *tif.pages[0].pages]  # level 0 and its SubIFDs
        assert len(pages) == 4
        for k, page in enumerate(pages):
            assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            assert page.is_tiled and (page.tilelength, page.tilewidth) == (TILE, TILE)
            grid = math.ceil(page.imagelength / TILE) * math.ceil(page.imagewidth / TILE)
            assert len(page.dataoffsets) == grid and min(page.databytecounts) > 0
            assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            num, den = page.tags["XResolution"].value
            assert num / den == pytest.approx(1e4 / (0.5 * 2**k))
            assert page.subfiletype == (0 if k == 0 else 1)


def test_ome_xml_pixel_size_and_extra_annotation(written: tuple[Path, np.ndarray]) -> None:
    path, _ = written
    with tifffile.TiffFile(path) as tif:
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]
    pixels = ome["Image"]["Pixels"]
    assert pixels["PhysicalSizeX"] == pixels["PhysicalSizeY"] == 0.5
    assert pixels["PhysicalSizeXUnit"] == "µm" and pixels["Type"] == "uint8"
    assert (pixels["SizeX"], pixels["SizeY"]) == (437, 300)
    values = ome["StructuredAnnotations"]["MapAnnotation"]["Value"]["M"]
    assert {str(m["K"]): m["value"] for m in values} == {"0": "background", "3": "G4"}


def test_tiffslide_sees_levels_and_mpp(written: tuple[Path, np.ndarray]) -> None:
    tiffslide = pytest.importorskip("tiffslide")
    path, labels = written
    with tiffslide.TiffSlide(path) as slide:
        assert slide.level_dimensions == ((437, 300), (219, 150), (110, 75), (55, 38))
        assert slide.properties["tiffslide.mpp-x"] == pytest.approx(0.5)
        assert slide.properties["tiffslide.mpp-y"] == pytest.approx(0.5)
        region = np.asarray(slide.read_region((100, 50), 0, (60, 40), as_array=True))
    assert np.array_equal(np.squeeze(region), labels[50:90, 100:160])


def test_openslide_reads_level0_and_mpp(written: tuple[Path, np.ndarray]) -> None:
    openslide = pytest.importorskip("openslide")
    path, labels = written
    with openslide.OpenSlide(path) as slide:
        assert slide.dimensions == (437, 300)  # OpenSlide does not see SubIFD levels
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
        rgba = np.asarray(slide.read_region((0, 0), 0, (437, 300)))
    assert np.array_equal(rgba[..., 0], labels) and (rgba[..., 3] == 255).all()


def test_lzw_bigtiff_and_zarr_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zarr = pytest.importorskip("zarr")
    labels = _labels()
    source = zarr.create_array(
        store=str(tmp_path / "src.zarr"), shape=SHAPE, chunks=(50, 50), dtype=np.uint8
    )
    source[:] = labels
    monkeypatch.setattr(_pyramid, "_IN_MEMORY_BYTES", 0)  # every level through a disk store
    path = tmp_path / "lzw.ome.tif"
    result = write_label_tiff(
        path, SHAPE, source, mpp=(0.25, 0.3), tile_size=TILE, compression="lzw", bigtiff=True
    )
    assert result.bigtiff and result.mpp == (0.25, 0.3)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
        assert tif.pages[0].compression == tifffile.COMPRESSION.LZW
    levels = _levels(path)
    assert np.array_equal(levels[0], labels)
    assert all(np.array_equal(levels[k], _nearest_reference(labels, k)) for k in range(1, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lzw.ome.tif", "src.zarr"]


def test_error_in_read_tile_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fail.ome.tif"
    path.write_bytes(b"previous")

    def read(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        if y0 >= 128:
            raise RuntimeError("decoder died")
        return np.ones((h, w), np.uint8)

    with pytest.raises(RuntimeError, match="decoder died"):
        write_label_tiff(path, SHAPE, read, mpp=0.5, tile_size=TILE)
    assert [p.name for p in tmp_path.iterdir()] == ["fail.ome.tif"]
    assert path.read_bytes() == b"previous"


def test_bad_tiles_and_arguments(tmp_path: Path) -> None:
    path = tmp_path / "bad.ome.tif"
    with pytest.raises(ValueError, match=r"expected uint8 \(64, 64\)"):
        write_label_tiff(
            path, SHAPE, lambda y, x, h, w: np.zeros((h, w + 1), np.uint8), mpp=0.5, tile_size=TILE
        )
    with pytest.raises(ValueError, match="multiple of 16"):
        write_label_tiff(path, SHAPE, _labels(), mpp=0.5, tile_size=100)
    with pytest.raises(ValueError, match="never|'deflate' or 'lzw'"):
        write_label_tiff(path, SHAPE, _labels(), mpp=0.5, compression="jpeg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        write_label_tiff(path, (10, 10), _labels(), mpp=0.5)
    assert list(tmp_path.iterdir()) == []


def _traced_peak(path: Path, shape: tuple[int, int]) -> int:
    def read(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        yy, xx = np.ogrid[y0 : y0 + h, x0 : x0 + w]
        return ((yy // 37 + xx // 53) % 6).astype(np.uint8)

    tracemalloc.start()
    try:
        write_label_tiff(path, shape, read, mpp=0.5, tile_size=256, maxworkers=1)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_scale_with_area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak memory follows the width (tile rows), not the area: 4x the rows, same peak."""
    monkeypatch.setattr(_pyramid, "_IN_MEMORY_BYTES", 0)  # lower levels in disk stores
    short = _traced_peak(tmp_path / "short.ome.tif", (1024, 4096))
    tall = _traced_peak(tmp_path / "tall.ome.tif", (4096, 4096))
    print(
        f"peak traced memory: {short / 2**20:.2f} MiB (4 MiB mask), "
        f"{tall / 2**20:.2f} MiB (16 MiB mask)"
    )
    assert tall < 4 * 2**20  # the level-0 mask alone is 16 MiB
    assert tall < short + 0.25 * 2**20  # (the first write also pays one-off imports)
    with tifffile.TiffFile(tmp_path / "tall.ome.tif") as tif:
        level3 = tif.series[0].levels[3].asarray()
    yy, xx = np.ogrid[4:4096:8, 4:4096:8]
    assert np.array_equal(level3, ((yy // 37 + xx // 53) % 6).astype(np.uint8))
