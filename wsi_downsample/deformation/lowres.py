"""The low-resolution view X_lr of a region (docs/method.md, piece 1): exact area averages."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from wsi_downsample._types import BoxXYXY, Region
from wsi_downsample.slides._common import to_rgb
from wsi_downsample.slides.base import SlideReader
from wsi_downsample.slides.pyramid import best_level_for_downsample

__all__ = ["lowres_level", "area_weights", "area_resize", "read_lowres"]


def lowres_level(downsamples: Sequence[float], region: Region, shape_hw: tuple[int, int]) -> int:
    """The coarsest level at least as fine as the view's spacing on both axes.

    The spacing is the region's size over the view's shape per axis, in level-0 pixels.
    """
    h, w = shape_hw
    if h < 1 or w < 1:
        raise ValueError(f"low-res shape must be positive, got {shape_hw}")
    rh, rw = region.shape_hw
    return best_level_for_downsample(downsamples, min(rh / h, rw / w))


def area_weights(start: float, stop: float, n_out: int, n_in: int) -> torch.Tensor:
    """Exact box-filter weights of ``n_out`` equal cells over ``[start, stop)`` on pixels.

    Input pixel ``p`` covers ``[p, p + 1)``; a weight is the overlap of a cell with a pixel,
    rows normalised to sum to 1 (cells reaching past ``[0, n_in)`` average what is inside).

    Shape: ``-> (n_out, n_in)`` float64.
    """
    edges = start + (stop - start) * torch.arange(n_out + 1, dtype=torch.float64) / n_out
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(hi, pix + 1) - torch.maximum(lo, pix)).clamp_(min=0)
    total = overlap.sum(1, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError(f"cells of [{start}, {stop}) fall outside the {n_in} input pixels")
    return overlap / total


def area_resize(image: torch.Tensor, box: BoxXYXY, shape_hw: tuple[int, int]) -> torch.Tensor:
    """Area-average the box ``(x0, y0, x1, y1)`` (pixel units of ``image``) to ``shape_hw``.

    Separable and exact in continuous coordinates: each output pixel is the mean of the
    image over its cell, partial pixels weighted by their overlap. With integer factors it
    equals ``F.interpolate(mode="area")``.

    Shape: ``(c, H, W)`` -> ``(c, h, w)`` float64.
    """
    x0, y0, x1, y1 = box
    wy = area_weights(y0, y1, shape_hw[0], image.shape[1])
    wx = area_weights(x0, x1, shape_hw[1], image.shape[2])
    return torch.einsum("ip,cpq,jq->cij", wy, image.to(torch.float64), wx)


def read_lowres(slide: SlideReader, region: Region, shape_hw: tuple[int, int]) -> torch.Tensor:
    """X_lr: the region at ``shape_hw``, area-averaged from the level just finer than it.

    Reads only the level pixels under the region at ``lowres_level`` (never level 0
    unless the view is that fine), then averages exact cells of size region / shape.

    Shape: ``-> (3, h, w)`` float32 in [0, 1].
    """
    level = lowres_level(slide.level_downsamples, region, shape_hw)
    ds = slide.level_downsamples[level]
    lh, lw = slide.levels[level].shape_hw
    box = (region.x0 / ds, region.y0 / ds, region.x1 / ds, region.y1 / ds)
    c0, r0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    c1, r1 = min(lw, math.ceil(box[2])), min(lh, math.ceil(box[3]))
    if c1 <= c0 or r1 <= r0:
        raise ValueError(f"region {region} lies outside level {level} ({lw}x{lh} px, w x h)")
    pixels = to_rgb(np.asarray(slide.level_array(level)[r0:r1, c0:c1]))
    image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
    local = (box[0] - c0, box[1] - r0, box[2] - c0, box[3] - r0)
    return (area_resize(image, local, shape_hw) / 255.0).to(torch.float32)
