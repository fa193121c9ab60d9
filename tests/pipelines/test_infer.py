"""`infer` on one slide with an oracle predictor: outputs, readers, areas, D, no tissue."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tifffile
from infer_testkit import CLASSES, oracle

from pipelines.infer import InferSettings, find_regions, infer_slide, slide_downsample
from wsi_downsample.errors import ConfigError, OutputExistsError
from wsi_downsample.slides import open_mask, open_slide


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from wsi_downsample.synthetic import write_synthetic_slide

    out = tmp_path_factory.mktemp("infer_synth")
    return write_synthetic_slide(out, shape_hw=(1536, 2048), seed=1, name="s1")


def _infer(synth, output, spacing_px=8.0, **kw):
    with open_slide(synth.slide_path) as slide, open_mask(synth.mask_path, slide=slide) as mask:
        return infer_slide(
            synth.slide_path, output, oracle(mask, spacing_px), CLASSES, InferSettings(**kw)
        )


def _iou(a, b, c):
    inter, union = ((a == c) & (b == c)).sum(), ((a == c) | (b == c)).sum()
    return inter / union


@pytest.fixture(scope="module")
def auto_run(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("auto") / "x" / "s1.mask.tif"
    return out, _infer(synth, out)


def test_outputs_appear_together_by_the_stem_rule(auto_run):
    out, summary = auto_run
    names = sorted(p.name for p in out.parent.iterdir())
    stem = "s1.mask"
    assert names == sorted(
        [
            f"{stem}.tif",
            f"{stem}.classes.json",
            f"{stem}.summary.json",
            f"{stem}.sampling.npz",
            f"{stem}.geojson",
            f"{stem}.preview.png",
        ]
    )
    assert summary["output_downsample"] == summary["inverse_downsample"] == 2  # 8 px / 4
    assert len(summary["regions"]) == 3 and summary["flagged_regions"] == []


def test_mask_reads_back_in_every_reader(auto_run, synth):
    out, summary = auto_run
    d = summary["output_downsample"]
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.compression == 8 and page.dtype == np.uint8
        assert page.shape == (1536 // d, 2048 // d)
        assert page.tags["XResolution"].value == (20_000 // d, 1)  # 1e4 / (0.5 D) per cm
        assert len(page.subifds) == 1
        assert 'PhysicalSizeX="1.0"' in tif.ome_metadata
        assert "wsi-seg/classes" in tif.ome_metadata and "Gleason 4" in tif.ome_metadata
        full = page.asarray()
    import tiffslide

    with tiffslide.TiffSlide(out) as ts:
        assert ts.level_dimensions == ((1024, 768), (512, 384))
        assert ts.properties["tiffslide.mpp-x"] == pytest.approx(1.0)
    import openslide

    with openslide.OpenSlide(out) as osl:
        assert osl.dimensions == (1024, 768)
        assert float(osl.properties["openslide.mpp-x"]) == pytest.approx(1.0)
    truth = tifffile.imread(synth.mask_path)[d // 2 :: d, d // 2 :: d]
    assert _iou(full, truth, 0) > 0.98 and _iou(full, truth, 1) > 0.93


def test_geojson_areas_agree_with_the_mask(auto_run):
    from shapely.geometry import shape

    out, summary = auto_run
    fc = json.loads(out.with_name("s1.mask.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and fc["features"]
    areas: dict[str, float] = {}
    for f in fc["features"]:
        geom = shape(f["geometry"])
        assert geom.is_valid and geom.geom_type in ("Polygon", "MultiPolygon")
        props = f["properties"]
        assert props["objectType"] == "annotation" and props["isLocked"] is True
        assert props["classification"]["color"] == next(
            list(c) for _, n, c in CLASSES if n == props["classification"]["name"]
        )
        name = props["classification"]["name"]
        areas[name] = areas.get(name, 0.0) + geom.area * 0.25  # um^2 at 0.5 um/px
    big = summary["classes"]["benign"]["area_um2"]
    assert abs(areas["benign"] - big) / big < 0.03
    assert summary["geojson_features"] == len(fc["features"])


def test_sidecars(auto_run):
    out, summary = auto_run
    classes = json.loads(out.with_name("s1.mask.classes.json").read_text())
    assert [c["name"] for c in classes["classes"]][:2] == ["background", "benign"]
    assert classes["slide_mpp"] == 0.5 and classes["output_downsample"] == 2
    npz = np.load(out.with_name("s1.mask.sampling.npz"))
    assert int(npz["regions"]) == 3 and str(npz["budget"]) == ""  # no model: no budget
    grid, pred = npz["r0_grid"], npz["r0_pred"]
    assert grid.shape[:2] == pred.shape and grid.shape[2] == 2 and pred.dtype == np.uint8
    x0, y0, x1, y1 = npz["r0_box_xyxy"]
    assert x0 <= grid[..., 0].min() and grid[..., 0].max() <= x1
    region = summary["regions"][0]
    assert region["mean_sample_spacing_um"] == pytest.approx(4.0, rel=0.05)
    assert {"inverse", "write_mask", "model", "sample", "total"} <= set(summary["timings"])
    pct = sum(v["percent_of_tissue"] or 0 for v in summary["classes"].values())
    assert pct == pytest.approx(100.0)


def test_existing_outputs_refused_then_overwritten(auto_run, synth):
    out, _ = auto_run
    with pytest.raises(OutputExistsError):
        _infer(synth, out)
    before = out.stat().st_mtime_ns
    _infer(synth, out, overwrite=True, preview=False)
    assert out.stat().st_mtime_ns != before
    assert out.with_name("s1.mask.preview.png").exists()  # not asked: left alone


def test_downsample_one_is_nearest_upsampling_of_auto(synth, tmp_path, auto_run):
    out, summary = auto_run
    one = tmp_path / "s1.mask.ome.tif"
    s1 = _infer(synth, one, output_downsample=1, geojson=False, preview=False)
    assert s1["output_downsample"] == 1 and s1["inverse_downsample"] == 2
    full, auto = tifffile.imread(one), tifffile.imread(out)
    assert full.shape == (1536, 2048)
    assert np.array_equal(full, np.repeat(np.repeat(auto, 2, 0), 2, 1))
    assert {p.name for p in tmp_path.iterdir()} == {
        "s1.mask.ome.tif",
        "s1.mask.classes.json",
        "s1.mask.summary.json",
        "s1.mask.sampling.npz",
    }
    with tifffile.TiffFile(one) as tif:
        assert tif.pages[0].tags["XResolution"].value == (20_000, 1)


def test_coarse_regions_are_flagged(synth, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="wsi_seg.infer"):
        s = _infer(synth, tmp_path / "c.tif", spacing_px=40.0, geojson=False, preview=False)
    assert s["flagged_regions"] == [0, 1, 2]
    assert all(r["spacing_too_coarse"] for r in s["regions"])
    assert "exceeds 16 um" in caplog.text


def test_regions_cover_their_tissue(synth):
    from wsi_downsample.slides.tissue import tissue_mask

    with open_slide(synth.slide_path) as slide:
        tissue = find_regions(slide)
        mask, ds = tissue_mask(slide, min_area_um2=50_000.0)
    rows, cols = np.nonzero(mask)
    inside = np.zeros(rows.size, bool)
    for r in tissue.regions:
        inside |= (cols * ds >= r.x0 + ds) & ((cols + 1) * ds <= r.x1 - ds)
        inside |= (r.x0 == 0) & ((cols + 1) * ds <= r.x1)
    assert inside.all()  # every tissue pixel at least one mask pixel inside a box


def test_weighted_median_downsample():
    from types import SimpleNamespace as NS

    def res(d, area):
        return NS(auto_downsample=d, region=NS(area=area))

    assert slide_downsample([res(2, 10), res(8, 30), res(4, 5)], 16) == 8
    assert slide_downsample([res(2, 50), res(8, 30), res(4, 5)], 16) == 2
    assert slide_downsample([], 16) == 16


def test_no_tissue_gives_background_and_empty_geojson(tmp_path):
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(
        blank,
        np.full((512, 768, 3), 242, np.uint8),
        tile=(256, 256),
        photometric="rgb",
        resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
    )
    out = tmp_path / "blank.mask.tif"
    s = infer_slide(blank, out, None, CLASSES, InferSettings(slide_mpp=0.5))
    assert s["regions"] == [] and s["geojson_features"] == 0
    assert not tifffile.imread(out).any()
    fc = json.loads((tmp_path / "blank.mask.geojson").read_text())
    assert fc == {"type": "FeatureCollection", "features": []}


def test_bad_output_downsample(synth, tmp_path):
    with pytest.raises(ConfigError, match="integer >= 1"):
        _infer(synth, tmp_path / "m.tif", output_downsample="fine")


def _bioformats_jar():
    import os
    import shutil
    from pathlib import Path

    jar = os.environ.get("WSI_SEG_BIOFORMATS_JAR")
    if not jar or not Path(jar).is_file():
        pytest.skip(
            "Bio-Formats jar absent: export WSI_SEG_BIOFORMATS_JAR (.ci/fetch_bioformats.sh)"
        )
    if shutil.which("java") is None:
        pytest.skip("java absent: Bio-Formats needs a Java runtime")
    return jar


def test_bioformats_reads_the_pyramid_and_pixel_size(auto_run):
    """Bio-Formats (QuPath's OME-TIFF reader): one series, the SubIFD pyramid, mpp x D."""
    import subprocess

    jar = _bioformats_jar()
    out, _ = auto_run
    cmd = ["java", "-cp", jar, "loci.formats.tools.ImageInfo", "-nopix", "-noflat", "-omexml"]
    text = subprocess.run(cmd + [str(out)], capture_output=True, text=True, timeout=120).stdout
    assert "Series count = 1" in text
    assert "Resolutions = 2" in text
    assert "Width = 1024" in text and "Height = 768" in text
    assert 'PhysicalSizeX="1.0"' in text and 'PhysicalSizeY="1.0"' in text


@pytest.fixture(scope="module")
def random_model():
    import torch

    from pipelines.config import Config
    from pipelines.run_dir import LoadedModel, build_model

    torch.manual_seed(0)
    config = Config()
    return LoadedModel(build_model(config, "learned").eval(), config, {})


def test_random_model_end_to_end(synth, tmp_path, random_model):
    from pipelines.infer import run_infer

    out = tmp_path / "m.mask.ome.tif"
    s = run_infer(synth.slide_path, out, "RUN", InferSettings(device="cpu"), loaded=random_model)
    assert s["model"]["density"] == "learned" and s["model"]["level_choice"] == "fixed"
    assert all(r["task_hw"][0] == 80 for r in s["regions"])  # dynamic 80x800 budget
    assert s["bytes_decoded"] > 0 and s["timings"]["model"] > 0
    assert str(np.load(out.with_name("m.mask.sampling.npz"))["budget"]) == "dynamic:80x800"
    assert tifffile.imread(out).shape == tuple(s["mask_shape_hw"])


def test_sampler_override(random_model):
    from pipelines.infer import use_sampler

    with pytest.raises(ConfigError, match="needs the slide's labels"):
        use_sampler(random_model.model, "edge")
    use_sampler(random_model.model, "learned")  # the model's own: nothing to do
    assert random_model.model.density_name == "learned"


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_amp_wraps_only_the_segmenter_once(random_model):
    import copy

    import torch

    from pipelines.infer import _amp_segmenter

    model = copy.deepcopy(random_model.model)
    x = torch.rand(3, 64, 96)
    before = model.segment([x])
    _amp_segmenter(model)
    _amp_segmenter(model)
    assert type(model.segmenter).__name__ == "_Autocast"
    assert type(model.segmenter.inner).__name__ != "_Autocast"
    assert model.multiple == random_model.model.multiple
    assert torch.equal(model.segment([x]), before)  # autocast is off on the CPU


def test_probabilities_agree_with_the_mask(synth, tmp_path):
    import zarr

    out = tmp_path / "p.mask.tif"
    probs = tmp_path / "p.probs.zarr"
    s = _infer(synth, out, geojson=False, preview=False, probabilities=probs)
    arr = zarr.open_array(str(probs), mode="r")
    d = s["inverse_downsample"]
    assert arr.shape == (6, 1536 // d, 2048 // d) and arr.dtype == np.uint8
    assert arr.attrs["downsample"] == d and arr.attrs["classes"][3]["name"] == "Gleason 4"
    values = np.asarray(arr[:])
    mask = tifffile.imread(out)
    owned = values.sum(0) > 0
    assert owned.mean() > 0.3
    # one-hot samples: the interpolated scores sum to 1 and their argmax is the mask's label
    assert np.abs(values.sum(0)[owned].astype(int) - 255).max() <= 3
    agree = (values.argmax(0) == mask)[owned].mean()
    assert agree > 0.995
    assert not mask[~owned].any()  # unowned pixels are background in the mask too
