"""Figures from evaluation reports (PNG): the cost curve, class frequencies, trimap accuracy.

Each function takes ``wsi-seg evaluate`` report dicts (``report.json``) and writes one PNG
atomically. A report's series name is its ``series`` key when present (set by the comparison
driver, e.g. ``learned (joint)``), else its ``sampler``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["series_name", "plot_cost_curve", "plot_class_frequency", "plot_trimap"]

Report = dict[str, Any]


def series_name(report: Report) -> str:
    """The legend name of a report."""
    return str(report.get("series") or report.get("sampler") or "?")


def _figure(width: float = 6.0, height: float = 4.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _save(fig: Any, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    from wsi_downsample.io.atomic import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def _d_note(reports: Sequence[Report]) -> str:
    ds = sorted({str(r.get("output_downsample")) for r in reports})
    return f"scored at output downsample D = {', '.join(ds)}"


def plot_cost_curve(
    reports: Sequence[Report], path: str | Path, *, metric: str = "miou_full_resolution"
) -> Path:
    """mIoU vs the fraction of pixels sampled, per series (the paper's Figure 6).

    Reports of one series at one budget (seeds) become one point: the mean, with the
    min-max spread as an error bar.
    """
    points: dict[str, dict[Any, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in reports:
        if r.get(metric) is None or not r["cost"].get("sampled_fraction"):
            continue
        points[series_name(r)][str(r.get("budget"))].append(
            (float(r["cost"]["sampled_fraction"]), 100.0 * float(r[metric]))
        )
    fig, ax = _figure()
    for name, by_budget in sorted(points.items()):
        xs, ys, lo, hi = [], [], [], []
        for values in by_budget.values():
            arr = np.array(values)
            xs.append(arr[:, 0].mean())
            ys.append(arr[:, 1].mean())
            lo.append(arr[:, 1].mean() - arr[:, 1].min())
            hi.append(arr[:, 1].max() - arr[:, 1].mean())
        order = np.argsort(xs)
        ax.errorbar(
            np.array(xs)[order],
            np.array(ys)[order],
            yerr=[np.array(lo)[order], np.array(hi)[order]],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel("fraction of pixels sampled (cost)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_title(f"mIoU vs cost ({_d_note(reports)})", fontsize=9)
    ax.grid(True, alpha=0.3)
    if points:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_class_frequency(reports: Sequence[Report], path: str | Path) -> Path:
    """Per class: pixel frequency in the label vs in each series' sampled label (Figure 13)."""
    if not reports:
        raise ValueError("no reports to plot")
    classes = [c["class"] for c in reports[0]["per_class"]]
    bars = [("label", [c["label_frequency"] or 0.0 for c in reports[0]["per_class"]])]
    seen = set()
    for r in reports:
        if series_name(r) in seen:
            continue
        seen.add(series_name(r))
        bars.append(
            (f"sampled: {series_name(r)}", [c["sampled_frequency"] or 0.0 for c in r["per_class"]])
        )
    fig, ax = _figure(max(6.0, 1.2 * len(classes)), 4.0)
    width = 0.8 / len(bars)
    x = np.arange(len(classes))
    for k, (name, values) in enumerate(bars):
        ax.bar(x + (k - (len(bars) - 1) / 2) * width, 100.0 * np.array(values), width, label=name)
    ax.set_xticks(x, classes, rotation=20, fontsize=8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("pixels of the class (%)")
    ax.set_title(f"class frequency before and after sampling ({_d_note(reports)})", fontsize=9)
    ax.legend(fontsize=7, loc="best", framealpha=0.7)
    return _save(fig, path)


def plot_trimap(reports: Sequence[Report], path: str | Path) -> Path:
    """Trimap accuracy vs band width, one line per series (mean over its reports; Fig. 9b)."""
    curves: dict[str, list[list[float]]] = defaultdict(list)
    bands: dict[str, list[float]] = {}
    for r in reports:
        name = series_name(r)
        bands[name] = [t["band_px"] for t in r["trimap"]]
        curves[name].append(
            [np.nan if t["accuracy"] is None else t["accuracy"] for t in r["trimap"]]
        )
    fig, ax = _figure()
    for name in sorted(curves):
        acc = 100.0 * np.nanmean(np.array(curves[name], dtype=np.float64), axis=0)
        ax.plot(bands[name], acc, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("band width around label boundaries (px at D)")
    ax.set_ylabel("trimap accuracy (%)")
    ax.set_title(f"trimap accuracy ({_d_note(reports)})", fontsize=9)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    return _save(fig, path)
