"""Synthetic slides: determinism, classes, regions, frames, readers, pyramids, gland loss."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.measure import label as connected_components
from skimage.measure import regionprops

from pipelines.synth import run_synth
from wsi_downsample.synthetic import (
    make_layout,
    render_labels,
    render_rgb,
    split_for,
    write_synthetic_set,
    write_synthetic_slide,
)
from wsi_downsample.synthetic.render import BACKGROUND_RGB

SMALL = (512, 768)


def _mask_level0(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].levels[0].asarray()


@pytest.fixture(scope="module")
def lossless(tmp_path_factory: pytest.TempPathFactory):
    """The default test slide again, with Deflate tiles so that pixels can be compared."""
    out = tmp_path_factory.mktemp("lossless")
    return write_synthetic_slide(out, (1536, 2048), seed=0, name="z", compression="zlib")


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = write_synthetic_slide(tmp_path / "a", SMALL, seed=3)
    b = write_synthetic_slide(tmp_path / "b", SMALL, seed=3)
    c = write_synthetic_slide(tmp_path / "c", SMALL, seed=4)
    assert a.mask_path.read_bytes() == b.mask_path.read_bytes()
    assert a.slide_path.read_bytes() == b.slide_path.read_bytes()
    assert a.regions == b.regions and a.class_counts == b.class_counts
    assert not np.array_equal(_mask_level0(a.mask_path), _mask_level0(c.mask_path))
    assert a.regions != c.regions


def test_every_class_present_and_counts_match_mask(synthetic_slide) -> None:
    mask = _mask_level0(synthetic_slide.mask_path)
    assert mask.shape == synthetic_slide.shape_hw == (1536, 2048)
    counts = np.bincount(mask.ravel(), minlength=6)
    assert tuple(int(c) for c in counts) == synthetic_slide.class_counts
    assert len(counts) == 6 and (counts > 0).all()
    assert 0.15 < 1 - counts[0] / mask.size < 0.5  # tissue fraction: mostly background


def test_regions_are_the_mask_tissue_components(synthetic_slide) -> None:
    components = connected_components(_mask_level0(synthetic_slide.mask_path) > 0)
    props = sorted(regionprops(components), key=lambda p: (p.bbox[0], p.bbox[1]))
    assert len(props) == len(synthetic_slide.regions) >= 3
    for region, prop in zip(synthetic_slide.regions, props, strict=True):
        y0, x0, y1, x1 = prop.bbox
        assert (region.x0, region.y0, region.x1, region.y1) == (x0, y0, x1, y1)
        assert region.area == prop.area
        w, h = region.size_wh
        assert w / h > 3  # elongated cores along the longer side of the slide


def test_slide_and_mask_share_the_frame(lossless) -> None:
    mask = _mask_level0(lossless.mask_path)
    with tifffile.TiffFile(lossless.slide_path) as tif:
        rgb = tif.pages[0].asarray()
    assert rgb.shape == (*mask.shape, 3)
    background = mask == 0
    assert (rgb[background] == BACKGROUND_RGB).all()
    assert (rgb[~background] == BACKGROUND_RGB).all(axis=1).mean() < 0.001
    glands = mask >= 2  # lesion glands are purple-rimmed: bluer than the pink stroma
    stroma_blue = rgb[(mask == 1)][:, 2].astype(float) - rgb[(mask == 1)][:, 1]
    gland_blue = rgb[glands][:, 2].astype(float) - rgb[glands][:, 1]
    assert gland_blue.mean() > stroma_blue.mean() + 20


def test_svs_levels_are_area_averages(lossless) -> None:
    with tifffile.TiffFile(lossless.slide_path) as tif:
        pages = tif.pages
        level0 = pages[0].asarray().astype(np.uint32)
        for page, ds in ((pages[2], 4), (pages[3], 16)):
            h, w = 1536 // ds, 2048 // ds
            sums = level0.reshape(h, ds, w, ds, 3).sum(axis=(1, 3))
            expected = (sums + ds * ds // 2) // (ds * ds)
            # level 2 is the mean of level 1's means: within 1 of the direct mean
            assert np.abs(page.asarray().astype(int) - expected).max() <= (0 if ds == 4 else 1)
        assert pages[1].is_tiled is False and pages[1].shape[:2] == (384, 512)  # thumbnail


def test_openslide_and_tiffslide_see_levels_mpp_and_images(synthetic_slide) -> None:
    openslide = pytest.importorskip("openslide")
    tiffslide = pytest.importorskip("tiffslide")
    dims = ((2048, 1536), (512, 384), (128, 96))
    with openslide.OpenSlide(synthetic_slide.slide_path) as slide:
        assert slide.level_dimensions == dims and slide.level_downsamples == (1.0, 4.0, 16.0)
        assert slide.properties["openslide.vendor"] == "aperio"
        assert float(slide.properties["openslide.mpp-x"]) == 0.5
        assert slide.properties["aperio.AppMag"] == "20"
        assert set(slide.associated_images) == {"thumbnail", "label", "macro"}
        corner = np.asarray(slide.read_region((0, 0), 2, (8, 8)))
    assert np.abs(corner[..., :3].astype(int) - BACKGROUND_RGB).max() <= 3  # JPEG, background
    with tiffslide.TiffSlide(synthetic_slide.slide_path) as slide:
        assert slide.level_dimensions == dims
        assert slide.properties["tiffslide.mpp-x"] == pytest.approx(0.5)
        assert set(slide.associated_images) == {"thumbnail", "label", "macro"}
    with tiffslide.TiffSlide(synthetic_slide.mask_path) as mask:
        assert mask.level_dimensions == ((2048, 1536), (1024, 768), (512, 384))
        assert mask.properties["tiffslide.mpp-x"] == pytest.approx(0.5)
    with openslide.OpenSlide(synthetic_slide.mask_path) as mask:
        assert mask.dimensions == (2048, 1536)
        assert float(mask.properties["openslide.mpp-x"]) == 0.5


def _uniform_survival(mask: np.ndarray, factor: int) -> dict[int, tuple[int, int]]:
    """Per class: (gland components, those whose class survives uniform nearest
    downsampling by ``factor`` per axis (sample at each block's centre pixel) followed by
    nearest upsampling)."""
    h, w = mask.shape
    low = mask[factor // 2 :: factor, factor // 2 :: factor][: h // factor, : w // factor]
    up = np.repeat(np.repeat(low, factor, axis=0), factor, axis=1)
    up = np.pad(up, ((0, h - up.shape[0]), (0, w - up.shape[1])), mode="edge")
    out: dict[int, tuple[int, int]] = {}
    for cls in range(2, 6):
        comps = connected_components(mask == cls)
        ids = np.arange(1, comps.max() + 1)
        kept = np.zeros(comps.max() + 1, bool)
        kept[comps[(comps > 0) & (up == cls)]] = True
        out[cls] = (len(ids), int(kept[1:].sum()))
    return out


def test_uniform_one_25th_loses_most_small_glands(synthetic_slide) -> None:
    stats = _uniform_survival(_mask_level0(synthetic_slide.mask_path), 25)
    total = sum(n for n, _ in stats.values())
    kept = sum(k for _, k in stats.values())
    print("uniform 1/25 survival per class (glands, kept):", stats, f"total {kept}/{total}")
    assert total >= 40
    assert kept / total < 0.5  # most lesion glands vanish at 1/25 per axis
    n, k = stats[3]  # Gleason 4 glands: the smallest (4-8 um)
    assert n > 0 and k / n < 0.5


def test_tiles_are_independent_of_tiling() -> None:
    layout = make_layout((1536, 2048), 0, 0.5)
    whole = render_labels(layout, 300, 500, 300, 400).labels
    rgb, _ = render_rgb(layout, 300, 500, 300, 400)
    for y in range(300, 600, 100):
        for x in range(500, 900, 128):
            w = min(128, 900 - x)
            part = render_labels(layout, y, x, 100, w).labels
            assert np.array_equal(part, whole[y - 300 : y - 200, x - 500 : x - 500 + w])
    part_rgb, _ = render_rgb(layout, 350, 600, 64, 64)
    assert np.array_equal(part_rgb, rgb[50:114, 100:164])


def _outline(core):
    """The core as a shapely shape: the body between ``v = bend(u) +- r(u)`` and two caps."""
    from shapely.geometry import Point, Polygon
    from shapely.ops import unary_union

    u = np.linspace(0, core.length, 400)
    vc = core.bend * np.sin(np.pi * u / core.length)
    r = (
        core.thickness
        / 2
        * (1 + sum(a * np.sin(2 * np.pi * u / wl + ph) for a, wl, ph in core.wobble))
    )
    side = [core.to_xy(a, b) for a, b in zip(u, vc + r, strict=True)]
    other = [core.to_xy(a, b) for a, b in zip(u[::-1], (vc - r)[::-1], strict=True)]
    caps = [Point(core.to_xy(u[i], vc[i])).buffer(r[i], 64) for i in (0, -1)]
    return unary_union([Polygon(side + other), *caps])


@pytest.mark.parametrize("shape_hw", [(100000, 100000), (15360, 20480), (3000, 700)])
def test_cores_never_touch_and_stay_on_the_slide(shape_hw: tuple[int, int]) -> None:
    layout = make_layout(shape_hw, 0, 0.5)
    shapes = [_outline(c) for c in layout.cores]
    h, w = shape_hw
    for k, shape in enumerate(shapes):
        x0, y0, x1, y1 = shape.bounds
        assert 0 < x0 and x1 < w and 0 < y0 and y1 < h
        bx0, by0, bx1, by1 = layout.cores[k].box  # the box used to skip tiles holds it
        assert bx0 <= x0 and by0 <= y0 and x1 <= bx1 and y1 <= by1
        gap = 0.1 * layout.cores[k].thickness
        for j in range(k + 1, len(shapes)):
            ox0, oy0, ox1, oy1 = shapes[j].bounds
            if ox0 < x1 + gap and x0 < ox1 + gap and oy0 < y1 + gap and y0 < oy1 + gap:
                assert shape.distance(shapes[j]) > gap


def test_layout_options_and_orientation(tmp_path: Path) -> None:
    two = write_synthetic_slide(tmp_path, (1024, 1536), seed=1, name="two", n_regions=2)
    assert len(two.regions) == 2
    with pytest.raises(ValueError, match="n_regions=40"):
        make_layout((1024, 1536), 1, 0.5, n_regions=40)
    tall = make_layout((2048, 1024), 2, 0.5)
    assert all(abs(np.cos(c.angle)) < 0.35 for c in tall.cores)  # cores run down the slide
    wide = make_layout((1024, 2048), 2, 0.5)
    assert all(abs(np.cos(c.angle)) > 0.9 for c in wide.cores)


def test_set_manifest_and_pipeline(tmp_path: Path) -> None:
    manifest = run_synth(tmp_path / "set", (256, 384), count=3, seed=7, progress=False)
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["slide_path", "mask_path", "split", "slide_id", "mpp"]
    assert [r["split"] for r in rows] == ["train", "val", "test"]
    assert [r["slide_id"] for r in rows] == ["synthetic_000", "synthetic_001", "synthetic_002"]
    for r in rows:
        assert (manifest.parent / r["slide_path"]).is_file()
        assert (manifest.parent / r["mask_path"]).is_file()
        assert r["mpp"] == "0.5" and not Path(r["slide_path"]).is_absolute()
    masks = [_mask_level0(manifest.parent / r["mask_path"]) for r in rows]
    assert not np.array_equal(masks[0], masks[1])
    again = write_synthetic_set(tmp_path / "again", (256, 384), 1, seed=8)
    assert np.array_equal(_mask_level0(again.parent / "synthetic_000.mask.ome.tif"), masks[1])
    assert [split_for(i, 10) for i in range(10)].count("train") == 6
    with pytest.raises(ValueError, match="too small"):
        run_synth(tmp_path / "x", (32, 32))
