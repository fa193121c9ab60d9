"""Scoring one predicted region at one output downsample D: counts that sum over a set.

Per region: the full-resolution prediction is the exact inverse of the warped-space scores
over the region's frame at D; the label is read at D (the mask level at D, else the nearest
pixel of the mask's source level); the sampled labels come from the same grid (nearest, fixed
source level); Y' is their exact inverse. Everything is kept as counts (``Tally``), so a set
is scored by summing tallies and taking IoUs once.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from wsi_downsample._types import Region
from wsi_downsample.deformation import OutputFrame, invert_labels, iter_inverse_tiles
from wsi_downsample.deformation._tiles import as_numpy
from wsi_downsample.deformation.targets import boundary_map
from wsi_downsample.metrics import confusion_counts
from wsi_downsample.models.regions import LabelSampler, map_labels
from wsi_downsample.slides.pyramid import RTOL

__all__ = ["IGNORE", "RegionInput", "Tally", "LabelReader", "score_region", "trimap_table"]

IGNORE = 255


class RegionInput(NamedTuple):
    """One region's prediction, from a model or an infer sidecar.

    ``scores`` ``(C, h, w)`` warped-space class scores (softmax, or one-hot of an argmax);
    ``grid`` ``(h, w, 2)`` level-0 ``(x, y)``; ``seconds`` the prediction's wall time.
    """

    region: Region
    scores: Any
    grid: Any
    bytes_decoded: int = 0
    tiles_decoded: int = 0
    seconds: float = 0.0
    #: ``io.canvas.TissueOwner`` of the slide's regions and this region's component: where
    #: padded boxes overlap, an output pixel is scored only in the region owning it (as
    #: infer writes it). None scores the whole box.
    owner: Any = None
    component: int = 0


def _zeros(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, np.int64)


@dataclass
class Tally:
    """Counts of a region, a slide or a set; ``+=`` sums them.

    ``full``, ``warped``, ``intrinsic``: confusion counts ``(C, C + 1)`` of the inverse vs the
    label at D, of P_hat vs Y_hat, of Y' vs the label at D; ``trimap`` ``(B, 2)`` correct and
    total pixels per band; ``label_px``/``sampled_px`` ``(C,)`` pixels per class in the label
    at D and in the sampled label; cost: samples, region pixels at the source mpp, bytes and
    tiles decoded, seconds predicting and scoring.
    """

    num_classes: int
    num_bands: int
    full: np.ndarray = field(init=False)
    warped: np.ndarray = field(init=False)
    intrinsic: np.ndarray = field(init=False)
    trimap: np.ndarray = field(init=False)
    label_px: np.ndarray = field(init=False)
    sampled_px: np.ndarray = field(init=False)
    regions: int = 0
    samples: int = 0
    source_pixels: float = 0.0
    bytes_decoded: int = 0
    tiles_decoded: int = 0
    seconds_predict: float = 0.0
    seconds_score: float = 0.0

    def __post_init__(self) -> None:
        c = self.num_classes
        self.full, self.warped, self.intrinsic = (_zeros((c, c + 1)) for _ in range(3))
        self.trimap = _zeros((self.num_bands, 2))
        self.label_px, self.sampled_px = _zeros((c,)), _zeros((c,))

    def __iadd__(self, other: Tally) -> Tally:
        for f in fields(self):
            if f.name not in ("num_classes", "num_bands"):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


class LabelReader:
    """A mask's labels for one region: at an output frame (D) and at grid points.

    ``sampled`` is ``LabelSampler`` (the model's own label reader: nearest, fixed source
    level); ``at`` reads the mask level whose pixel is D slide pixels, else takes the nearest
    source-level pixel of every output pixel centre.
    """

    def __init__(
        self,
        mask: Any,
        *,
        source_mpp: float,
        lut: np.ndarray | None,
        known_values: Collection[int] | None,
    ) -> None:
        self.mask, self.lut, self.known_values = mask, lut, known_values
        self.frame = float(getattr(mask, "frame_downsample", 1.0))
        self.sampler = LabelSampler(mask, source_mpp=source_mpp, lut=lut, known_values=known_values)

    def level_for(self, downsample: float) -> int:
        """The mask level read for output downsample D (its own, else the source level)."""
        for k, ds in enumerate(self.mask.level_downsamples):
            if abs(ds * self.frame - downsample) <= RTOL * downsample:
                return k
        return int(self.sampler.sampler.source_level)

    def at(self, frame: OutputFrame) -> np.ndarray:
        """Labels of an output frame. Shape: ``-> frame.shape_hw`` uint8 class values."""
        level = self.level_for(frame.downsample)
        ds = self.mask.level_downsamples[level] * self.frame
        w_l, h_l = self.mask.level_dimensions[level]
        (h, w), d = frame.shape_hw, frame.downsample
        rows = np.clip(np.floor((frame.row0 + np.arange(h) + 0.5) * d / ds), 0, h_l - 1)
        cols = np.clip(np.floor((frame.col0 + np.arange(w) + 0.5) * d / ds), 0, w_l - 1)
        rows, cols = rows.astype(np.int64), cols.astype(np.int64)
        r0, c0 = int(rows[0]), int(cols[0])
        window = self.mask.level_array(level)[r0 : int(rows[-1]) + 1, c0 : int(cols[-1]) + 1]
        raw = np.asarray(window)
        raw = (raw[..., 0] if raw.ndim == 3 else raw)[np.ix_(rows - r0, cols - c0)]
        source = str(getattr(self.mask, "path", "mask"))
        return np.asarray(map_labels(raw, self.lut, self.known_values, source=source), np.uint8)

    def close(self) -> None:
        self.sampler.close()


def _trimap_rows(
    pred: np.ndarray, target: np.ndarray, bands_px: Sequence[float], keep: np.ndarray | None
) -> np.ndarray:
    """Correct and total pixels within each band of the label boundaries (one distance map;
    the same pixels as ``metrics.trimap_counts``), counting only ``keep`` pixels.
    Shape: ``-> (B, 2)`` int64."""
    out = _zeros((len(bands_px), 2))
    edges = boundary_map(target)
    if not edges.any():
        return out
    dist = ndimage.distance_transform_edt(~edges)
    labelled, hit = target != IGNORE, pred == target
    if keep is not None:
        labelled &= keep
    for b, band in enumerate(bands_px):
        inside = (dist <= band) & labelled
        out[b] = (int((hit & inside).sum()), int(inside.sum()))
    return out


def score_region(
    item: RegionInput,
    labels: LabelReader,
    *,
    downsample: float,
    num_classes: int,
    bands_px: Sequence[float],
    source_downsample: float,
    tile_size: int = 512,
) -> Tally:
    """Every count of one region at output downsample D (see the module docstring)."""
    t0 = time.perf_counter()
    box = (item.region.x0, item.region.y0, item.region.x1, item.region.y1)
    frame = OutputFrame.for_region(box, downsample)
    scores, grid = as_numpy(item.scores), as_numpy(item.grid).astype(np.float64)
    kw: dict[str, Any] = {"origin_xy": frame.origin_xy, "downsample": downsample}
    truth = labels.at(frame)
    keep = None
    if item.owner is not None:
        keep = item.owner.tile(frame.row0, frame.col0, frame.shape_hw, downsample) == item.component
    scored = truth if keep is None else np.where(keep, truth, np.uint8(IGNORE))
    pred = np.empty(frame.shape_hw, np.uint8)
    for t in iter_inverse_tiles(scores, grid, frame.shape_hw, tile_size=tile_size, **kw):
        pred[t.rows, t.cols] = t.labels
    import torch

    sampled = labels.sampler(torch.from_numpy(grid)).numpy()
    recon = invert_labels(
        sampled, grid, frame.shape_hw, num_classes=num_classes, ignore_index=IGNORE, **kw
    )
    tally = Tally(num_classes, len(bands_px))
    tally.full = confusion_counts(pred, scored, num_classes, ignore_index=IGNORE)
    tally.warped = confusion_counts(scores.argmax(0), sampled, num_classes, ignore_index=IGNORE)
    tally.intrinsic = confusion_counts(recon, scored, num_classes, ignore_index=IGNORE)
    tally.trimap = _trimap_rows(pred, truth, bands_px, keep)
    tally.label_px = np.bincount(scored[scored != IGNORE], minlength=num_classes)[:num_classes]
    kept = sampled[sampled != IGNORE]
    tally.sampled_px = np.bincount(kept, minlength=num_classes)[:num_classes]
    w, h = item.region.size_wh
    tally.regions, tally.samples = 1, int(grid.shape[0] * grid.shape[1])
    tally.source_pixels = w * h / source_downsample**2
    tally.bytes_decoded, tally.tiles_decoded = int(item.bytes_decoded), int(item.tiles_decoded)
    tally.seconds_predict = float(item.seconds)
    tally.seconds_score = time.perf_counter() - t0
    return tally


def trimap_table(tally: Tally, bands_px: Sequence[float]) -> list[dict[str, Any]]:
    """Trimap accuracy per band: ``[{band_px, accuracy, pixels}]`` (accuracy None if empty)."""
    out = []
    for band, (correct, total) in zip(bands_px, tally.trimap, strict=True):
        acc = float(correct / total) if total else None
        out.append({"band_px": float(band), "accuracy": acc, "pixels": int(total)})
    return out
