"""`wsi-seg evaluate`: report fields, numbers against a direct metrics computation, oracle
identities, the prediction-folder route against the model route, the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from infer_testkit import CLASSES, oracle

from pipelines.cli import cli
from pipelines.config import Config
from pipelines.evaluate import (
    REPORT_FILES,
    EvaluateSettings,
    evaluate_model,
    evaluate_pred_dir,
    evaluate_rows,
    parse_output_downsample,
    write_report,
)
from pipelines.evaluate_score import RegionInput
from pipelines.infer import InferSettings, find_regions, infer_slide
from pipelines.run_dir import LoadedModel, build_model
from wsi_downsample.deformation import OutputFrame, invert_grid, invert_labels
from wsi_downsample.errors import ConfigError
from wsi_downsample.metrics import confusion_counts, mean_iou
from wsi_downsample.models import LabelSampler
from wsi_downsample.slides import open_mask, open_slide


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from wsi_downsample.synthetic import write_synthetic_slide

    out = tmp_path_factory.mktemp("eval_synth")
    s = write_synthetic_slide(out, shape_hw=(1536, 2048), seed=1, name="e1")
    manifest = out / "manifest.csv"
    manifest.write_text(
        "slide_path,mask_path,split,slide_id,fold\n"
        f"{s.slide_path.name},{s.mask_path.name},test,e1,1\n"
    )
    return s, manifest


@pytest.fixture(scope="module")
def random_model():
    from pipelines.config import load_config

    torch.manual_seed(0)
    config = load_config(None, {"sampler.dynamic": "32x160"})  # small: fast on CPU
    return LoadedModel(build_model(config, "learned").eval(), config, {})


def _recording(regions_of, seen):
    def wrapped(slide, mask, lut_known, row):
        for item in regions_of(slide, mask, lut_known, row):
            seen.append(item)
            yield item

    return wrapped


@pytest.fixture(scope="module")
def model_run(synth, random_model):
    from pipelines.evaluate import _model_regions

    _, manifest = synth
    model = random_model.model
    model.min_region_area_um2 = 50_000.0
    seen: list[RegionInput] = []
    predictor = _recording(_model_regions(model, "cpu"), seen)
    report = evaluate_model(
        manifest, "RUN", EvaluateSettings(), loaded=random_model, predictor=predictor
    )
    return report, seen


def _oracle_regions(spacing_px=8.0):
    """Infer's regions, predicted by the infer test oracle (one-hot of the sampled mask)."""

    def regions_of(slide, mask, lut_known, row):
        predict = oracle(mask, spacing_px)
        tissue = find_regions(slide)
        for region, component in zip(tissue.regions, tissue.components, strict=True):
            p = predict(slide, region)
            yield RegionInput(region, p.probs, p.grid, 0, 0, 0.0, tissue.owner, component)

    return regions_of


def _oracle_report(synth, settings=None):
    s, manifest = synth
    from pipelines.manifest import read_manifest

    config = Config()
    rows = read_manifest(manifest, config, require_masks=True)
    return evaluate_rows(
        rows,
        config,
        _oracle_regions(),
        settings or EvaluateSettings(),
        source_mpp=0.5,
        about={"sampler": "oracle"},
    )


def test_report_fields(model_run):
    report, seen = model_run
    for key in (
        "miou_full_resolution",
        "miou_warped_space",
        "intrinsic_iou",
        "per_class",
        "absent_classes",
        "trimap",
        "cost",
        "slides",
        "counts",
        "output_downsample",
    ):
        assert key in report
    assert report["output_downsample"] == 1.0  # 0.5 um/px slide, 0.5 um/px source
    assert report["sampler"] == "learned" and report["route"] == "model"
    assert report["peak_rss_mb"] > 100  # torch alone is more
    assert [t["band_px"] for t in report["trimap"]] == [1, 2, 4, 8, 16]
    pixels = [t["pixels"] for t in report["trimap"]]
    assert pixels == sorted(pixels) and pixels[0] > 0  # wider bands hold more pixels
    assert len(report["per_class"]) == 6 and len(report["slides"]) == 1
    cost = report["cost"]
    assert cost["regions"] == len(seen) >= 1
    assert cost["samples"] == sum(i.grid.shape[0] * i.grid.shape[1] for i in seen)
    area = sum(i.region.size_wh[0] * i.region.size_wh[1] for i in seen)
    assert cost["sampled_fraction"] == pytest.approx(cost["samples"] / area)
    assert cost["bytes_decoded"] == sum(i.bytes_decoded for i in seen) > 0
    freq = [c["label_frequency"] for c in report["per_class"]]
    assert sum(freq) == pytest.approx(1.0)
    absent = [c["class"] for c in report["per_class"] if c["iou_full_resolution"] is None]
    assert report["absent_classes"] == absent


