"""`wsi-seg evaluate`: full-resolution, warped-space and intrinsic mIoU, trimap accuracy and cost.

Two routes give the same region inputs (warped-space scores + grid) to one scorer
(``evaluate_score``): ``--model RUN`` predicts every tissue region of the manifest's rows
(the regions ``wsi-seg infer`` finds), ``--pred-dir DIR`` reads infer's sampling sidecars
(warped argmax -> one-hot). Every sampler is scored at one output downsample D (default: the
source level's), with the label read at D; intersections and unions are summed over the set
and IoUs taken once; classes absent from the set (union 0) are listed and left out of means.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import Config
from pipelines.evaluate_score import LabelReader, RegionInput, Tally, score_region
from pipelines.manifest import ManifestRow, read_manifest
from wsi_downsample.errors import ConfigError

__all__ = [
    "SCHEMA",
    "REPORT_FILES",
    "BANDS_PX",
    "EvaluateSettings",
    "select_rows",
    "source_downsample",
    "evaluate_rows",
    "evaluate_model",
    "evaluate_pred_dir",
    "write_report",
]

log = logging.getLogger("wsi_seg.evaluate")
SCHEMA = "wsi-seg-evaluate/1"
REPORT_FILES = ("report.json", "per_class.csv", "per_slide.csv")
BANDS_PX = (1.0, 2.0, 4.0, 8.0, 16.0)
#: ``(slide, mask, region, row) -> RegionInput`` for every region of a row
RegionFn = Callable[[Any, Any, Any, ManifestRow], Iterator[RegionInput]]


@dataclass(frozen=True)
class EvaluateSettings:
    """What is scored and how: rows (split or fold), output downsample D, trimap bands."""

    split: str = "test"
    fold: int | None = None
    output_downsample: float | None = None  # None: the source level's downsample
    bands_px: tuple[float, ...] = BANDS_PX
    slide_mpp: float | None = None
    tile_size: int = 512


def select_rows(rows: Sequence[ManifestRow], split: str, fold: int | None) -> list[ManifestRow]:
    """The rows scored: fold ``K``'s rows (the manifest's ``fold`` column) or one split."""
    if fold is None:
        return [r for r in rows if r.split == split]
    if all(r.fold is None for r in rows):
        raise ConfigError(
            f"the manifest has no fold column, so fold {fold} cannot be chosen; add a 'fold' "
            "column or choose rows by split",
            hint={"fold": None},
        )
    return [r for r in rows if r.fold == fold]


def source_downsample(slide: Any, source_mpp: float) -> float:
    """D of the slide level closest to the source mpp (rounded when within 0.1% of an
    integer, as Aperio's 4.0003)."""
    from wsi_downsample.slides import require_mpp
    from wsi_downsample.slides.pyramid import level_for_mpp, level_mpps

    mpp = float(np.mean(require_mpp(slide)))
    level = level_for_mpp(level_mpps(mpp, slide.level_downsamples), source_mpp)
    ds = float(slide.level_downsamples[level])
    return float(round(ds)) if abs(ds - round(ds)) <= 1e-3 * ds else ds


def evaluate_rows(
    rows: Sequence[ManifestRow],
    config: Config,
    regions_of: RegionFn,
    settings: EvaluateSettings,
    *,
    source_mpp: float,
    about: dict[str, Any],
) -> dict[str, Any]:
    """Score every region of every row (``regions_of`` predicts or loads them); the report."""
    from wsi_downsample.slides import open_mask, open_slide

    total = Tally(config.num_classes, len(settings.bands_px))
    per_slide, downsamples = [], set()
    for row in rows:
        lut = config.label_lut(row.label_map, source=str(row.mask_path))
        known = config.mapped_values(row.label_map)
        mpp = row.mpp if row.mpp is not None else settings.slide_mpp
        slide_tally = Tally(config.num_classes, len(settings.bands_px))
        with (
            open_slide(row.slide_path, mpp=mpp) as slide,
            open_mask(row.mask_path, slide=slide) as mask,
        ):
            d_src = source_downsample(slide, source_mpp)
            d_out = settings.output_downsample or d_src
            downsamples.add(d_out)
            reader = LabelReader(mask, source_mpp=source_mpp, lut=lut, known_values=known)
            try:
                for item in regions_of(slide, mask, (lut, known), row):
                    slide_tally += score_region(
                        item,
                        reader,
                        downsample=d_out,
                        num_classes=config.num_classes,
                        bands_px=settings.bands_px,
                        source_downsample=d_src,
                        tile_size=settings.tile_size,
                    )
            finally:
                reader.close()
        total += slide_tally
        per_slide.append(_slide_entry(row, slide_tally, config, settings, d_out))
    from pipelines.evaluate_report import summarize

    d_all = sorted(downsamples)
    return {
        "schema": SCHEMA,
        **about,
        "split": settings.split if settings.fold is None else None,
        "fold": settings.fold,
        "output_downsample": d_all[0] if len(d_all) == 1 else d_all,
        "output_downsample_rule": (
            "given" if settings.output_downsample else "source level of each slide"
        ),
        "label_at_output": "mask level at D, else the nearest pixel of the mask's source level",
        "source_mpp": source_mpp,
        "bands_px": list(settings.bands_px),
        **summarize(total, config, settings.bands_px),
        "peak_rss_mb": _peak_rss_mb(),
        "slides": per_slide,
    }


def _peak_rss_mb() -> float | None:
    """This process's own high-water resident memory (VmHWM), in MB (None if unknown)."""
    from pipelines.trainer import peak_rss_mb

    value = peak_rss_mb()
    return None if value != value else round(value, 1)


def _slide_entry(
    row: ManifestRow, tally: Tally, config: Config, settings: EvaluateSettings, d: float
) -> dict[str, Any]:
    from pipelines.evaluate_report import summarize

    entry = summarize(tally, config, settings.bands_px)
    entry.pop("counts")
    return {"slide_id": row.slide_id, "slide_path": str(row.slide_path), "downsample": d} | entry


def _model_regions(model: Any, device: str) -> RegionFn:
    """Predict each tissue region (infer's regions) with the composed model."""
    from pipelines.infer import find_regions
    from wsi_downsample.deformation import SlideSampler

    def regions_of(slide: Any, mask: Any, lut_known: Any, row: ManifestRow):
        import torch

        tissue = find_regions(slide, min_area_um2=_min_area(model))
        for region, component in zip(tissue.regions, tissue.components, strict=True):
            t0 = time.perf_counter()
            with (
                SlideSampler(
                    slide, level_choice=model.level_choice, source_mpp=model.source_mpp
                ) as sampler,
                torch.inference_mode(),
            ):
                pred = model.predict_region(
                    slide, region, sampler=sampler, labels=mask, label_lut=lut_known[0]
                )
            seconds = time.perf_counter() - t0
            stats = pred.stats
            yield RegionInput(
                region,
                pred.probs,
                pred.grid,
                stats.bytes_read,
                stats.tiles_decoded,
                seconds,
                tissue.owner,
                component,
            )

    return regions_of


def _min_area(model: Any) -> float:
    return float(getattr(model, "min_region_area_um2", 50_000.0))


def evaluate_model(
    manifest: str | Path,
    model_path: str | Path,
    settings: EvaluateSettings,
    *,
    checkpoint: str = "best",
    device: str = "cpu",
    loaded: Any = None,
    predictor: RegionFn | None = None,
) -> dict[str, Any]:
    """Run the model on the manifest's rows (split or fold) and score them."""
    from pipelines.run_dir import load_model

    if loaded is None:
        loaded = load_model(model_path, checkpoint=checkpoint, device=device)
    model, config = loaded.model.eval(), loaded.config
    model.min_region_area_um2 = config.data.min_region_area_um2
    rows = _rows(manifest, config, settings)
    about = {
        "route": "model",
        "sampler": model.density_name,
        "model": str(model_path),
        "checkpoint": checkpoint,
        "budget": str(model.budget),
        "manifest": str(Path(manifest).resolve()),
    }
    regions_of = predictor or _model_regions(model, device)
    return evaluate_rows(
        rows, config, regions_of, settings, source_mpp=model.source_mpp, about=about
    )


def _rows(manifest: str | Path, config: Config, settings: EvaluateSettings) -> list[ManifestRow]:
    rows = read_manifest(manifest, config, require_masks=True, slide_mpp=settings.slide_mpp)
    chosen = select_rows(rows, settings.split, settings.fold)
    if not chosen:
        which = f"fold {settings.fold}" if settings.fold is not None else f"split {settings.split}"
        raise ConfigError(
            f"{manifest}: no rows in {which}; choose a split or fold the manifest has",
            hint={"split": sorted({r.split for r in rows})[0]},
        )
    return chosen


def sidecar_paths(pred_dir: Path, row: ManifestRow) -> tuple[Path, Path | None]:
    """The row's ``STEM.sampling.npz`` (and ``STEM.summary.json``) in ``pred_dir``: STEM is
    the slide id or the slide file's stem, with or without ``.mask``."""
    names = dict.fromkeys([row.slide_id, row.slide_path.stem])
    stems = [pred_dir / f"{n}{m}" for n in names for m in (".mask", "")]
    found = [s for s in stems if s.with_name(s.name + ".sampling.npz").is_file()]
    if not found:
        tried = ", ".join(s.name + ".sampling.npz" for s in stems)
        raise ConfigError(
            f"{pred_dir}: no sampling sidecar for slide {row.slide_id} (tried {tried}); "
            "give the folder wsi-seg infer wrote the slide's outputs to"
        )
    stem = found[0]
    summary = stem.with_name(stem.name + ".summary.json")
    return stem.with_name(stem.name + ".sampling.npz"), summary if summary.is_file() else None


def _sidecar_owner(slide: Any, npz: Any, min_area_um2: float) -> Any:
    """The owner map of infer's regions when the sidecar names each region's component and
    the slide's regions found again have the same boxes (else None: whole boxes scored)."""
    from pipelines.infer import find_regions

    if not any(k.endswith("_component") for k in npz.files):
        return None
    tissue = find_regions(slide, min_area_um2=min_area_um2)
    boxes = {
        c: (r.x0, r.y0, r.x1, r.y1) for r, c in zip(tissue.regions, tissue.components, strict=True)
    }
    for key in (k for k in npz.files if k.endswith("_component")):
        box = tuple(int(v) for v in npz[key.replace("_component", "_box_xyxy")])
        if boxes.get(int(npz[key])) != box:
            return None
    return tissue.owner


def _sidecar_regions(pred_dir: Path, num_classes: int, min_area_um2: float) -> RegionFn:
    """Regions of an infer sidecar: warped argmax -> one-hot scores, with the slide's grid."""
    from wsi_downsample._types import Region

    def regions_of(slide: Any, mask: Any, lut_known: Any, row: ManifestRow):
        sampling, summary = sidecar_paths(pred_dir, row)
        records = {}
        if summary is not None:
            data = json.loads(summary.read_text())
            records = {r["index"]: r for r in data.get("regions", [])}
        with np.load(sampling) as npz:
            owner = _sidecar_owner(slide, npz, min_area_um2)
            found = (re.fullmatch(r"r(\d+)_box_xyxy", k) for k in npz.files)
            for index in sorted(int(m.group(1)) for m in found if m):
                key = f"r{index}"
                x0, y0, x1, y1 = (int(v) for v in npz[f"{key}_box_xyxy"])
                pred = npz[f"{key}_pred"].astype(np.int64)
                scores = (np.arange(num_classes)[:, None, None] == pred[None]).astype(np.float32)
                stats = json.loads(str(npz[f"{key}_stats_json"]))
                seconds = sum(records.get(index, {}).get("timings", {}).values())
                region = Region(index, x0, y0, x1, y1, float((x1 - x0) * (y1 - y0)))
                yield RegionInput(
                    region,
                    scores,
                    npz[f"{key}_grid"],
                    int(stats.get("bytes_read", 0)),
                    int(stats.get("tiles_decoded", 0)),
                    float(seconds),
                    owner,
                    int(npz[f"{key}_component"]) if owner is not None else 0,
                )

    return regions_of


def evaluate_pred_dir(
    manifest: str | Path,
    pred_dir: str | Path,
    config: Config,
    settings: EvaluateSettings,
    *,
    source_mpp: float | None = None,
    sampler: str | None = None,
) -> dict[str, Any]:
    """Score existing ``wsi-seg infer`` outputs through their sampling sidecars."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise ConfigError(f"prediction folder not found: {pred_dir}; give infer's output folder")
    rows = _rows(manifest, config, settings)
    info = _sidecar_model(pred_dir, rows[0])
    mpp = source_mpp or info.get("source_mpp") or config.data.source_mpp
    about = {
        "route": "pred-dir",
        "sampler": sampler or info.get("density"),
        "model": info.get("path"),
        "checkpoint": info.get("checkpoint"),
        "budget": info.get("budget"),
        "pred_dir": str(pred_dir.resolve()),
        "manifest": str(Path(manifest).resolve()),
    }
    regions_of = _sidecar_regions(pred_dir, config.num_classes, config.data.min_region_area_um2)
    return evaluate_rows(rows, config, regions_of, settings, source_mpp=float(mpp), about=about)


def _sidecar_model(pred_dir: Path, row: ManifestRow) -> dict[str, Any]:
    """The model record of the first row's ``STEM.classes.json`` (empty when absent)."""
    sampling, _ = sidecar_paths(pred_dir, row)
    classes = sampling.with_name(sampling.name.replace(".sampling.npz", ".classes.json"))
    if not classes.is_file():
        return {}
    return dict(json.loads(classes.read_text()).get("model", {}))


def write_report(report: dict[str, Any], out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``report.json``, ``per_class.csv`` and ``per_slide.csv`` into ``out_dir``
    together (all or none)."""
    from pipelines.evaluate_report import per_class_csv, per_slide_csv
    from wsi_downsample.io.atomic import OutputSet

    out_dir = Path(out_dir)
    paths = [out_dir / name for name in REPORT_FILES]
    with OutputSet(paths, overwrite=overwrite) as out:
        out.path(paths[0]).write_text(json.dumps(report, indent=2) + "\n")
        out.path(paths[1]).write_text(per_class_csv(report))
        out.path(paths[2]).write_text(per_slide_csv(report))
    return paths[0]


def parse_output_downsample(value: str | float | None) -> float | None:
    """``None`` (the source level's D) or a number >= 1; ``auto`` is refused: a comparison
    needs one D for every sampler, and ``auto`` depends on each grid."""
    if value is None:
        return None
    try:
        d = float(value)
    except (TypeError, ValueError):
        d = 0.0
    if not np.isfinite(d) or d < 1:
        raise ConfigError(
            f"output downsample must be a number >= 1 (one D for every sampler), got {value!r}; "
            "leave it unset for the source level's"
        )
    return d


def evaluate_from_options(
    *,
    manifest: Path,
    model: Path | None,
    pred_dir: Path | None,
    config_path: Path | None,
    checkpoint: str,
    split: str,
    fold: int | None,
    output_downsample: str | None,
    slide_mpp: float | None,
    device: str,
    output: Path | None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Resolve the CLI options, run one route, write the report folder (``-o``)."""
    from pipelines.config import load_config
    from wsi_downsample.io.atomic import check_outputs

    if (model is None) == (pred_dir is None):
        raise ConfigError(
            "give a trained model (it runs inference) or a folder of infer outputs, not both",
            hint={"model": "RUN_DIR"},
        )
    if output is not None:
        check_outputs([output / n for n in REPORT_FILES], overwrite)
    settings = EvaluateSettings(
        split=split,
        fold=fold,
        output_downsample=parse_output_downsample(output_downsample),
        slide_mpp=slide_mpp,
    )
    if model is not None:
        from pipelines.infer import resolve_device

        dev = resolve_device(device)
        report = evaluate_model(manifest, model, settings, checkpoint=checkpoint, device=dev)
    else:
        assert pred_dir is not None
        report = evaluate_pred_dir(manifest, pred_dir, load_config(config_path), settings)
    if output is not None:
        write_report(report, output, overwrite=overwrite)
    return report
