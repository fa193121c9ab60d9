"""Results of ``compare.py``: the markdown table, the target check, the plots, results.json."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from wsi_downsample.metrics import iou_from_counts, mean_iou

__all__ = ["write_results", "group_rows", "pixels_to_match"]

KEYS = ("miou_full_resolution", "miou_warped_space", "intrinsic_iou")


def _pooled(reports: list[dict[str, Any]], key: str) -> float | None:
    """mIoU of counts summed over reports (folds: one set)."""
    counts = np.sum([np.array(r["counts"][key]) for r in reports], axis=0)
    value = mean_iou(counts)
    return None if math.isnan(value) else value


def _last_val(item: dict[str, Any]) -> float | None:
    """Full-resolution val mIoU of the run's last validation (its ``last`` checkpoint's
    epoch; the run's own ``val_output_downsample``), from metrics.csv; None without one."""
    for row in reversed(item.get("train_rows") or []):
        value = row.get("val_miou_full_resolution")
        if value not in (None, ""):
            return float(value)
    return None


def group_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data, series, scale): mean and min-max over seeds; folds pooled."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for item in results:
        run = item["run"]
        groups[(run["data"], run["series"], run["scale"])].append(item)
    rows = []
    for (data, series, scale), items in sorted(groups.items()):
        reports = [i["report"] for i in items]
        folds = items[0]["run"]["fold"] is not None
        row: dict[str, Any] = {"data": data, "series": series, "scale": scale, "n": len(items)}
        row["budget"] = reports[0].get("budget")
        row["sampled_fraction"] = float(np.mean([r["cost"]["sampled_fraction"] for r in reports]))
        row["seconds_predict_per_region"] = float(
            np.mean([r["cost"]["seconds_predict"] / max(r["cost"]["regions"], 1) for r in reports])
        )
        row["train_s"] = float(np.mean([i["timings"].get("train_s", 0.0) for i in items]))
        for key in KEYS:
            values = [r[key] for r in reports if r[key] is not None]
            row[key] = (
                _pooled(reports, key) if folds else (float(np.mean(values)) if values else None)
            )
            row[key + "_min"] = min(values) if values else None
            row[key + "_max"] = max(values) if values else None
        vals = [_last_val(i) for i in items]
        vals = [v for v in vals if v is not None]
        row["val_miou_full_resolution"] = float(np.mean(vals)) if vals else None
        row["val_miou_full_resolution_min"] = min(vals) if vals else None
        row["val_miou_full_resolution_max"] = max(vals) if vals else None
        row["pooled_over"] = "folds (counts summed)" if folds else "seeds (mean, min-max)"
        rows.append(row)
    return rows


