"""Helpers of the slide-layer tests: small pyramidal TIFF slides written with tifffile.

(A plain module imported by the tests next to it, not a conftest: fixtures live in
``tests/conftest.py``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

__all__ = ["reduce_area", "write_pyramid_tiff", "tissue_image"]


def reduce_area(image: np.ndarray, factor: int) -> np.ndarray:
    """Area-average by an integer factor (sizes are multiples of it in these tests)."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: h * factor, : w * factor].reshape(h, factor, w, factor, *image.shape[2:])
    return np.rint(blocks.astype(np.float64).mean(axis=(1, 3))).astype(np.uint8)


def write_pyramid_tiff(
    path: Path,
    image: np.ndarray,
    *,
    factors: Sequence[int] = (1,),
    tile: int = 64,
    compression: str = "zlib",
    mpp: float | None = 0.5,
    subifds: bool = False,
    nearest: bool = False,
) -> Path:
    """A tiled pyramidal TIFF: levels in the main IFD chain (``subifds=False``, a generic
    TIFF for tiffslide and OpenSlide) or OME-TIFF SubIFDs; lower levels area-averaged
    (``nearest``: strided, for labels)."""
    kw: dict[str, Any] = {"tile": (tile, tile), "compression": compression}
    if mpp is not None:
        kw.update(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
    if image.ndim == 3:
        kw["photometric"] = "rgb"
    levels = [
        image[::f, ::f] if nearest else reduce_area(image, f) if f > 1 else image for f in factors
    ]
    with tifffile.TiffWriter(path, ome=subifds) as tw:
        if subifds:
            meta = {} if mpp is None else {"PhysicalSizeX": mpp, "PhysicalSizeY": mpp}
            tw.write(levels[0], subifds=len(levels) - 1, metadata=meta, **kw)
        else:
            tw.write(levels[0], metadata=None, **kw)
        for level in levels[1:]:
            tw.write(level, subfiletype=1, metadata=None, **kw)
    return path


def tissue_image(
    shape_hw: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]], seed: int = 0
) -> np.ndarray:
    """White glass with faint noise and dark-pink rectangles ``(x0, y0, x1, y1)``."""
    rng = np.random.default_rng(seed)
    img = np.full((*shape_hw, 3), 240, np.uint8)
    img += rng.integers(0, 10, img.shape, dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:
        img[y0:y1, x0:x1] = (200, 90, 160)
    return img