def test_numbers_match_a_direct_computation(synth, model_run):
    s, _ = synth
    report, seen = model_run
    total_full = np.zeros((6, 7), np.int64)
    total_warped = np.zeros((6, 7), np.int64)
    total_intr = np.zeros((6, 7), np.int64)
    with open_slide(s.slide_path) as slide, open_mask(s.mask_path, slide=slide) as mask:
        truth_all = np.asarray(mask.read_region((0, 0), 0, slide.dimensions))
        sampler = LabelSampler(mask, source_mpp=0.5)
        claimed = np.zeros(truth_all.shape[:2], np.int64)
        for item in seen:
            r = item.region
            frame = OutputFrame.for_region((r.x0, r.y0, r.x1, r.y1), 1.0)
            truth = truth_all[r.y0 : r.y1, r.x0 : r.x1].copy()
            owned = item.owner.tile(r.y0, r.x0, truth.shape, 1.0) == item.component
            truth[~owned] = 255  # a pixel of overlapping boxes counts in its owner only
            claimed[r.y0 : r.y1, r.x0 : r.x1] += owned
            kw = {"origin_xy": frame.origin_xy, "downsample": 1.0}
            pred = invert_grid(item.scores, item.grid, frame.shape_hw, **kw)
            labels = sampler(item.grid.to(torch.float64)).numpy()
            recon = invert_labels(labels, item.grid, frame.shape_hw, num_classes=6, **kw)
            total_full += confusion_counts(pred, truth, 6, ignore_index=255)
            total_warped += confusion_counts(item.scores.argmax(0), labels, 6)
            total_intr += confusion_counts(recon, truth, 6, ignore_index=255)
        sampler.close()
    assert report["counts"]["miou_full_resolution"] == total_full.tolist()
    # this slide's three padded boxes overlap (1 825 280 box pixels): each pixel scored once
    boxes = sum((i.region.x1 - i.region.x0) * (i.region.y1 - i.region.y0) for i in seen)
    assert (len(seen), boxes, int(total_full.sum())) == (3, 1_825_280, 1_458_944)
    assert claimed.max() == 1 and claimed.sum() == 1_458_944
    assert report["miou_full_resolution"] == pytest.approx(mean_iou(total_full), abs=1e-12)
    assert report["miou_warped_space"] == pytest.approx(mean_iou(total_warped), abs=1e-12)
    assert report["intrinsic_iou"] == pytest.approx(mean_iou(total_intr), abs=1e-12)


def test_oracle_is_perfect_in_warped_space(synth):
    report = _oracle_report(synth)
    assert report["miou_warped_space"] == 1.0
    counts = report["counts"]
    assert counts["miou_full_resolution"] == counts["intrinsic_iou"]
    assert report["miou_full_resolution"] == report["intrinsic_iou"] < 1.0
    sampled = [c["sampled_frequency"] for c in report["per_class"]]
    assert sum(v for v in sampled if v is not None) == pytest.approx(1.0)


