"""The base of every reader: level bookkeeping, padded ``read_region``, tiles, thumbnails."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wsi_downsample._arrays import as_pair
from wsi_downsample._types import Mpp
from wsi_downsample.errors import CorruptSlideError, LevelError, WsiSegError
from wsi_downsample.slides._checks import corrupt_error, plausible_mpp
from wsi_downsample.slides._levels import ArrayLevel, LazyMapping, WindowLevel
from wsi_downsample.slides._pixels import (
    area_downsample,
    composite_on_white,
    nearest_downsample,
    read_level_downsampled,
    to_rgb,
)
from wsi_downsample.slides._tiff import TiffTiles
from wsi_downsample.slides.base import LazyLevel, LevelInfo
from wsi_downsample.slides.pyramid import best_level_for_downsample

__all__ = [
    "ReaderBase",
    "MppLike",
    "as_mpp",
    # re-exported for the readers and other packages
    "WindowLevel",
    "ArrayLevel",
    "LazyMapping",
    "to_rgb",
    "composite_on_white",
    "area_downsample",
    "nearest_downsample",
    "read_level_downsampled",
]

MppLike = float | tuple[float, float] | Mpp | None


def as_mpp(value: MppLike) -> Mpp | None:
    """Normalise a caller's mpp (a float, an ``(x, y)`` pair or None) to ``Mpp``."""
    return None if value is None else Mpp(*as_pair(value, "mpp"))


