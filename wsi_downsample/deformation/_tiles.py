"""Output-raster tiling shared by the inverses: grid -> output pixels, tiles, threads, assembly."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from torch import Tensor

from wsi_downsample._arrays import as_numpy
from wsi_downsample._types import TileRC

__all__ = ["Array", "InverseTile", "Tile", "as_numpy", "assemble", "output_nodes", "run_tiles"]

Array = Tensor | np.ndarray
Tile = TileRC  # (r0, r1, c0, c1), see wsi_downsample._types


class InverseTile(NamedTuple):
    """One streamed output tile: its top-left pixel and its class indices ``(th, tw)``."""

    row0: int
    col0: int
    labels: np.ndarray

    @property
    def rows(self) -> slice:
        return slice(self.row0, self.row0 + self.labels.shape[0])

    @property
    def cols(self) -> slice:
        return slice(self.col0, self.col0 + self.labels.shape[1])


def output_nodes(grid: Array, origin_xy: Sequence[float], downsample: float) -> np.ndarray:
    """Level-0 grid -> float32 output-pixel coordinates.

    Shape: ``(h, w, 2)`` (or ``(1, h, w, 2)``) -> ``(h, w, 2)``.
    """
    g = as_numpy(grid).astype(np.float64)
    if g.ndim == 4 and g.shape[0] == 1:
        g = g[0]
    if g.ndim != 3 or g.shape[-1] != 2:
        raise ValueError(f"grid must be (h, w, 2) level-0 (x, y); got {g.shape}")
    return ((g - np.asarray(origin_xy, dtype=np.float64)) / float(downsample)).astype(np.float32)


def _tile_boxes(shape_hw: tuple[int, int], tile_size: int) -> Iterator[Tile]:
    """Row-major ``(r0, r1, c0, c1)`` tiles of an ``H x W`` raster."""
    height, width = shape_hw
    for r0 in range(0, height, tile_size):
        for c0 in range(0, width, tile_size):
            yield r0, min(r0 + tile_size, height), c0, min(c0 + tile_size, width)


def run_tiles(
    func: Callable[[Tile], np.ndarray], shape_hw: tuple[int, int], tile_size: int, workers: int
) -> Iterator[InverseTile]:
    """Apply ``func`` to every tile in order, ``workers`` tiles at a time (bounded memory)."""
    tiles = _tile_boxes(shape_hw, tile_size)
    if workers <= 1:
        for tile in tiles:
            yield InverseTile(tile[0], tile[2], func(tile))
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[tuple[Tile, Future[np.ndarray]]] = deque()
        for tile in tiles:
            pending.append((tile, pool.submit(func, tile)))
            if len(pending) > 2 * workers:
                done, fut = pending.popleft()
                yield InverseTile(done[0], done[2], fut.result())
        while pending:
            done, fut = pending.popleft()
            yield InverseTile(done[0], done[2], fut.result())


def assemble(tiles: Iterator[InverseTile], shape_hw: tuple[int, int]) -> np.ndarray:
    """Streamed tiles -> one array (of the tiles' dtype). Shape: ``shape_hw``."""
    out: np.ndarray | None = None
    for tile in tiles:
        if out is None:
            out = np.empty(shape_hw, dtype=tile.labels.dtype)
        out[tile.rows, tile.cols] = tile.labels
    if out is None:
        raise ValueError(f"empty output shape {shape_hw}")
    return out