def test_overlapping_boxes_score_each_pixel_once(synth):
    from pipelines.manifest import read_manifest
    from wsi_downsample._types import Region
    from wsi_downsample.io.canvas import TissueOwner

    s, manifest = synth
    config = Config()
    rows = read_manifest(manifest, config, require_masks=True)
    comps = np.ones((1536 // 64, 2048 // 64), np.int32)
    comps[:, 16:] = 2  # component 1 owns columns < 1024, component 2 the rest

    def regions_of(owner):
        def regions(slide, mask, lut_known, row):
            predict = oracle(mask, 8.0)
            for i, (x0, x1, comp) in enumerate([(0, 1280, 1), (768, 2048, 2)]):
                region = Region(i, x0, 0, x1, 1536, float((x1 - x0) * 1536))
                p = predict(slide, region)
                yield RegionInput(region, p.probs, p.grid, 0, 0, 0.0, owner, comp)

        return regions

    def scored(owner):
        report = evaluate_rows(
            rows, config, regions_of(owner), EvaluateSettings(), source_mpp=0.5, about={}
        )
        full = np.asarray(report["counts"]["miou_full_resolution"])
        return sum(c["label_pixels"] for c in report["per_class"]), int(full.sum())

    owned = scored(TissueOwner(comps, 64.0, dilate_px=0))
    assert owned == (1536 * 2048, 1536 * 2048)  # every pixel scored once
    assert scored(None) == (1536 * 2560, 1536 * 2560)  # whole boxes: the overlap twice


def test_coarser_output_downsample(synth):
    report = _oracle_report(synth, EvaluateSettings(output_downsample=4.0))
    assert report["output_downsample"] == 4.0
    label_px = sum(c["label_pixels"] for c in report["per_class"])
    fine = _oracle_report(synth)
    fine_px = sum(c["label_pixels"] for c in fine["per_class"])
    assert fine_px / 20 < label_px < fine_px / 12  # ~1/16 of the pixels at D = 4
    with pytest.raises(ConfigError, match="one D for every sampler"):
        parse_output_downsample("auto")
    assert parse_output_downsample("2") == 2.0 and parse_output_downsample(None) is None


def test_pred_dir_scores_equal_the_model_route(synth, tmp_path):
    s, manifest = synth
    out = tmp_path / "preds" / "e1.mask.ome.tif"
    with open_slide(s.slide_path) as slide, open_mask(s.mask_path, slide=slide) as mask:
        infer_slide(s.slide_path, out, oracle(mask, 8.0), CLASSES, InferSettings())
    direct = _oracle_report(synth)
    scored = evaluate_pred_dir(manifest, tmp_path / "preds", Config(), EvaluateSettings())
    assert scored["route"] == "pred-dir"
    assert scored["counts"] == direct["counts"]
    for key in ("miou_full_resolution", "miou_warped_space", "intrinsic_iou"):
        assert scored[key] == direct[key]
    assert scored["trimap"] == direct["trimap"]
    assert scored["cost"]["sampled_fraction"] == direct["cost"]["sampled_fraction"]
    # fold 1 holds the only row; fold 0 none
    by_fold = evaluate_pred_dir(manifest, tmp_path / "preds", Config(), EvaluateSettings(fold=1))
    assert by_fold["counts"] == direct["counts"] and by_fold["fold"] == 1
    with pytest.raises(ConfigError, match="no rows in fold 0"):
        evaluate_pred_dir(manifest, tmp_path / "preds", Config(), EvaluateSettings(fold=0))
    with pytest.raises(ConfigError, match="no sampling sidecar for slide e1"):
        evaluate_pred_dir(manifest, tmp_path, Config(), EvaluateSettings())


def test_report_files(model_run, tmp_path):
    report, _ = model_run
    write_report(report, tmp_path / "rep")
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(REPORT_FILES)
    assert json.loads((tmp_path / "rep" / "report.json").read_text()) == report
    with (tmp_path / "rep" / "per_class.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == [c[1] for c in CLASSES]
    with (tmp_path / "rep" / "per_slide.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["miou_full_resolution"]) == pytest.approx(
        report["miou_full_resolution"], rel=1e-5
    )
    assert "trimap_16px" in row


def test_cli(synth, tmp_path):
    s, manifest = synth
    out = tmp_path / "preds" / "e1.mask.ome.tif"
    with open_slide(s.slide_path) as slide, open_mask(s.mask_path, slide=slide) as mask:
        infer_slide(s.slide_path, out, oracle(mask, 8.0), CLASSES, InferSettings())
    args = ["evaluate", "--slides", str(manifest), "--pred-dir", str(tmp_path / "preds")]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert "mIoU full resolution" in result.output and "output downsample 1.0" in result.output
    assert (tmp_path / "rep" / "report.json").is_file()
    again = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "rep")])
    assert again.exit_code == 2 and "exists already" in again.output
    both = CliRunner().invoke(cli, [*args, "--model", str(tmp_path)])
    assert both.exit_code == 2 and "not both" in both.output
    auto = CliRunner().invoke(cli, [*args, "--output-downsample", "auto"])
    assert auto.exit_code == 2 and "one D for every sampler" in auto.output
