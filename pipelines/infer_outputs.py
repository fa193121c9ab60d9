"""The outputs of `wsi-seg infer`: inverse onto a canvas, then mask, sidecars, GeoJSON, preview."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["invert_regions", "write_outputs"]

_GEOJSON_BLOCK = 1024
_PREVIEW_SIDE = 1024


def invert_regions(
    canvas: Any, results: Sequence[Any], owner: Any, downsample: int, tile_size: int
) -> list[np.ndarray]:
    """Exact inverse of every region onto the canvas at ``downsample``; each output pixel
    goes to the region owning it. Returns the pixel counts per class of each region.
    """
    from wsi_downsample.deformation import OutputFrame, iter_inverse_tiles

    counts = []
    for r in results:
        box = (r.region.x0, r.region.y0, r.region.x1, r.region.y1)
        frame = OutputFrame.for_region(box, downsample)
        total = np.zeros(canvas.num_classes, np.int64)
        tiles = iter_inverse_tiles(
            r.prediction.probs,
            r.prediction.grid,
            frame.shape_hw,
            origin_xy=frame.origin_xy,
            downsample=downsample,
            tile_size=tile_size,
        )
        for t in tiles:
            row0, col0 = frame.row0 + t.row0, frame.col0 + t.col0
            keep = owner.tile(row0, col0, t.labels.shape, downsample) == r.component
            total += canvas.write(row0, col0, t.labels, keep)
        counts.append(total)
    return counts


def _bounds_xy(slide: Any) -> tuple[float, float]:
    props = slide.properties
    return (
        float(props.get("openslide.bounds-x", 0) or 0),
        float(props.get("openslide.bounds-y", 0) or 0),
    )


def _region_record(r: Any, counts: np.ndarray, classes: Any, pixel_um2: float) -> dict:
    from wsi_downsample.io.sidecars import class_areas

    pred = r.prediction
    stats = pred.stats.as_dict() if hasattr(pred.stats, "as_dict") else {}
    return {
        "index": r.region.index,
        "box_xyxy": [r.region.x0, r.region.y0, r.region.x1, r.region.y1],
        "tissue_area_um2": r.region.area * pixel_um2,
        "task_hw": list(pred.task_hw),
        "auto_downsample": r.auto_downsample,
        "mean_sample_spacing_um": r.spacing_um,
        "spacing_too_coarse": bool(r.spacing_um > 16.0),
        "classes": class_areas(counts, classes, pixel_um2),
        "bytes_decoded": stats.get("bytes_read", 0),
        "tiles_decoded": stats.get("tiles_decoded", 0),
        "timings": {k: float(v) for k, v in getattr(pred, "timings", {}).items()},
    }


def _write_sampling(path: Any, results: Sequence[Any], budget: str) -> None:
    """The budget; per region: box, task shape, grid, density, read stats, warped argmax."""
    arrays: dict[str, Any] = {"regions": np.array(len(results)), "budget": np.array(budget)}
    for r in results:
        pred, key = r.prediction, f"r{r.region.index}_"
        probs = np.asarray(pred.probs)
        arrays[key + "box_xyxy"] = np.array([r.region.x0, r.region.y0, r.region.x1, r.region.y1])
        arrays[key + "component"] = np.array(r.component)  # its pixels in the owner map
        arrays[key + "task_hw"] = np.array(pred.task_hw)
        arrays[key + "grid"] = np.asarray(pred.grid, np.float64)
        arrays[key + "density"] = np.asarray(pred.density, np.float32)
        arrays[key + "pred"] = probs.argmax(0).astype(np.uint8)
        stats = pred.stats.as_dict() if hasattr(pred.stats, "as_dict") else {}
        arrays[key + "stats_json"] = np.array(json.dumps(stats))
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def write_outputs(
    slide: Any,
    paths: Any,
    results: Sequence[Any],
    tissue: Any,
    classes: Sequence[tuple[int, str, Sequence[int]]],
    settings: Any,
    *,
    mpp: float,
    inverse_downsample: int,
    output_downsample: int,
    timings: dict[str, float],
) -> dict[str, Any]:
    """Invert the regions onto a canvas and write the output set; return the summary."""
    from pipelines.run_record import versions
    from wsi_downsample.io.atomic import OutputSet
    from wsi_downsample.io.canvas import LabelCanvas, frame_shape
    from wsi_downsample.io.sidecars import class_areas, classes_record, write_json

    w0, h0 = slide.dimensions
    d = inverse_downsample
    n_classes = max(v for v, _, _ in classes) + 1
    pixel_um2 = (mpp * d) ** 2
    with (
        OutputSet(paths.all(), overwrite=settings.overwrite) as out,
        LabelCanvas(
            frame_shape((w0, h0), d), tmp_dir=paths.mask.parent, num_classes=n_classes
        ) as canvas,
    ):
        t0 = time.perf_counter()
        counts = invert_regions(canvas, results, tissue.owner, d, settings.tile_size)
        timings["inverse"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        level = _write_mask(
            out.path(paths.mask), canvas, slide, classes, mpp, d, output_downsample, settings
        )
        timings["write_mask"] = time.perf_counter() - t0
        slide_counts = canvas.class_counts()
        n_features = None
        if paths.geojson is not None:
            t0 = time.perf_counter()
            n_features = _write_geojson(out.path(paths.geojson), canvas, classes, d, slide, mpp)
            timings["write_geojson"] = time.perf_counter() - t0
        if paths.preview is not None:
            t0 = time.perf_counter()
            _write_preview(out.path(paths.preview), canvas, slide, results, classes)
            timings["write_preview"] = time.perf_counter() - t0
        if paths.probabilities is not None:
            from pipelines.infer_probs import write_probabilities

            t0 = time.perf_counter()
            write_probabilities(
                out.path(paths.probabilities),
                results,
                tissue.owner,
                d,
                frame_shape((w0, h0), d),
                classes,
                mpp,
                settings.tile_size,
            )
            timings["write_probabilities"] = time.perf_counter() - t0
        budget = str(settings.model_info.get("budget", ""))
        _write_sampling(out.path(paths.sampling), results, budget)
        record = classes_record(
            classes,
            slide_mpp=mpp,
            downsample=output_downsample,
            model=settings.model_info,
            versions=versions(),
        )
        write_json(out.path(paths.classes), record)
        regions = [
            _region_record(r, c, classes, pixel_um2) for r, c in zip(results, counts, strict=True)
        ]
        summary = {
            "mask": str(paths.mask),
            "mask_shape_hw": list(level[0]),
            "mask_levels": len(level),
            "slide_mpp": mpp,
            "output_downsample": output_downsample,
            "inverse_downsample": d,
            "mask_mpp": mpp * output_downsample,
            "regions": regions,
            "flagged_regions": [r["index"] for r in regions if r["spacing_too_coarse"]],
            "tissue_area_um2": float(sum(r.region.area for r in results)) * mpp * mpp,
            "classes": class_areas(slide_counts, classes, pixel_um2),
            "geojson_features": n_features,
            "bytes_decoded": int(sum(r["bytes_decoded"] for r in regions)),
            "timings": dict(timings),
            "model": settings.model_info,
        }
        write_json(out.path(paths.summary), summary)
    return summary


def _write_mask(
    path: Any,
    canvas: Any,
    slide: Any,
    classes: Any,
    mpp: float,
    d: int,
    out_d: int,
    settings: Any,
) -> tuple[tuple[int, int], ...]:
    from wsi_downsample.io.canvas import frame_shape
    from wsi_downsample.io.mask_tiff import write_label_tiff
    from wsi_downsample.io.sidecars import legend_metadata

    shape = frame_shape(slide.dimensions, out_d)
    reader = canvas.upsampled(d // out_d, shape) if out_d != d else canvas.read
    result = write_label_tiff(
        path,
        shape,
        reader,
        mpp=mpp * out_d,
        tile_size=512,
        metadata=legend_metadata(classes, name=f"{slide.path.name} labels"),
        progress=settings.progress,
    )
    return result.level_shapes


def _write_geojson(path: Any, canvas: Any, classes: Any, d: int, slide: Any, mpp: float) -> int:
    from wsi_downsample.io.geojson import feature_collection, label_features

    shown = [c for c in classes if c[0] != 0]
    feats = label_features(
        canvas.iter_blocks(_GEOJSON_BLOCK, overlap=1),
        shown,
        downsample=float(d),
        offset_xy=_bounds_xy(slide),
        mpp=mpp,
    )
    collection = feature_collection(feats)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(collection, handle)
    return len(collection["features"])


def _write_preview(path: Any, canvas: Any, slide: Any, results: Any, classes: Any) -> None:
    from wsi_downsample.io.preview import render_preview, write_preview

    side = _PREVIEW_SIDE // 2
    thumb = np.asarray(slide.get_thumbnail((side, side)))
    labels = canvas.thumbnail((thumb.shape[1], thumb.shape[0]))
    points = [np.asarray(r.prediction.grid, np.float64).reshape(-1, 2) for r in results]
    image = render_preview(
        thumb,
        labels,
        classes,
        slide_size_wh=slide.dimensions,
        points_xy=points,
        title=f"{slide.path.name}: {len(results)} region(s)",
    )
    write_preview(path, image)