def pixels_to_match(rows: list[dict[str, Any]], target: float) -> float | None:
    """Pixels (x the smaller budget) uniform needs to reach ``target`` full-res mIoU: linear
    in log pixels between the measured points; None when the largest does not reach it."""
    pts = sorted(
        (r["scale"], r["miou_full_resolution"])
        for r in rows
        if r["data"] == "synthetic" and r["series"] == "uniform" and r["miou_full_resolution"]
    )
    for (s0, m0), (s1, m1) in zip(pts, pts[1:], strict=False):
        if m0 >= target:
            return s0
        if m1 >= target:
            t = (target - m0) / (m1 - m0)
            return float(math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0))))
    return pts[0][0] if pts and pts[0][1] >= target else None


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| data | sampler | pixels | budget | n | full-res mIoU (seeds: mean; folds: pooled "
        "counts) [min, max of the runs] | warped mIoU "
        "| IoU(Y',Y) | val mIoU at the last validation [min, max] | sampled fraction "
        "| predict s/region | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spread = f"[{_pct(r['miou_full_resolution_min'])}, {_pct(r['miou_full_resolution_max'])}]"
        val = r.get("val_miou_full_resolution")
        val_spread = (
            f"{_pct(val)} [{_pct(r['val_miou_full_resolution_min'])}, "
            f"{_pct(r['val_miou_full_resolution_max'])}]"
            if val is not None
            else "—"
        )
        lines.append(
            f"| {r['data']} | {r['series']} | x{r['scale']:g} | {r['budget']} | {r['n']} "
            f"| {_pct(r['miou_full_resolution'])} {spread} | {_pct(r['miou_warped_space'])} "
            f"| {_pct(r['intrinsic_iou'])} | {val_spread} | {r['sampled_fraction']:.5f} "
            f"| {r['seconds_predict_per_region']:.2f} | {r['train_s']:.0f} |"
        )
    return lines


#: learned series whose target is checked (the recipe's, then the paper's edge loss)
TARGET_SERIES = ("learned (joint)", "learned (joint, min-max L_e)")


def _target(rows: list[dict[str, Any]]) -> list[str]:
    def find(series: str, scale: float = 1.0) -> dict[str, Any] | None:
        for r in rows:
            if r["data"] == "synthetic" and r["series"] == series and r["scale"] == scale:
                if r["miou_full_resolution"] is not None:
                    return r
        return None

    uniform = find("uniform")
    learned_rows = [(name, find(name)) for name in TARGET_SERIES]
    learned_rows = [(name, row) for name, row in learned_rows if row is not None]
    if uniform is None or not learned_rows:
        return ["Target check: not enough runs."]
    largest = max(r["scale"] for r in rows if r["data"] == "synthetic" and r["series"] == "uniform")
    lines = []
    for name, learned in learned_rows:
        gain = 100 * (learned["miou_full_resolution"] - uniform["miou_full_resolution"])
        need = pixels_to_match(rows, learned["miou_full_resolution"])
        if need is not None:
            need_text, verdict = f"x{need:.2f}", "met" if need >= 2 else "missed"
        elif largest >= 2:
            need_text, verdict = f"more than x{largest:g} (the largest uniform run)", "met"
        else:  # no uniform run above x1: nothing shows how many pixels uniform needs
            need_text, verdict = "more than x1, no larger uniform run", "not measured"
        lines += [
            f"- {name} - uniform at the smaller budget (n = {learned['n']} vs {uniform['n']}): "
            f"{gain:+.1f} full-resolution mIoU points (target >= +3): "
            f"{'met' if gain >= 3 else 'missed'}",
            f"- pixels uniform needs to match {name}: {need_text} (target >= x2): {verdict}",
        ]
        if learned.get("val_miou_full_resolution") is not None and uniform.get(
            "val_miou_full_resolution"
        ):
            val_gain = 100 * (
                learned["val_miou_full_resolution"] - uniform["val_miou_full_resolution"]
            )
            lines.append(
                f"  - the same models on the val slide (their last validation, chosen by "
                f"nothing): {val_gain:+.1f} points"
            )
    return lines


def _per_class(results: list[dict[str, Any]]) -> list[str]:
    """Full-resolution IoU per class of each group, from counts summed over its runs (shows
    whether a model only predicts the majority class: the segmenter, not the sampler, limits)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for item in results:
        run = item["run"]
        groups[(run["data"], run["series"], run["scale"])].append(item["report"])
    if not groups:
        return []
    names = [c["class"] for c in next(iter(groups.values()))[0]["per_class"]]
    lines = [
        "| data | sampler | pixels | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for (data, series, scale), reports in sorted(groups.items()):
        counts = np.sum([np.array(r["counts"]["miou_full_resolution"]) for r in reports], axis=0)
        iou = iou_from_counts(counts)
        cells = " | ".join("—" if np.isnan(v) else f"{100 * v:.1f}" for v in iou)
        lines.append(f"| {data} | {series} | x{scale:g} | {cells} |")
    return lines


def _gleason_intrinsic(extra: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| density | IoU(Y',Y) (counts summed) | tiles |", "|---|---|---|"]
    for name, reports in extra.items():
        if not reports:
            continue
        counts = np.sum([np.array(r["counts"]) for r in reports], axis=0)
        rows = sum(len(r["rows"]) for r in reports)
        lines.append(f"| {name} | {_pct(mean_iou(counts))} | {rows} |")
    return lines


def _compute_minutes(results: list[dict[str, Any]]) -> float:
    """Minutes of train + evaluate summed over the runs (from their cached timings): the
    plan's cost from scratch, whatever this invocation found cached."""
    seconds = sum(
        float(r["timings"].get("train_s", 0.0)) + float(r["timings"].get("evaluate_s", 0.0))
        for r in results
    )
    return seconds / 60


def write_results(
    out: Path, results: list[dict[str, Any]], extra: dict[str, Any], meta: dict[str, Any]
) -> None:
    """``results.json``, ``results.md`` and the three plots into ``out``."""
    from pipelines.plots import plot_class_frequency, plot_cost_curve, plot_trimap
    from wsi_downsample.io.atomic import write_json_atomic, write_text_atomic

    rows = group_rows(results)
    reports = []
    for item in results:
        reports.append(item["report"] | {"series": item["run"]["series"]})
    synthetic = [
        r for r, i in zip(reports, results, strict=True) if i["run"]["data"] == "synthetic"
    ]
    small = [
        r for r, i in zip(reports, results, strict=True)
        if i["run"]["data"] == "synthetic" and i["run"]["scale"] == 1.0
    ]  # fmt: skip
    if synthetic:
        plot_cost_curve(synthetic, out / "cost_curve.png")
        plot_class_frequency(small, out / "class_frequency.png")
        plot_trimap(small, out / "trimap.png")
    d = sorted({str(r.get("output_downsample")) for r in reports})
    lines = [
        "# Learned vs uniform vs edge at equal pixel budgets",
        "",
        f"Command: `{meta['command']}`; {meta['arch']} stem stride {meta['stem_stride']}, "
        f"{meta['epochs']} epochs x {meta['steps_per_epoch_max']} steps, recipe "
        f"{meta.get('recipe', {})}, seeds "
        f"{meta['seeds']}, `last` checkpoints; {meta['machine']}; this invocation "
        f"{meta['wall_s'] / 60:.1f} min; train + evaluate of every run in the plan (cached "
        f"ones included) {_compute_minutes(results):.1f} min.",
        f"Scored at output downsample D = {', '.join(d)} (the source level; label read at D). "
        "Full-resolution mIoU = exact inverse vs the label; warped = P_hat vs Y_hat; IoU(Y',Y) "
        "of each model's own grid. Edge blur chosen by IoU(Y',Y): "
        + ", ".join(f"{k} {v['blur']:g}" for k, v in meta["edge"].items())
        + ".",
        "",
        *_table(rows),
        "",
        "## Full-resolution IoU per class (counts summed over seeds or folds)",
        *_per_class(results),
        "",
        "## Target (synthetic set)",
        *_target(rows),
        "",
        "## IoU(Y',Y) on the Gleason example tiles",
        *_gleason_intrinsic(extra),
        "",
        "Plots: `cost_curve.png` (Fig. 6), `class_frequency.png` (Fig. 13), "
        "`trimap.png` (Fig. 9b).",
    ]
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")
    write_json_atomic(out / "results.json", {"meta": meta, "rows": rows, "runs": results})
    print(json.dumps({"rows": len(rows)}))
