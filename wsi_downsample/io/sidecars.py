"""Output names by the STEM rule, the mask's class legend and its JSON sidecar records."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ClassEntry",
    "OutputPaths",
    "output_stem",
    "output_paths",
    "legend_metadata",
    "classes_record",
    "class_areas",
    "write_json",
]

ClassEntry = tuple[int, str, Sequence[int]]
"""``(value, name, (r, g, b))`` of one output class."""


def output_stem(path: str | os.PathLike[str]) -> Path:
    """The output name without ``.tif``/``.tiff`` and then a trailing ``.ome``.

    ``x/slide.mask.ome.tif`` and ``x/slide.mask.tif`` both give ``x/slide.mask``.
    """
    path = Path(path)
    name = path.name
    for suffix in (".tiff", ".tif", ".TIFF", ".TIF"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.lower().endswith(".ome"):
        name = name[:-4]
    return path.with_name(name)


@dataclass(frozen=True)
class OutputPaths:
    """Every file of one slide's output set; optional ones are None when not asked for."""

    mask: Path
    classes: Path
    summary: Path
    sampling: Path
    geojson: Path | None = None
    preview: Path | None = None
    probabilities: Path | None = None

    def all(self) -> list[Path]:
        """The paths that will be written, mask first."""
        items: list[Path | None] = [self.mask, self.classes, self.summary, self.sampling]
        items += [self.geojson, self.preview, self.probabilities]
        return [p for p in items if p is not None]


def output_paths(
    mask: str | os.PathLike[str],
    *,
    geojson: bool | str | os.PathLike[str] = True,
    preview: bool | str | os.PathLike[str] = True,
    probabilities: str | os.PathLike[str] | None = None,
) -> OutputPaths:
    """Paths of a slide's outputs by the STEM rule (``True``: the default name)."""
    stem = output_stem(mask)

    def pick(value: bool | str | os.PathLike[str], suffix: str) -> Path | None:
        if value is True:
            return stem.with_name(stem.name + suffix)
        if value is False or value is None:
            return None
        return Path(value)

    return OutputPaths(
        mask=Path(mask),
        classes=stem.with_name(stem.name + ".classes.json"),
        summary=stem.with_name(stem.name + ".summary.json"),
        sampling=stem.with_name(stem.name + ".sampling.npz"),
        geojson=pick(geojson, ".geojson"),
        preview=pick(preview, ".preview.png"),
        probabilities=None if probabilities is None else Path(probabilities),
    )


def legend_metadata(classes: Sequence[ClassEntry], name: str = "") -> dict[str, Any]:
    """OME metadata for the mask: the class legend as a MapAnnotation ``value -> name``
    (namespace ``wsi-seg/classes``) and colours ``color:value -> #rrggbb``."""
    legend: dict[str, str] = {"Namespace": "wsi-seg/classes"}
    for value, cname, _ in classes:
        legend[str(value)] = cname
    for value, _, colour in classes:
        legend[f"color:{value}"] = "#{:02x}{:02x}{:02x}".format(*(int(c) for c in colour))
    meta: dict[str, Any] = {"MapAnnotation": legend}
    if name:
        meta["Name"] = name
    return meta


def classes_record(
    classes: Sequence[ClassEntry],
    *,
    slide_mpp: float,
    downsample: int,
    model: Mapping[str, Any],
    versions: Mapping[str, str],
    ignore: int | None = 255,
) -> dict[str, Any]:
    """The ``STEM.classes.json`` record: classes, values, colours, model, mpp, downsample."""
    return {
        "classes": [
            {"value": int(v), "name": n, "color": [int(c) for c in col]} for v, n, col in classes
        ],
        "ignore_value": ignore,
        "slide_mpp": slide_mpp,
        "output_downsample": downsample,
        "mask_mpp": slide_mpp * downsample,
        "model": dict(model),
        "versions": dict(versions),
    }


def class_areas(
    counts: np.ndarray, classes: Sequence[ClassEntry], pixel_um2: float
) -> dict[str, dict[str, float | None]]:
    """Area (um^2) and percent of predicted tissue (every class but value 0) per class.

    Shape: counts ``(C,)`` pixels per class value.
    """
    tissue = float(sum(counts[v] for v, _, _ in classes if v != 0 and v < len(counts)))
    out: dict[str, dict[str, float | None]] = {}
    for value, name, _ in classes:
        n = float(counts[value]) if value < len(counts) else 0.0
        pct = 100.0 * n / tissue if tissue and value != 0 else None
        out[name] = {"area_um2": n * pixel_um2, "percent_of_tissue": pct}
    return out


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON to ``path`` (a staging path of an output set: written in place)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=_default)
        handle.write("\n")


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
