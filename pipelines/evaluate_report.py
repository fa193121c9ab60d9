"""The evaluation report: IoUs from summed counts, class frequencies, cost, CSV tables, text."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.config import Config
from pipelines.evaluate_score import Tally, trimap_table
from wsi_downsample.metrics import iou_from_counts

__all__ = ["METRICS", "summarize", "per_class_csv", "per_slide_csv", "format_report"]

#: report key -> what it is (the three frames are never mixed)
METRICS = {
    "miou_full_resolution": "exact inverse of the warped prediction vs the label, both at D",
    "miou_warped_space": "P_hat vs Y_hat (labels sampled with the same grid, nearest)",
    "intrinsic_iou": "IoU(Y',Y): exact inverse of the sampled labels vs the label at D",
}
_COUNTS = {
    "miou_full_resolution": "full",
    "miou_warped_space": "warped",
    "intrinsic_iou": "intrinsic",
}


def _none(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def _mean(iou: np.ndarray) -> float | None:
    present = iou[np.isfinite(iou)]
    return float(present.mean()) if present.size else None


def _frequency(px: np.ndarray) -> list[float | None]:
    total = px.sum()
    return [float(v / total) if total else None for v in px]


def summarize(tally: Tally, config: Config, bands_px: Sequence[float]) -> dict[str, Any]:
    """mIoUs (present classes only), per-class table, absent classes, trimap and cost."""
    names = [config.class_names.get(i, str(i)) for i in range(config.num_classes)]
    ious = {key: iou_from_counts(getattr(tally, attr)) for key, attr in _COUNTS.items()}
    full = ious["miou_full_resolution"]
    label_f, sampled_f = _frequency(tally.label_px), _frequency(tally.sampled_px)
    per_class = [
        {
            "class": name,
            "value": value,
            **{key.replace("miou", "iou"): _none(iou[value]) for key, iou in ious.items()},
            "label_pixels": int(tally.label_px[value]),
            "sampled_pixels": int(tally.sampled_px[value]),
            "label_frequency": label_f[value],
            "sampled_frequency": sampled_f[value],
        }
        for value, name in enumerate(names)
    ]
    seconds = tally.seconds_predict + tally.seconds_score
    return {
        **{key: _mean(iou) for key, iou in ious.items()},
        "metrics": METRICS,
        "absent_classes": [n for n, v in zip(names, full, strict=True) if np.isnan(v)],
        "absent_classes_rule": "union 0 over the set (no label, no prediction): left out of means",
        "per_class": per_class,
        "trimap": trimap_table(tally, bands_px),
        "cost": {
            "regions": tally.regions,
            "samples": tally.samples,
            "region_pixels_at_source_mpp": tally.source_pixels,
            "sampled_fraction": tally.samples / tally.source_pixels
            if tally.source_pixels
            else None,
            "bytes_decoded": tally.bytes_decoded,
            "tiles_decoded": tally.tiles_decoded,
            "seconds_predict": tally.seconds_predict,
            "seconds_score": tally.seconds_score,
            "seconds_total": seconds,
        },
        "counts": {key: getattr(tally, attr).tolist() for key, attr in _COUNTS.items()},
    }


def _fmt(value: Any) -> Any:
    return "" if value is None else (f"{value:.6g}" if isinstance(value, float) else value)


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_fmt(v) for v in row] for row in rows])
    return buffer.getvalue()


def per_class_csv(report: dict[str, Any]) -> str:
    """One line per class: the three IoUs, label and sampled frequencies."""
    keys = list(report["per_class"][0]) if report["per_class"] else []
    return _csv(keys, [[c[k] for k in keys] for c in report["per_class"]])


def per_slide_csv(report: dict[str, Any]) -> str:
    """One line per slide: the three mIoUs, trimap per band and cost."""
    bands = [f"trimap_{b:g}px" for b in report["bands_px"]]
    cost = ["sampled_fraction", "bytes_decoded", "seconds_predict", "seconds_score"]
    header = ["slide_id", "downsample", "regions", *_COUNTS, *bands, *cost]
    rows = []
    for s in report["slides"]:
        trimap = [t["accuracy"] for t in s["trimap"]]
        rows.append(
            [s["slide_id"], s["downsample"], s["cost"]["regions"]]
            + [s[k] for k in _COUNTS]
            + trimap
            + [s["cost"][k] for k in cost]
        )
    return _csv(header, rows)


def format_report(report: dict[str, Any]) -> str:
    """A short text summary (the command's stdout)."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}"

    c = report["cost"]
    lines = [
        f"sampler {report.get('sampler')}, budget {report.get('budget')}, "
        f"output downsample {report['output_downsample']} (label read at D), "
        f"{len(report['slides'])} slide(s), {c['regions']} region(s)",
        f"  mIoU full resolution {pct(report['miou_full_resolution'])}  "
        f"warped space {pct(report['miou_warped_space'])}  "
        f"IoU(Y',Y) {pct(report['intrinsic_iou'])}",
        "  trimap accuracy "
        + ", ".join(f"{t['band_px']:g}px {pct(t['accuracy'])}" for t in report["trimap"]),
        f"  cost: sampled fraction {c['sampled_fraction'] or 0:.5f}, "
        f"{c['bytes_decoded'] / 1e6:.1f} MB decoded, {c['seconds_predict']:.1f} s predicting, "
        f"{c['seconds_score']:.1f} s scoring, peak memory {report.get('peak_rss_mb')} MB",
    ]
    if report["absent_classes"]:
        lines.append(f"  absent classes (left out of the means): {report['absent_classes']}")
    return "\n".join(lines)