class ReaderBase:
    """What every backend shares: level bookkeeping, padded ``read_region``, thumbnails.

    Subclasses set ``_shapes_hw``, ``_tiles_hw`` (and optionally ``_downsamples``,
    ``_file_mpp``, and ``_tiles`` for native TIFF tile access) in ``__init__`` and
    implement ``level_array``.
    """

    backend: str = ""
    is_mask: bool = False
    _shapes_hw: tuple[tuple[int, int], ...]
    _tiles_hw: tuple[tuple[int, int], ...]
    _downsamples: tuple[float, ...] | None = None
    _file_mpp: Mpp | None = None
    _tiles: TiffTiles | None = None

    def __init__(self, path: str | Path, mpp: MppLike = None) -> None:
        self.path = Path(path)
        self._mpp_override = as_mpp(mpp)

    # -- levels -------------------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self._shapes_hw)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((w, h) for h, w in self._shapes_hw)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        if self._downsamples is not None:
            return self._downsamples
        h0, w0 = self._shapes_hw[0]
        return tuple((w0 / w + h0 / h) / 2.0 for h, w in self._shapes_hw)

    @property
    def levels(self) -> tuple[LevelInfo, ...]:
        return tuple(
            LevelInfo(k, shape, ds, tile)
            for k, (shape, ds, tile) in enumerate(
                zip(self._shapes_hw, self.level_downsamples, self._tiles_hw, strict=True)
            )
        )

    @property
    def mpp(self) -> Mpp | None:
        """Level-0 mpp: the caller's, else the file's when plausible (``plausible_mpp``)."""
        return self._mpp_override or plausible_mpp(self._file_mpp)

    @property
    def objective_power(self) -> float | None:
        return None

    @property
    def vendor(self) -> str | None:
        return None

    @property
    def properties(self) -> Mapping[str, Any]:
        return {}

    @property
    def associated_images(self) -> Mapping[str, np.ndarray]:
        return {}

    def check_level(self, level: int) -> int:
        """Return ``level`` or raise LevelError listing the levels this file has."""
        if not 0 <= int(level) < self.level_count:
            sizes = ", ".join(f"{k}: {w}x{h}" for k, (w, h) in enumerate(self.level_dimensions))
            raise LevelError(
                f"{self.path}: no level {level}; levels (width x height): {sizes}; "
                f"use a level between 0 and {self.level_count - 1}"
            )
        return int(level)

    # -- pixels -------------------------------------------------------------------------
    def level_array(self, level: int) -> LazyLevel:
        raise NotImplementedError

    @property
    def fill_value(self) -> int:
        """What areas outside the slide read as: white for slides, 0 for masks."""
        return 0 if self.is_mask else 255

    def read_region(
        self, location_xy: tuple[int, int], level: int, size_wh: tuple[int, int]
    ) -> np.ndarray:
        """Pixels of ``size_wh`` at ``level`` whose top-left is ``location_xy`` (level 0).

        The level-``k`` top-left is ``floor(location / downsample_k)``; areas outside the
        level are padded with ``fill_value``.

        Shape: ``(h, w, 3)`` uint8 for slides, ``(h, w)`` for masks.
        """
        level = self.check_level(level)
        w, h = (int(v) for v in size_wh)
        if w < 0 or h < 0:
            raise ValueError(f"read_region size must be non-negative, got {size_wh}")
        ds = self.level_downsamples[level]
        lx, ly = (math.floor(v / ds + 1e-9) for v in location_xy)
        lh, lw = self._shapes_hw[level]
        out = np.full((h, w) if self.is_mask else (h, w, 3), self.fill_value, np.uint8)
        x0, x1, y0, y1 = max(lx, 0), min(lx + w, lw), max(ly, 0), min(ly + h, lh)
        if x1 > x0 and y1 > y0:
            out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = self._read_window(level, y0, y1, x0, x1)
        return out

    def _read_window(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Decode an in-bounds window of a level as RGB (slides) or labels (masks).

        TIFF-backed readers assemble it from native tiles (``_tiles``), ~2x faster than
        slicing tiffslide's zarr array; others slice ``level_array``.
        """
        try:
            if self._tiles is not None:
                block = self._tiles.read_window(level, y0, y1, x0, x1)
            else:
                block = np.asarray(self.level_array(level)[y0:y1, x0:x1])
        except WsiSegError:
            raise
        except Exception as exc:  # noqa: BLE001 - any codec failure means a corrupt file
            raise self._corrupt(f"level {level} rows {y0}:{y1} cols {x0}:{x1}", exc) from exc
        return self._pixels(block)

    def _pixels(self, block: np.ndarray) -> np.ndarray:
        """Raw decoded pixels -> what this reader returns (RGB here; masks: labels)."""
        return to_rgb(block)

    def window_view(self, level: int) -> WindowLevel:
        """A lazy view of a level returning what ``read_region`` returns (RGB or labels),
        read through the reader's fastest path.

        Shape: ``(h, w, 3)`` for slides, ``(h, w)`` for masks.
        """
        level = self.check_level(level)
        (h, w), (th, tw) = self._shapes_hw[level], self._tiles_hw[level]
        tail = () if self.is_mask else (3,)

        def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            return self._read_window(level, y0, y1, x0, x1)

        return WindowLevel((h, w, *tail), (th, tw, *tail), read)

    def _corrupt(self, what: str, exc: BaseException) -> CorruptSlideError:
        return corrupt_error(self.path, f"cannot decode {what}", exc)

    def read_tile(self, level: int, tile_row: int, tile_col: int) -> np.ndarray:
        """Decode one native tile (clipped at the level's edge); default: a window read.

        Shape: ``(th, tw, 3)`` (slides) or ``(th, tw)`` (masks), smaller at the edges.
        """
        y0, y1, x0, x1 = self.tile_bounds(level, tile_row, tile_col)
        if self._tiles is not None:
            return self._pixels(self._tiles.decode(level, tile_row, tile_col))
        return self._read_window(level, y0, y1, x0, x1)

    def tile_nbytes(self, level: int, tile_row: int, tile_col: int) -> int:
        """Compressed bytes of one native tile in the file (0: unknown for this backend)."""
        self.tile_bounds(level, tile_row, tile_col)
        return 0 if self._tiles is None else self._tiles.nbytes(level, tile_row, tile_col)

    def check_complete(self) -> None:
        """CorruptSlideError when a TIFF ends before its tile data does (truncated)."""
        if self._tiles is not None:
            self._tiles.check_complete()

    def tile_grid_hw(self, level: int) -> tuple[int, int]:
        """Number of native tiles down and across a level."""
        (h, w), (th, tw) = self._shapes_hw[level], self._tiles_hw[self.check_level(level)]
        return -(-h // th), -(-w // tw)

    def tile_bounds(self, level: int, tile_row: int, tile_col: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of a native tile at its level, clipped; IndexError if outside."""
        rows, cols = self.tile_grid_hw(level)
        if not (0 <= tile_row < rows and 0 <= tile_col < cols):
            raise IndexError(
                f"{self.path}: tile ({tile_row}, {tile_col}) outside level {level}'s "
                f"{rows}x{cols} tile grid"
            )
        (h, w), (th, tw) = self._shapes_hw[level], self._tiles_hw[level]
        return (
            tile_row * th,
            min(h, (tile_row + 1) * th),
            tile_col * tw,
            min(w, (tile_col + 1) * tw),
        )

    def get_thumbnail(self, max_size_wh: tuple[int, int]) -> np.ndarray:
        """The whole slide fitting in ``max_size_wh`` (aspect kept), area-averaged.

        Reads the coarsest level at least as fine as the thumbnail, averages it by an
        integer factor in row strips, then box-resizes to the exact size.

        Shape: ``(h, w, 3)`` (slides) or ``(h, w)`` (masks) with ``w <= W``, ``h <= H``.
        """
        w0, h0 = self.dimensions
        scale = max(w0 / max_size_wh[0], h0 / max_size_wh[1], 1.0)
        size = (
            max(1, min(max_size_wh[0], round(w0 / scale))),
            max(1, min(max_size_wh[1], round(h0 / scale))),
        )
        level, factor = self.level_and_factor(scale)
        small = self._read_level_reduced(level, factor)
        if small.shape[1::-1] == size:
            return small
        resample = Image.Resampling.NEAREST if self.is_mask else Image.Resampling.BOX
        return np.asarray(Image.fromarray(small).resize(size, resample))

    def level_and_factor(self, downsample: float) -> tuple[int, int]:
        """The coarsest level at least as fine as ``downsample`` and the integer factor
        that brings it closest to ``downsample`` from below."""

        level = best_level_for_downsample(self.level_downsamples, downsample)
        factor = max(1, math.floor(downsample / self.level_downsamples[level] + 1e-6))
        return level, factor

    def _read_level_reduced(self, level: int, factor: int) -> np.ndarray:
        """A whole level area-averaged by ``factor`` (masks: strided nearest)."""
        return read_level_downsampled(self.window_view(level), factor, nearest=self.is_mask)

    # -- lifetime -----------------------------------------------------------------------
    def close(self) -> None:
        """Release the file; subclasses close their own handles too."""
        if self._tiles is not None:
            self._tiles.close()

    def __enter__(self) -> ReaderBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as "reopen this path": readers cross process boundaries (spawned DataLoader
        workers, dask) without their file handles. Each reader class reopens itself (masks
        override this)."""
        return type(self), (str(self.path),), {"_mpp_override": self._mpp_override}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._mpp_override = state["_mpp_override"]

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"{type(self).__name__}({str(self.path)!r}, {w}x{h}, levels={self.level_count})"
