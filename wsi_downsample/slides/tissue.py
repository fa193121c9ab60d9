"""Tissue regions, the unit of work: a low-resolution tissue mask and its connected components.

The mask is computed at ~8 um/px (or coarser, to at most ``max_side`` pixels): HSV
saturation above an Otsu threshold (clamped to [0.04, 0.2]), minus near-white glass and
near-black padding, then closing, opening, hole filling and removal of small objects.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from wsi_downsample._types import Region
from wsi_downsample.slides._common import read_level_downsampled, to_rgb
from wsi_downsample.slides.pyramid import best_level_for_downsample

__all__ = ["tissue_mask", "detect_tissue", "find_tissue_regions", "DEFAULT_MIN_AREA_UM2"]

#: components smaller than this (0.02 mm^2, a 140 um square) are debris, not tissue
DEFAULT_MIN_AREA_UM2 = 20_000.0
#: used instead when the slide has no mpp: a fraction of the mask's pixels
DEFAULT_MIN_AREA_FRACTION = 1e-4


def detect_tissue(
    rgb: np.ndarray,
    *,
    saturation_range: tuple[float, float] = (0.04, 0.2),
    white: int = 220,
    black: int = 25,
) -> np.ndarray:
    """Pixel-wise tissue: saturation above Otsu's threshold, not glass, not black.

    Otsu runs on the saturation of every non-black pixel; its threshold is clamped to
    ``saturation_range`` so a blank slide gives no tissue and dense tissue is not split.

    Shape: ``(h, w, 3)`` uint8 -> ``(h, w)`` bool.
    """
    from skimage.filters import threshold_otsu

    rgb = rgb.astype(np.float32)
    hi, lo = rgb.max(axis=2), rgb.min(axis=2)
    saturation = (hi - lo) / np.maximum(hi, 1.0)
    black_px = hi <= black
    values = saturation[~black_px]
    if values.size == 0:
        return np.zeros(saturation.shape, bool)
    otsu = threshold_otsu(values) if np.ptp(values) > 0 else saturation_range[1]
    threshold = float(np.clip(otsu, *saturation_range))
    return (saturation > threshold) & ~black_px & (lo < white)


def clean_mask(mask: np.ndarray, *, min_pixels: float, smooth_px: int = 2) -> np.ndarray:
    """Closing, opening, hole filling, then drop components below ``min_pixels``.

    The mask is edge-padded first so tissue touching the border is not eroded.

    Shape: ``(h, w)`` bool -> ``(h, w)`` bool.
    """
    from skimage.morphology import disk

    if smooth_px > 0:
        pad = smooth_px + 1
        padded = np.pad(mask, pad, mode="edge")
        padded = ndi.binary_closing(padded, disk(smooth_px))
        padded = ndi.binary_opening(padded, disk(max(1, smooth_px // 2)))
        mask = padded[pad:-pad, pad:-pad]
    mask = ndi.binary_fill_holes(mask)
    labels, n = ndi.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def mask_downsample(reader: Any, *, mpp: float = 8.0, max_side: int = 2048) -> float:
    """Level-0 pixels per tissue-mask pixel: reach ``mpp`` and at most ``max_side`` pixels."""
    w, h = reader.dimensions
    ds = max(w, h) / max_side
    if reader.mpp is not None:
        ds = max(ds, mpp / math.sqrt(reader.mpp.x * reader.mpp.y))
    return max(ds, 1.0)


def tissue_mask(
    reader: Any,
    *,
    mpp: float = 8.0,
    max_side: int = 2048,
    min_area_um2: float = DEFAULT_MIN_AREA_UM2,
    min_area_fraction: float = DEFAULT_MIN_AREA_FRACTION,
    smooth_px: int = 2,
    **detect_kw: Any,
) -> tuple[np.ndarray, float]:
    """Boolean tissue mask of a slide and the downsample of its pixels (level-0 px per pixel).

    Reads the coarsest level at least as fine as the mask spacing (``mpp`` um/px, at most
    ``max_side`` px on the long side) and area-averages it by an integer factor in strips.
    Small objects: below ``min_area_um2`` (or ``min_area_fraction`` of the mask when the
    slide has no mpp). ``detect_kw`` go to ``detect_tissue``.

    Shape: mask ``(ceil(H / d), ceil(W / d))`` bool, ``d`` the returned downsample.
    """
    target = mask_downsample(reader, mpp=mpp, max_side=max_side)
    level = best_level_for_downsample(reader.level_downsamples, target)
    level_ds = reader.level_downsamples[level]
    factor = max(1, math.floor(target / level_ds + 1e-6))
    view = getattr(reader, "window_view", reader.level_array)(level)  # fast path when offered
    rgb = to_rgb(read_level_downsampled(view, factor))
    downsample = level_ds * factor
    if reader.mpp is not None:
        pixel_um2 = reader.mpp.x * reader.mpp.y * downsample**2
        min_pixels = min_area_um2 / pixel_um2
    else:
        min_pixels = min_area_fraction * rgb.shape[0] * rgb.shape[1]
    mask = clean_mask(detect_tissue(rgb, **detect_kw), min_pixels=min_pixels, smooth_px=smooth_px)
    return mask, downsample


def find_tissue_regions(reader: Any, *, pad: int = 0, **kw: Any) -> list[Region]:
    """Connected tissue components as level-0 bounding boxes, in reading order.

    Boxes cover every mask pixel of a component (``floor``/``ceil`` of the mask pixel
    edges times the downsample), grow by ``pad`` level-0 pixels and are clipped to the
    slide; ``area`` is the component's pixel count in level-0 pixels. Sorted by top edge,
    then left edge; indices 0..n-1. A plain image (backend ``image``) is one region
    covering it; no tissue gives ``[]``. ``kw`` go to ``tissue_mask``.
    """
    w, h = reader.dimensions
    if reader.backend == "image":
        return [Region(0, 0, 0, w, h, float(w * h))]
    mask, ds = tissue_mask(reader, **kw)
    labels, n = ndi.label(mask, structure=np.ones((3, 3)))
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    boxes = []
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        x0 = max(0, math.floor(sl[1].start * ds) - pad)
        y0 = max(0, math.floor(sl[0].start * ds) - pad)
        x1 = min(w, math.ceil(sl[1].stop * ds) + pad)
        y1 = min(h, math.ceil(sl[0].stop * ds) + pad)
        area = min(float(counts[k]) * ds * ds, float((x1 - x0) * (y1 - y0)))
        # (y0, x0, x1, y1, area): a sort key for reading order (top to bottom, left to
        # right), not a box convention; regions leave here as BoxXYXY (Region.x0 ... y1)
        boxes.append((y0, x0, x1, y1, area))
    boxes.sort()
    return [Region(i, x0, y0, x1, y1, area) for i, (y0, x0, x1, y1, area) in enumerate(boxes)]
