"""Streamed pyramid building: lower levels from level-0 tiles, memory bounded by a tile row."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "feed_level0",
    "Reducer",
    "PyramidCascade",
    "level_shapes",
    "reduce_nearest2",
    "reduce_mode2",
    "make_reduce_mean",
    "iter_tiles",
]

Reducer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``block -> (level pixels, carry)``: one level down by the cascade's factor.

The carry is what the next reduction starts from (equal to the level for mode and mean;
the top-left decimation for centre-nearest, see :func:`reduce_nearest2`)."""

_IN_MEMORY_BYTES = 64 * 2**20


def level_shapes(shape_hw: tuple[int, int], factor: int, count: int) -> list[tuple[int, int]]:
    """Shapes of levels ``0..count-1``: level k is ``ceil(h / factor**k) x ceil(w / factor**k)``."""
    h, w = shape_hw
    return [(-(-h // factor**k), -(-w // factor**k)) for k in range(count)]


def _pad_to(block: np.ndarray, factor: int) -> np.ndarray:
    """Replicate the last row/column so both sides are multiples of ``factor``."""
    ph, pw = (-block.shape[0]) % factor, (-block.shape[1]) % factor
    if ph == 0 and pw == 0:
        return block
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (block.ndim - 2)
    return np.pad(block, pad, mode="edge")


def reduce_nearest2(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Halve by centre-nearest: level k pixel (i, j) = level-0 pixel at its centre.

    The level-0 pixel taken is ``(2**k * i + 2**(k-1), 2**k * j + 2**(k-1))``: the one
    whose top-left corner is the level-k pixel's centre. This is not recursive in the
    levels, so the cascade carries the top-left decimation ``S_k = level0[::2**k, ::2**k]``
    and reads level k as ``S_{k-1}[1::2, 1::2]``. On an odd last row/column, where that
    centre falls outside the image, the last row/column of ``S_{k-1}`` is taken.

    Shape: ``(h, w) -> ((ceil(h/2), ceil(w/2)), (ceil(h/2), ceil(w/2)))``.
    """
    padded = _pad_to(block, 2)
    return padded[1::2, 1::2], padded[::2, ::2]


def reduce_mode2(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Halve by the mode of each 2x2 block; ties go to the larger value.

    Edge cells with fewer than four pixels are padded by replication, which scales every
    count of the cell equally and so leaves its mode unchanged.

    Shape: ``(h, w) uint8 -> (ceil(h/2), ceil(w/2))`` twice (the same array).
    """
    p = _pad_to(block, 2)
    cells = [p[0::2, 0::2], p[0::2, 1::2], p[1::2, 0::2], p[1::2, 1::2]]
    scores = []
    for a in cells:
        count = sum((a == b).astype(np.uint16) for b in cells)  # includes a == a
        scores.append(count * 256 + a)
    pick = np.argmax(np.stack(scores), axis=0)
    out = np.choose(pick, cells).astype(block.dtype)
    return out, out


def make_reduce_mean(factor: int) -> Reducer:
    """A reducer that area-averages ``factor x factor`` cells, rounding halves up.

    Cells cut by the image edge average their real pixels only. uint8 grey or RGB blocks
    go through Pillow's box ``reduce`` (the same values on whole cells; on cut edge cells
    it may differ by 1).

    Shape: ``(h, w[, c]) uint8 -> (ceil(h/f), ceil(w/f)[, c])`` twice (the same array).
    """

    def reduce_mean(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if block.dtype == np.uint8 and block.shape[2:] in ((), (3,)):
            from PIL import Image  # box reduce in C, the same numbers (~4x faster)

            out = np.asarray(Image.fromarray(np.ascontiguousarray(block)).reduce(factor))
            return out, out
        h, w = block.shape[:2]
        ph, pw = (-h) % factor, (-w) % factor
        pad = [(0, ph), (0, pw)] + [(0, 0)] * (block.ndim - 2)
        p = np.pad(block, pad) if ph or pw else block
        hh, ww = p.shape[0] // factor, p.shape[1] // factor
        sums = np.zeros((hh, ww, *block.shape[2:]), np.uint32)
        for i in range(factor):  # strided adds: much faster than a reshaped sum
            for j in range(factor):
                sums += p[i::factor, j::factor]
        rows = np.minimum(factor, h - factor * np.arange(hh))
        cols = np.minimum(factor, w - factor * np.arange(ww))
        counts = np.outer(rows, cols).astype(np.uint32)
        if block.ndim == 3:
            counts = counts[..., None]
        out = ((sums + counts // 2) // counts).astype(block.dtype)
        return out, out

    return reduce_mean


def feed_level0(
    read: Any,
    shape_hw: tuple[int, int],
    tile: int,
    cascade: PyramidCascade,
    bar: Any,
    channels: int | None = None,
) -> Iterator[np.ndarray]:
    """Read level 0 tile by tile (row-major), checking each tile and feeding the cascade.

    ``read(y0, x0, h, w)`` must return uint8 ``(h, w)`` (``channels`` None) or
    ``(h, w, channels)``. Shape: yields ``(th, tw[, channels])`` edge tiles unpadded.
    """
    h, w = shape_hw
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            th, tw = min(tile, h - y), min(tile, w - x)
            expected = (th, tw) if channels is None else (th, tw, channels)
            data = np.asarray(read(y, x, th, tw))
            if data.shape != expected or data.dtype != np.uint8:
                raise ValueError(
                    f"read_tile({y}, {x}, {th}, {tw}) returned {data.dtype} {data.shape}; "
                    f"expected uint8 {expected}"
                )
            cascade.push(y, x, data)
            bar.update(1)
            yield data


def iter_tiles(array: Any, tile: int) -> Iterator[np.ndarray]:
    """Tiles of a 2-D (or 2-D + channels) array in row-major order, edge tiles clipped."""
    h, w = array.shape[:2]
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            yield np.asarray(array[y : y + tile, x : x + tile])


class _Level:
    """One lower level: its store, the rows waiting to be stored and the carry to reduce."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, tile: int, store: Any):
        self.shape, self.tile, self.store = shape, tile, store
        self.buf = np.zeros((tile, *shape[1:]), dtype)
        self.buf_rows = 0  # filled rows of buf
        self.stored_rows = 0  # rows already written to the store
        self.carry: np.ndarray | None = None  # carry rows not yet reduced


def _scratch_dir(parent: Path | None) -> tempfile.TemporaryDirectory[str]:
    """A hidden scratch folder for lower levels, named with the pid; folders of processes
    that no longer run (killed mid-write) are swept first."""
    from wsi_downsample.io.atomic import _LIVE, _pid_alive, _remove

    where = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    for stale in where.glob(".pyramid-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            _remove(stale)
    scratch = tempfile.TemporaryDirectory(prefix=f".pyramid-{os.getpid()}-", dir=str(where))
    _LIVE.add(Path(scratch.name))
    return scratch


class PyramidCascade:
    """Build levels ``1..n`` of a pyramid from level-0 tiles pushed in row-major order.

    Level 1 is reduced tile by tile; deeper levels from full-width strips of the level
    above. Each level is kept in a store with ``tile x tile`` chunks, written one chunk row
    at a time: a numpy array when small, a temporary zarr array on disk otherwise. Peak
    memory is about ``tile_size x width`` bytes per channel, whatever the height.

    Parameters
    ----------
    shape : tuple
        Level-0 shape ``(h, w)`` or ``(h, w, c)``.
    n_levels : int
        Number of levels below level 0 to build.
    factor : int
        Downsample between consecutive levels; must divide ``tile``.
    reduce : Reducer
        The reduction (e.g. :func:`reduce_mode2`).
    tile : int
        Tile size of the level-0 tiles pushed and of the stores' chunks.
    dtype : numpy dtype
        Pixel type.
    tmp_dir : Path, optional
        Folder for on-disk stores (a temporary sub-folder is made and removed).
    in_memory_bytes : int, optional
        Levels up to this size stay in memory (default 64 MiB); larger ones go to disk.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        n_levels: int,
        factor: int,
        reduce: Reducer,
        tile: int,
        dtype: Any = np.uint8,
        tmp_dir: Path | None = None,
        in_memory_bytes: int | None = None,
    ) -> None:
        if tile % factor:
            raise ValueError(f"tile size {tile} must be a multiple of the factor {factor}")
        self.factor, self.reduce, self.tile = factor, reduce, tile
        self.dtype = np.dtype(dtype)
        self.shape0 = tuple(shape)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._tmp_parent = tmp_dir
        self._mem = _IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
        hw = level_shapes((shape[0], shape[1]), factor, n_levels + 1)[1:]
        self.levels = [_Level((h, w, *shape[2:]), self.dtype, tile, None) for h, w in hw]
        for k, lev in enumerate(self.levels):
            lev.store = self._make_store(lev.shape, k + 1)
        self._strip: np.ndarray | None = None  # level-1 rows of the current tile row
        self._carry_strip: np.ndarray | None = None  # their carry (the same array if equal)

    def _make_store(self, shape: tuple[int, ...], k: int) -> Any:
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        if nbytes <= self._mem:
            return np.zeros(shape, self.dtype)
        import zarr

        if self._tmp is None:
            self._tmp = _scratch_dir(self._tmp_parent)
        chunks = (self.tile, self.tile, *shape[2:])
        path = Path(self._tmp.name) / f"level{k}.zarr"
        return zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=self.dtype)

    def push(self, y0: int, x0: int, tile: np.ndarray) -> None:
        """Take the level-0 tile at ``(y0, x0)``; tiles must come in row-major order.

        Shape: ``tile``: ``(th, tw[, c])`` clipped at the image edge.
        """
        if not self.levels:
            return
        f, lev1 = self.factor, self.levels[0]
        out, carry = self.reduce(tile)
        if x0 == 0:
            rows = -(-tile.shape[0] // f)
            self._strip = np.zeros((rows, *lev1.shape[1:]), self.dtype)
            self._carry_strip = self._strip if carry is out else np.zeros_like(self._strip)
        assert self._strip is not None and self._carry_strip is not None, "tiles out of order"
        c0 = x0 // f
        self._strip[:, c0 : c0 + out.shape[1]] = out
        if self._carry_strip is not self._strip:
            self._carry_strip[:, c0 : c0 + out.shape[1]] = carry
        if x0 + tile.shape[1] >= self.shape0[1]:
            strip, carry_strip = self._strip, self._carry_strip
            self._strip = self._carry_strip = None
            self._feed(0, strip, carry_strip)

    def _feed(self, k: int, rows: np.ndarray, carry: np.ndarray) -> None:
        """Append rows of level ``k + 1`` (index k) and reduce them further when possible."""
        lev = self.levels[k]
        self._store_rows(lev, rows)
        if k + 1 >= len(self.levels):
            return
        lev.carry = carry if lev.carry is None else np.concatenate([lev.carry, carry])
        done = lev.stored_rows + lev.buf_rows >= lev.shape[0]
        n = lev.carry.shape[0] if done else lev.carry.shape[0] // self.factor * self.factor
        if n == 0:
            return
        take, lev.carry = lev.carry[:n], lev.carry[n:]
        out, next_carry = self._reduce_strip(take)
        self._feed(k + 1, out, next_carry)

    def _reduce_strip(self, strip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reduce a full-width strip in column chunks, bounding the reducer's temporaries."""
        step = self.tile * self.factor
        if strip.shape[1] <= step:
            return self.reduce(strip)
        parts = [self.reduce(strip[:, c : c + step]) for c in range(0, strip.shape[1], step)]
        out = np.concatenate([p[0] for p in parts], axis=1)
        same = all(p[0] is p[1] for p in parts)
        return out, out if same else np.concatenate([p[1] for p in parts], axis=1)

    def _store_rows(self, lev: _Level, rows: np.ndarray) -> None:
        while rows.shape[0]:
            n = min(rows.shape[0], lev.tile - lev.buf_rows)
            lev.buf[lev.buf_rows : lev.buf_rows + n] = rows[:n]
            lev.buf_rows, rows = lev.buf_rows + n, rows[n:]
            if lev.buf_rows == lev.tile or lev.stored_rows + lev.buf_rows == lev.shape[0]:
                r0 = lev.stored_rows
                lev.store[r0 : r0 + lev.buf_rows] = lev.buf[: lev.buf_rows]
                lev.stored_rows, lev.buf_rows = r0 + lev.buf_rows, 0

    def level(self, k: int) -> Any:
        """The finished store of level ``k`` (1-based); valid until :meth:`close`."""
        lev = self.levels[k - 1]
        if lev.stored_rows != lev.shape[0]:
            raise RuntimeError(f"level {k} incomplete: {lev.stored_rows}/{lev.shape[0]} rows")
        return lev.store

    def close(self) -> None:
        """Remove the temporary stores."""
        for lev in self.levels:
            lev.store = None
        if self._tmp is not None:
            from wsi_downsample.io.atomic import _remove

            self._tmp.cleanup()
            _remove(Path(self._tmp.name))
            self._tmp = None

    def __enter__(self) -> PyramidCascade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
