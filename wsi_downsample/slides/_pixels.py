"""Pixel operations shared by the readers: RGB conversion, compositing, integer-factor reduction."""

from __future__ import annotations

import numpy as np

from wsi_downsample.slides.base import LazyLevel

__all__ = [
    "to_rgb",
    "composite_on_white",
    "area_downsample",
    "nearest_downsample",
    "read_level_downsampled",
]

#: level pixels per row strip when reducing a whole level (bounds memory to ~12 MB of RGB)
_STRIP_PIXELS = 1 << 22


def to_rgb(block: np.ndarray) -> np.ndarray:
    """Make ``(h, w)``, ``(h, w, 1)``, ``(h, w, 3)`` or ``(h, w, 4)`` uint8 pixels RGB.

    Shape: ``(h, w[, c])`` -> ``(h, w, 3)``.
    """
    if block.ndim == 2:
        block = block[..., None]
    if block.shape[2] == 1:
        return np.repeat(block, 3, axis=2)
    if block.shape[2] == 4:
        return composite_on_white(block)
    return block[..., :3]


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Alpha-composite straight (not premultiplied) RGBA onto white.

    Shape: ``(h, w, 4)`` -> ``(h, w, 3)``.
    """
    if rgba.size and rgba[..., 3].min() == 255:  # opaque (every tile inside a slide): no math
        return np.ascontiguousarray(rgba[..., :3])
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def area_downsample(block: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` cells; edge cells average only the pixels they hold.

    Shape: ``(h, w[, c])`` -> ``(ceil(h / f), ceil(w / f)[, c])``.
    """
    if factor == 1:
        return block
    h, w = block.shape[:2]
    oh, ow = -(-h // factor), -(-w // factor)
    pad = [(0, oh * factor - h), (0, ow * factor - w)] + [(0, 0)] * (block.ndim - 2)
    tail = block.shape[2:]
    sums = np.pad(block.astype(np.float64), pad).reshape(oh, factor, ow, factor, *tail)
    sums = sums.sum(axis=(1, 3))
    rows = np.minimum(factor, h - np.arange(oh) * factor)
    cols = np.minimum(factor, w - np.arange(ow) * factor)
    counts = (rows[:, None] * cols[None, :]).reshape(oh, ow, *([1] * len(tail)))
    return np.rint(sums / counts).astype(block.dtype)


def nearest_downsample(block: np.ndarray, factor: int) -> np.ndarray:
    """Take the centre pixel of each ``factor x factor`` cell (labels: never average).

    Edge cells take their centre pixel clamped to the block.

    Shape: ``(h, w[, c])`` -> ``(ceil(h / f), ceil(w / f)[, c])``.
    """
    if factor == 1:
        return block
    h, w = block.shape[:2]
    rows = np.minimum(np.arange(0, h, factor) + factor // 2, h - 1)
    cols = np.minimum(np.arange(0, w, factor) + factor // 2, w - 1)
    return block[rows][:, cols]


def read_level_downsampled(array: LazyLevel, factor: int, *, nearest: bool = False) -> np.ndarray:
    """Read a whole level in row strips and reduce it by ``factor`` (bounded memory).

    Images are area-averaged; labels (``nearest``) take the centre pixel of each cell.

    Shape: level ``(H, W[, c])`` -> ``(ceil(H / f), ceil(W / f)[, c])``.
    """
    h, w = array.shape[:2]
    rows = max(1, _STRIP_PIXELS // max(1, w * factor)) * factor
    strips = []
    for y in range(0, h, rows):
        block = np.asarray(array[y : y + rows])
        reduce = nearest_downsample if nearest else area_downsample
        strips.append(reduce(block, factor))
    return np.concatenate(strips, axis=0)
