"""Write synthetic Aperio-style slides with their Gleason label masks, one or a whole set."""

from __future__ import annotations

import csv
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from wsi_downsample._types import Region
from wsi_downsample.errors import ConfigError
from wsi_downsample.io.mask_tiff import atomic_path, write_label_tiff
from wsi_downsample.synthetic.budget_layout import make_budget_layout
from wsi_downsample.synthetic.budget_render import render_budget_labels, render_budget_rgb
from wsi_downsample.synthetic.layout import CLASS_NAMES, Layout, make_layout
from wsi_downsample.synthetic.render import render_labels, render_rgb
from wsi_downsample.synthetic.svs import write_svs

__all__ = [
    "PRESETS",
    "SyntheticSlide",
    "write_synthetic_slide",
    "write_synthetic_set",
    "split_for",
]


@dataclass(frozen=True)
class _Preset:
    """How a preset lays out a slide and renders a tile's labels and pixels."""

    layout: Any
    labels: Any
    rgb: Any


PRESETS = {
    "default": _Preset(make_layout, render_labels, render_rgb),
    "budget": _Preset(make_budget_layout, render_budget_labels, render_budget_rgb),
}
"""Synthetic slide presets: ``default`` (small glands in class zones along each core) and
``budget`` (PCa-Histo-like regional lesions in stroma; see ``make_budget_layout``)."""


def _preset(name: str) -> _Preset:
    if name not in PRESETS:
        raise ConfigError(
            f"unknown synthetic preset {name!r}; available: {', '.join(PRESETS)}",
            hint={"preset": "budget"},
        )
    return PRESETS[name]


_MASK_TILE = 512
_AUTO_PROGRESS_TILES = 4096  # progress=None shows a bar from this many level-0 tiles


@dataclass(frozen=True)
class SyntheticSlide:
    """A synthetic slide on disk and what is known about it by construction.

    ``regions``: level-0 bounding boxes (and tissue areas) of the cores, in reading order,
    measured on the mask as written. ``class_counts[c]``: level-0 pixels of class ``c``
    (0 background, 1 benign, 2 Gleason 3, 3 Gleason 4, 4 atrophy, 5 HGPIN).
    """

    slide_path: Path
    mask_path: Path
    regions: tuple[Region, ...]
    shape_hw: tuple[int, int]
    mpp: float
    class_counts: tuple[int, ...]
    seed: int


