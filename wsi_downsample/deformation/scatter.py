"""The paper's inverse baseline: scatter each sample to its output pixel, fill from the nearest."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from wsi_downsample.deformation._tiles import (
    Array,
    InverseTile,
    Tile,
    as_numpy,
    assemble,
    output_nodes,
    run_tiles,
)

__all__ = ["iter_scatter_tiles", "scatter_nearest_inverse"]


def _scatter_halo(nodes: np.ndarray) -> int:
    """Pixels past a tile within which every pixel's nearest sample lies (longest diagonal)."""
    if min(nodes.shape[:2]) < 2:
        return 2
    d1 = np.linalg.norm(nodes[1:, 1:] - nodes[:-1, :-1], axis=-1)
    d2 = np.linalg.norm(nodes[1:, :-1] - nodes[:-1, 1:], axis=-1)
    return int(np.ceil(max(d1.max(), d2.max(), 1.0))) + 2


def _scatter_tile(
    rc: np.ndarray, lab: np.ndarray, halo: int, tree: list[cKDTree], tile: Tile
) -> np.ndarray:
    """Labels of the nearest scattered pixel for one tile (EDT over the tile plus a halo;
    pixels farther than the halo from every scattered pixel in it use a KD-tree).

    Shape: rc ``(n, 2)`` (row, col), lab ``(n,)`` -> ``(th, tw)``.
    """
    r0, r1, c0, c1 = tile
    lo, hi = np.array([r0 - halo, c0 - halo]), np.array([r1 + halo, c1 + halo])
    sel = np.flatnonzero(((rc >= lo) & (rc < hi)).all(1))
    rr, cc = np.mgrid[r0:r1, c0:c1]
    far = np.ones(rr.shape, dtype=bool)
    out = np.zeros(rr.shape, dtype=lab.dtype)
    if sel.size:
        owner = np.full(tuple(hi - lo), -1, dtype=np.int64)
        owner[rc[sel, 0] - lo[0], rc[sel, 1] - lo[1]] = sel
        dist, (ii, jj) = ndimage.distance_transform_edt(owner < 0, return_indices=True)
        crop = (slice(halo, halo + r1 - r0), slice(halo, halo + c1 - c0))
        out = lab[owner[ii[crop], jj[crop]]]
        far = dist[crop] > halo  # a nearer scattered pixel may lie beyond the halo
    if far.any():
        if not tree:
            tree.append(cKDTree(rc.astype(np.float64)))
        _, k = tree[0].query(np.stack([rr[far], cc[far]], 1).astype(np.float64))
        out[far] = lab[k]
    return out


def iter_scatter_tiles(
    labels: Array,
    grid: Array,
    out_shape_hw: tuple[int, int],
    *,
    origin_xy: Sequence[float] = (0.0, 0.0),
    downsample: float = 1.0,
    tile_size: int = 512,
    workers: int = 1,
) -> Iterator[InverseTile]:
    """The paper's inverse, streamed: scatter each sample to the output pixel holding it,
    fill every other pixel from the nearest scattered pixel (ties: whichever the Euclidean
    distance transform picks; later samples win a shared pixel).

    Shape: labels ``(h, w)`` (or scores ``(C, h, w)``, reduced by argmax), grid ``(h, w, 2)``
    -> tiles ``(th, tw)``.
    """
    lab = as_numpy(labels)
    lab = (lab.argmax(0) if lab.ndim == 3 else lab).ravel()
    if lab.size and lab.min() >= 0:  # the smallest dtype: the output is as large as the region
        lab = lab.astype(np.uint8 if lab.max() <= 255 else np.int32)
    nodes = output_nodes(grid, origin_xy, downsample)
    if nodes.shape[0] * nodes.shape[1] != lab.size:
        raise ValueError(f"labels ({lab.size} samples) do not match grid {nodes.shape}")
    rc = np.floor(nodes.reshape(-1, 2)[:, ::-1]).astype(np.int64)  # (row, col) holding each
    halo, tree = _scatter_halo(nodes), list[cKDTree]()

    def func(tile: Tile) -> np.ndarray:
        return _scatter_tile(rc, lab, halo, tree, tile)

    return run_tiles(func, out_shape_hw, tile_size, workers)


def scatter_nearest_inverse(
    labels: Array,
    grid: Array,
    out_shape_hw: tuple[int, int],
    *,
    origin_xy: Sequence[float] = (0.0, 0.0),
    downsample: float = 1.0,
    tile_size: int = 512,
    workers: int = 1,
) -> np.ndarray:
    """Scatter + nearest-neighbour inverse into one array (see ``iter_scatter_tiles``).

    Shape: labels ``(h, w)``, grid ``(h, w, 2)`` -> ``out_shape_hw``.
    """
    kw: dict[str, Any] = dict(
        origin_xy=origin_xy, downsample=downsample, tile_size=tile_size, workers=workers
    )
    return assemble(iter_scatter_tiles(labels, grid, out_shape_hw, **kw), out_shape_hw)
