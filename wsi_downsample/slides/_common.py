"""Machinery shared by the slide and mask readers: lazy level views, padding, area averaging."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wsi_downsample._types import Mpp
from wsi_downsample.errors import CorruptSlideError, LevelError, WsiSegError
from wsi_downsample.slides.base import LazyLevel, LevelInfo

__all__ = [
    "ReaderBase",
    "WindowLevel",
    "ArrayLevel",
    "LazyMapping",
    "as_mpp",
    "to_rgb",
    "composite_on_white",
    "area_downsample",
    "nearest_downsample",
    "read_level_downsampled",
]

MppLike = float | tuple[float, float] | Mpp | None

#: rows read at once (per multiple of the reduction factor) when area-averaging a whole level
_STRIP_PIXELS = 1 << 22


def as_mpp(value: MppLike) -> Mpp | None:
    """Normalise a caller's mpp (a float, an ``(x, y)`` pair or None) to ``Mpp``."""
    if value is None:
        return None
    x, y = (value, value) if isinstance(value, int | float) else value
    if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
        raise ValueError(f"mpp must be positive and finite, got {value!r}")
    return Mpp(float(x), float(y))


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


class WindowLevel:
    """A zarr-like lazy view of one level backed by a window reader ``read(y0, y1, x0, x1)``.

    Supports slicing with unit-step slices or integers on the first two axes and any
    numpy index on the channel axis.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        read: Callable[[int, int, int, int], np.ndarray],
        dtype: np.dtype[Any] | type = np.uint8,
    ) -> None:
        self._shape, self._chunks, self._read = tuple(shape), tuple(chunks), read
        self._dtype = np.dtype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return self._chunks

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def __len__(self) -> int:
        return self._shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        (y0, y1, ys), (x0, x1, xs) = (
            _span(k, n) for k, n in zip(key[:2], self._shape[:2], strict=True)
        )
        block = self._read(y0, y1, x0, x1) if y1 > y0 and x1 > x0 else self._empty(y1 - y0, x1 - x0)
        return block[(ys, xs) + tuple(key[2:])]

    def _empty(self, h: int, w: int) -> np.ndarray:
        return np.zeros((max(h, 0), max(w, 0), *self._shape[2:]), self._dtype)


def _span(key: Any, n: int) -> tuple[int, int, Any]:
    """A first/second-axis index as a window ``[a, b)`` plus the index into that window."""
    if isinstance(key, slice):
        a, b, step = key.indices(n)
        if step != 1:
            raise IndexError("lazy level views support unit-step slices only")
        return a, max(a, b), slice(None)
    i = int(key)
    i = i + n if i < 0 else i
    if not 0 <= i < n:
        raise IndexError(f"index {key} out of range for an axis of length {n}")
    return i, i + 1, 0


class ArrayLevel(WindowLevel):
    """An in-memory level (plain images) exposed like a lazy level with virtual chunks."""

    def __init__(self, array: np.ndarray, chunks_hw: tuple[int, int] = (256, 256)) -> None:
        self.array = array
        chunks = (
            tuple(min(c, s) for c, s in zip(chunks_hw, array.shape[:2], strict=True))
            + array.shape[2:]
        )
        super().__init__(array.shape, chunks, self._window, array.dtype)

    def _window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.array[y0:y1, x0:x1]


class LazyMapping(Mapping[str, np.ndarray]):
    """A read-only mapping that loads each value on access (associated images)."""

    def __init__(self, names: list[str], load: Callable[[str], np.ndarray]) -> None:
        self._names, self._load = list(names), load

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._names:
            raise KeyError(f"no associated image {key!r}; available: {self._names}")
        return self._load(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class ReaderBase:
    """What every backend shares: level bookkeeping, padded ``read_region``, thumbnails.

    Subclasses set ``_shapes_hw``, ``_tiles_hw`` (and optionally ``_downsamples``,
    ``_file_mpp``) in ``__init__`` and implement ``level_array``.
    """

    backend: str = ""
    is_mask: bool = False
    _shapes_hw: tuple[tuple[int, int], ...]
    _tiles_hw: tuple[tuple[int, int], ...]
    _downsamples: tuple[float, ...] | None = None
    _file_mpp: Mpp | None = None

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
        return self._mpp_override or self._file_mpp

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
        """Decode an in-bounds window of a level as RGB (slides) or labels (masks)."""
        try:
            block = np.asarray(self.level_array(level)[y0:y1, x0:x1])
        except WsiSegError:
            raise
        except Exception as exc:  # noqa: BLE001 - any codec failure means a corrupt file
            raise self._corrupt(f"level {level} rows {y0}:{y1} cols {x0}:{x1}", exc) from exc
        return block if self.is_mask else to_rgb(block)

    def _corrupt(self, what: str, exc: BaseException) -> CorruptSlideError:
        return CorruptSlideError(
            f"{self.path}: cannot decode {what} ({type(exc).__name__}: {exc}); the file is "
            "truncated or corrupt: re-copy or re-export it"
        )

    def read_tile(self, level: int, tile_row: int, tile_col: int) -> np.ndarray:
        """Decode one native tile (clipped at the level's edge); default: a window read.

        Shape: ``(th, tw, 3)`` (slides) or ``(th, tw)`` (masks), smaller at the edges.
        """
        y0, y1, x0, x1 = self.tile_bounds(level, tile_row, tile_col)
        return self._read_window(level, y0, y1, x0, x1)

    def tile_nbytes(self, level: int, tile_row: int, tile_col: int) -> int:
        """Compressed bytes of one native tile (0: unknown for this backend)."""
        self.tile_bounds(level, tile_row, tile_col)
        return 0

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
        from wsi_downsample.slides.pyramid import best_level_for_downsample

        level = best_level_for_downsample(self.level_downsamples, downsample)
        factor = max(1, math.floor(downsample / self.level_downsamples[level] + 1e-6))
        return level, factor

    def _read_level_reduced(self, level: int, factor: int) -> np.ndarray:
        """A whole level area-averaged by ``factor`` (masks: strided nearest)."""
        array = self.level_array(level)
        try:
            if self.is_mask:
                return read_level_downsampled(array, factor, nearest=True)
            return to_rgb(read_level_downsampled(array, factor))
        except WsiSegError:
            raise
        except Exception as exc:  # noqa: BLE001 - any codec failure means a corrupt file
            raise self._corrupt(f"level {level}", exc) from exc

    # -- lifetime -----------------------------------------------------------------------
    def close(self) -> None:
        """Release the file; subclasses close their handles."""

    def __enter__(self) -> ReaderBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"{type(self).__name__}({str(self.path)!r}, {w}x{h}, levels={self.level_count})"