class _LabelStats:
    """A tile reader of labels that also measures each core's box and area, and class counts."""

    def __init__(self, layout: Layout, render: Any = render_labels) -> None:
        self.layout = layout
        self.render = render
        n = len(layout.cores)
        self.box = np.array([[np.inf, np.inf, -np.inf, -np.inf]] * n)  # x0, y0, x1, y1
        self.area = np.zeros(n, np.int64)
        self.counts = np.zeros(len(CLASS_NAMES), np.int64)

    def __call__(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        tile = self.render(self.layout, y0, x0, h, w)
        self.counts += np.bincount(tile.labels.ravel(), minlength=len(CLASS_NAMES))
        for k in tile.cores:
            inside = tile.core == k
            if len(tile.cores) == 1 and inside.all():  # interior tile: skip the scans
                rows, cols, area = np.array([0, h - 1]), np.array([0, w - 1]), h * w
            else:
                rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
                area = int(inside.sum())
                if area == 0:
                    continue
            b = self.box[k]
            b[0], b[1] = min(b[0], x0 + cols[0]), min(b[1], y0 + rows[0])
            b[2], b[3] = max(b[2], x0 + cols[-1] + 1), max(b[3], y0 + rows[-1] + 1)
            self.area[k] += area
        return tile.labels

    def regions(self) -> tuple[Region, ...]:
        found = [k for k in range(len(self.area)) if self.area[k] > 0]
        found.sort(key=lambda k: (self.box[k][1], self.box[k][0]))
        boxes = [[int(v) for v in self.box[k]] for k in found]
        return tuple(
            Region(i, b[0], b[1], b[2], b[3], float(self.area[k]))
            for i, (k, b) in enumerate(zip(found, boxes, strict=True))
        )


def _mask_metadata(
    name: str, seed: int, shape_hw: tuple[int, int], preset: str = "default"
) -> dict[str, object]:
    """OME metadata of the mask: a UUID fixed by name, seed, size and preset (identical
    bytes per seed) and the class legend as a MapAnnotation."""
    key = f"wsi-seg/synthetic/{name}/{seed}/{shape_hw[0]}x{shape_hw[1]}"
    if preset != "default":  # the default preset's UUIDs stay as they were
        key += f"/{preset}"
    legend = {str(v): n for v, n in enumerate(CLASS_NAMES)}
    return {
        "UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
        "Name": f"{name} labels",
        "MapAnnotation": {"Namespace": "wsi-seg/classes", **legend},
    }


def _label_image(name: str, seed: int, shape_hw: tuple[int, int]) -> np.ndarray:
    """A slide label: white card with the slide's name, seed and size."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 256), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    text = f"wsi-seg synthetic\n{name}\nseed {seed}\n{shape_hw[0]}x{shape_hw[1]}"
    draw.multiline_text((12, 12), text, fill=(0, 0, 0), spacing=8)
    draw.rectangle((12, 150, 244, 240), outline=(0, 0, 0), width=3)
    return np.asarray(img)


def _macro_image(label: np.ndarray, layout: Layout) -> np.ndarray:
    """A macro photo: the label beside a coarse drawing of the cores on glass."""
    h, w = layout.shape_hw
    scale = 256 / h
    mw = max(32, round(w * scale))
    ys = ((np.arange(256) + 0.5) / scale).astype(np.int64)[:, None]
    xs = ((np.arange(mw) + 0.5) / scale).astype(np.int64)[None, :]
    from wsi_downsample.synthetic.render import core_uv_sd

    glass = np.full((256, mw, 3), 225, np.uint8)
    for core in layout.cores:
        glass[core_uv_sd(core, xs + 0.5, ys + 0.5)[1] < 0] = (205, 150, 185)
    return np.concatenate([label, glass], axis=1)


def _progress(progress: bool | None, shape_hw: tuple[int, int], tile: int) -> bool | None:
    """``None`` -> a bar (off when not a terminal) only for large slides."""
    if progress is not None:
        return progress
    n_tiles = -(-shape_hw[0] // tile) * -(-shape_hw[1] // tile)
    return None if n_tiles >= _AUTO_PROGRESS_TILES else False


def write_synthetic_slide(
    out_dir: str | os.PathLike[str],
    shape_hw: tuple[int, int] = (1536, 2048),
    *,
    seed: int = 0,
    name: str = "synthetic_000",
    mpp: float = 0.5,
    tile_size: int = 256,
    n_regions: int | None = None,
    compression: Literal["jpeg", "zlib"] = "jpeg",
    progress: bool | None = None,
    preset: str = "default",
) -> SyntheticSlide:
    """Write ``NAME.svs`` (H&E-like, Aperio layout) and ``NAME.mask.ome.tif`` (labels).

    Deterministic by ``seed``. Tissue: elongated cores (needle-biopsy-like: bent rounded
    rectangles, 4-10 times as long as thick, ~1 mm thick or less on small slides) on a
    near-white background; pink stroma with spindle nuclei; small glands (4-20 um across)
    whose class follows zones along each core. Labels: 0 background, 1 benign (stroma
    and benign glands), 2 Gleason 3, 3 Gleason 4, 4 atrophy, 5 HGPIN glands (whole
    gland, rim and lumen). Every tile is computed on its own from the seed, so memory
    stays at a few tile rows at any size. ``progress``: None shows tqdm bars on large
    slides when writing to a terminal. ``preset="budget"``: PCa-Histo-like slides instead
    (1 mm cores, stroma = class 0, lesion blobs of classes 1-5; see ``make_budget_layout``).

    Returns
    -------
    SyntheticSlide
    """
    kind = _preset(preset)
    shape_hw = (int(shape_hw[0]), int(shape_hw[1]))
    layout = kind.layout(shape_hw, seed, mpp, n_regions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = _LabelStats(layout, kind.labels)
    mask_path = out / f"{name}.mask.ome.tif"
    write_label_tiff(
        mask_path,
        shape_hw,
        stats,
        mpp=mpp,
        tile_size=_MASK_TILE,
        compression="deflate",
        pyramid="nearest",
        metadata=_mask_metadata(name, seed, shape_hw, preset),
        progress=_progress(progress, shape_hw, _MASK_TILE),
    )
    label = _label_image(name, seed, shape_hw)
    slide_path = out / f"{name}.svs"
    write_svs(
        slide_path,
        shape_hw,
        lambda y, x, h, w: kind.rgb(layout, y, x, h, w)[0],
        mpp=mpp,
        tile_size=tile_size,
        compression=compression,
        label=label,
        macro=_macro_image(label, layout),
        progress=_progress(progress, shape_hw, tile_size),
    )
    counts = tuple(int(c) for c in stats.counts)
    return SyntheticSlide(slide_path, mask_path, stats.regions(), shape_hw, mpp, counts, seed)


def split_for(index: int, count: int) -> str:
    """Split of slide ``index`` of ``count``: ~60/20/20 train/val/test (1: train; 2: +val)."""
    n_test = 0 if count < 3 else max(1, round(0.2 * count))
    n_val = 0 if count < 2 else max(1, round(0.2 * count))
    if index >= count - n_test:
        return "test"
    return "val" if index >= count - n_test - n_val else "train"


def write_synthetic_set(
    out_dir: str | os.PathLike[str],
    shape_hw: tuple[int, int],
    count: int,
    seed: int = 0,
    *,
    progress: bool | None = None,
    **kwargs: object,
) -> Path:
    """Write ``count`` slides (seeds ``seed..seed+count-1``), their masks and ``manifest.csv``.

    The manifest has columns ``slide_path,mask_path,split,slide_id,mpp`` with paths
    relative to ``out_dir``; splits by :func:`split_for`. Extra keyword arguments go to
    :func:`write_synthetic_slide`. Returns the manifest's path.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    out = Path(out_dir)
    rows = []
    for i in range(count):
        name = f"synthetic_{i:03d}"
        s = write_synthetic_slide(
            out,
            shape_hw,
            seed=seed + i,
            name=name,
            progress=progress,
            **kwargs,  # type: ignore[arg-type]
        )
        rows.append((s.slide_path.name, s.mask_path.name, split_for(i, count), name, s.mpp))
    manifest = out / "manifest.csv"
    with atomic_path(manifest) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide_path", "mask_path", "split", "slide_id", "mpp"])
        writer.writerows(rows)
    return manifest
