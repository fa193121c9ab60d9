"""Exact inverse of a piecewise-bilinear sampling grid, streamed per output tile."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from wsi_downsample._types import BoxXYXY
from wsi_downsample.deformation._quads import (
    Quads,
    build_quads,
    convex,
    first_guess,
    settle,
    tile_owner,
)
from wsi_downsample.deformation._tiles import (
    Array,
    InverseTile,
    Tile,
    as_numpy,
    assemble,
    output_nodes,
    run_tiles,
)
from wsi_downsample.deformation.scatter import iter_scatter_tiles, scatter_nearest_inverse
from wsi_downsample.errors import ConfigError

__all__ = [
    "INTERPOLATIONS",
    "InverseTile",
    "OutputFrame",
    "auto_output_downsample",
    "iter_inverse_tiles",
    "invert_grid",
    "invert_labels",
    # re-exported from .scatter (the baseline), where they used to live
    "iter_scatter_tiles",
    "scatter_nearest_inverse",
]

_STRIP_PIXELS = 1 << 16  # pixels per strip of a tile (3x faster than a 512 x 512 block)
_PRUNE_MAX_CLASSES = 16  # per-quad class pruning compares every pair of classes
INTERPOLATIONS = ("bilinear", "nearest")


class OutputFrame(NamedTuple):
    """An output raster: the slide's level-0 frame at ``downsample``, cropped.

    Pixel ``(r, c)`` of the crop is pixel ``(row0 + r, col0 + c)`` of the full frame and covers
    level-0 ``[(col0 + c) D, (col0 + c + 1) D) x [(row0 + r) D, (row0 + r + 1) D)``.
    """

    row0: int
    col0: int
    shape_hw: tuple[int, int]
    downsample: float

    @property
    def origin_xy(self) -> tuple[float, float]:
        return (self.col0 * self.downsample, self.row0 * self.downsample)

    @classmethod
    def for_region(cls, region_box: BoxXYXY, downsample: float) -> OutputFrame:
        """The smallest crop of the slide frame at ``downsample`` covering a level-0 box."""
        x0, y0, x1, y1 = (float(v) / downsample for v in region_box)
        r0, c0 = math.floor(y0), math.floor(x0)
        return cls(r0, c0, (math.ceil(y1) - r0, math.ceil(x1) - c0), float(downsample))


class _Plan(NamedTuple):
    """What each quad needs to label a pixel (per grid, computed once).

    ``quad_class``: the class winning everywhere in the quad (the only class that no other
    class matches or beats at all four samples), else -1; ``fill``: the same, for strictly
    convex quads only (their pixels skip the solve); ``pair``/``pair_diff``: for quads with
    exactly two such classes (lower first), the score difference at the four samples.
    """

    scores: np.ndarray  # (C, h * w)
    top: np.ndarray  # (h * w,) argmax of every sample
    quad_class: np.ndarray  # (Q,)
    fill: np.ndarray  # (Q,)
    pair: np.ndarray  # (2, Q), -1 where not a pair
    pair_diff: np.ndarray  # (4, Q): corners 00, 01, 10, 11
    dtype: type  # of the output labels


def _alive(corners: np.ndarray) -> np.ndarray:
    """Classes that may win somewhere in each quad: class ``c`` is out when another class is
    >= at all four samples (and > at one, or has the lower index), since a convex combination
    keeps that order (up to exact float ties on the quad's edges). Above
    ``_PRUNE_MAX_CLASSES`` only quads whose four samples share one argmax are pruned.

    Shape: corners ``(4, C, Q)`` -> ``(C, Q)`` bool.
    """
    n = corners.shape[1]
    alive = np.ones(corners.shape[1:], dtype=bool)
    if n > _PRUNE_MAX_CLASSES:  # C^2 tests: keep only the "same argmax at all four" rule
        top4 = corners.argmax(1)
        alive[:] = False
        alive[top4[0], np.arange(top4.shape[1])] = True
        alive[:, ~(top4 == top4[0]).all(0)] = True
    for c in range(n if n <= _PRUNE_MAX_CLASSES else 0):
        for d in range(n):
            if d != c:
                ge = (corners[:, d] >= corners[:, c]).all(0)
                alive[c] &= ~(ge & ((corners[:, d] > corners[:, c]).any(0) | (d < c)))
    return alive


def _plan(scores: np.ndarray, nodes: np.ndarray) -> _Plan:
    """Per quad, the classes that can win in it (see ``_alive``) and what labels its pixels.

    Shape: scores ``(C, h * w)``, nodes ``(h, w, 2)``.
    """
    (h, w), n = nodes.shape[:2], scores.shape[0]
    grid = scores.reshape(n, h, w)
    corners = np.stack([grid[:, :-1, :-1], grid[:, :-1, 1:], grid[:, 1:, :-1], grid[:, 1:, 1:]])
    corners = corners.reshape(4, n, -1)
    alive = _alive(corners)
    count, first = alive.sum(0), alive.argmax(0)
    alive[first, np.arange(first.size)] = False
    second = alive.argmax(0)
    quad_class = np.where(count == 1, first, -1).astype(np.int32)
    pair = np.where(count == 2, np.stack([first, second]), -1).astype(np.int32)
    cols = np.arange(first.size)
    diff = corners[:, first, cols] - corners[:, second, cols]
    fill = np.where(convex(nodes), quad_class, -1)
    top = scores.argmax(0).astype(np.int32)
    dtype = np.uint8 if n <= 256 else np.int32
    return _Plan(scores, top, quad_class, fill, pair, np.ascontiguousarray(diff), dtype)


def _tile_labels(quads: Quads, plan: _Plan, nearest: bool, tile: Tile) -> np.ndarray:
    """Class of every pixel of one tile. Shape: ``(th, tw)``.

    Pixels of convex quads with one possible class take it directly; the others are solved
    for ``(lam, mu)`` (and walked on if the quad does not hold them), pixels outside every
    quad walk to the hull.
    """
    r0, r1, c0, c1 = tile
    w1 = quads.coef.shape[2]
    owner = tile_owner(quads, tile)
    labels = plan.fill.take(np.maximum(owner, 0))
    todo = np.flatnonzero((labels < 0) | (owner < 0))
    if todo.size:
        rows, cols = np.divmod(todo, c1 - c0)
        x, y = (cols + (c0 + 0.5)).astype(np.float32), (rows + (r0 + 0.5)).astype(np.float32)
        own = owner[todo]
        i, j = np.divmod(own, w1)
        lost = own < 0
        if lost.any():
            i[lost], j[lost] = first_guess(quads, x[lost], y[lost])
        i, j, lam, mu = settle(quads, x, y, i, j)
        labels[todo] = _decide(plan, i, j, lam, mu, w1 + 1, nearest)
    return labels.reshape(r1 - r0, c1 - c0).astype(plan.dtype)


def _decide(plan: _Plan, i, j, lam, mu, w: int, nearest: bool) -> np.ndarray:
    """Class at local ``(lam, mu)`` of quads ``(i, j)``: bilinear scores, or the nearest of
    the four samples in warped space (``nearest``; ties to the lower index)."""
    if nearest:
        return plan.top.take((i + (mu > 0.5)) * w + j + (lam > 0.5))
    q = i * (w - 1) + j
    out = plan.quad_class.take(q)
    lo = plan.pair[0].take(q)
    pair = np.flatnonzero((out < 0) & (lo >= 0))
    if pair.size:
        qp, lp, mp = q[pair], lam[pair], mu[pair]
        d00, d01, d10, d11 = (row.take(qp) for row in plan.pair_diff)
        top = d00 + lp * (d01 - d00)
        above = top + mp * (d10 + lp * (d11 - d10) - top) >= 0  # ties go to the lower class
        out[pair] = np.where(above, lo[pair], plan.pair[1].take(qp))
    rest = np.flatnonzero(out < 0)
    if rest.size:
        out[rest] = _interpolated_argmax(plan.scores, w, i[rest], j[rest], lam[rest], mu[rest])
    return out


def _interpolated_argmax(scores: np.ndarray, w: int, i, j, lam, mu) -> np.ndarray:
    """First argmax over classes of the bilinear interpolation of the four samples' scores.

    Shape: scores ``(C, h * w)``, the rest ``(n,)`` -> ``(n,)`` int32.
    """
    n00 = i * w + j
    corners = (n00, n00 + 1, n00 + w, n00 + w + 1)
    best = np.full(n00.shape, -np.inf, dtype=np.float32)
    arg = np.zeros(n00.shape, dtype=np.int32)
    for c, row in enumerate(scores):
        v00, v01, v10, v11 = (row.take(k) for k in corners)
        top = v00 + lam * (v01 - v00)
        score = top + mu * (v10 + lam * (v11 - v10) - top)
        better = score > best
        best = np.where(better, score, best)
        arg[better] = c
    return arg


def _quad_labeller(
    flat: np.ndarray, nodes: np.ndarray, nearest: bool
) -> Callable[[Tile], np.ndarray]:
    """Tile -> labels through the grid's quads, strip by strip (strips keep temporaries in
    cache). Shape: flat ``(C, h * w)``, nodes ``(h, w, 2)`` with ``h, w >= 2``."""
    quads, plan = build_quads(nodes), _plan(flat, nodes)

    def func(tile: Tile) -> np.ndarray:
        r0, r1, c0, c1 = tile
        step = max(1, _STRIP_PIXELS // (c1 - c0))
        strips = [(r, min(r + step, r1), c0, c1) for r in range(r0, r1, step)]
        return np.concatenate([_tile_labels(quads, plan, nearest, t) for t in strips])

    return func


def _sample_labeller(
    flat: np.ndarray, nodes: np.ndarray, dtype: type
) -> Callable[[Tile], np.ndarray]:
    """Tile -> argmax of the nearest sample: a single row or column of samples has no quads.

    Shape: flat ``(C, h * w)``, nodes ``(h, w, 2)``.
    """
    tree, top = cKDTree(nodes.reshape(-1, 2)), flat.argmax(0).astype(dtype)

    def func(tile: Tile) -> np.ndarray:
        rr, cc = np.mgrid[tile[0] : tile[1], tile[2] : tile[3]] + 0.5
        return top[tree.query(np.stack([cc.ravel(), rr.ravel()], 1))[1]].reshape(rr.shape)

    return func


def iter_inverse_tiles(
    values: Array,
    grid: Array,
    out_shape_hw: tuple[int, int],
    *,
    origin_xy: Sequence[float] = (0.0, 0.0),
    downsample: float = 1.0,
    tile_size: int = 512,
    workers: int = 1,
    interpolation: str = "bilinear",
) -> Iterator[InverseTile]:
    """Stream the exact inverse: per output tile, the argmax of the class scores interpolated
    in warped space (``interpolation="bilinear"``, for probabilities) or of the nearest of the
    four samples around each pixel (``"nearest"``). Memory is bounded by ``workers`` tiles.

    The grid's ``h x w`` samples form ``(h-1) x (w-1)`` quads, bilinear inside, with straight
    edges; per tile, a scanline fill finds the quad owning each pixel centre. A strictly convex
    quad whose four samples share one argmax gives that class to all its pixels, exactly.
    Elsewhere we solve for the local ``(lam, mu)`` (a quadratic in ``mu``) and interpolate the
    four samples' scores. Pixels no quad owns (outside the grid's hull) or not inside the quad
    that claimed them (non-convex quads) walk from quad to quad (see ``_quads.settle``).
    Output pixel ``(r, c)`` has level-0 centre ``origin_xy + ((c + 0.5) D, (r + 0.5) D)``
    with ``D = downsample``. Pure numpy per tile (its ufuncs release the GIL), so ``workers``
    threads invert tiles in parallel.

    Shape: values ``(C, h, w)``, grid ``(h, w, 2)`` level-0 -> tiles ``(th, tw)`` of class
    indices (uint8 when ``C <= 256``, else int32), covering ``out_shape_hw`` row-major.
    """
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(
            f"unknown interpolation {interpolation!r}; available: {', '.join(INTERPOLATIONS)}"
        )
    scores = as_numpy(values).astype(np.float32)
    nodes = output_nodes(grid, origin_xy, downsample)
    if scores.ndim != 3 or nodes.shape[:2] != scores.shape[1:]:
        raise ValueError(f"values {scores.shape} do not match grid {nodes.shape}")
    dtype = np.uint8 if scores.shape[0] <= 256 else np.int32
    h, w = nodes.shape[:2]
    flat = np.ascontiguousarray(scores.reshape(scores.shape[0], -1))
    if h > 1 and w > 1:
        func = _quad_labeller(flat, nodes, interpolation == "nearest")
    else:
        func = _sample_labeller(flat, nodes, dtype)
    return run_tiles(func, out_shape_hw, tile_size, workers)


def invert_grid(
    values: Array,
    grid: Array,
    out_shape_hw: tuple[int, int],
    *,
    origin_xy: Sequence[float] = (0.0, 0.0),
    downsample: float = 1.0,
    tile_size: int = 512,
    workers: int = 1,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Exact inverse into one array (see ``iter_inverse_tiles``).

    Shape: values ``(C, h, w)``, grid ``(h, w, 2)`` -> ``out_shape_hw`` class indices.
    """
    kw: dict[str, Any] = dict(
        origin_xy=origin_xy,
        downsample=downsample,
        tile_size=tile_size,
        workers=workers,
        interpolation=interpolation,
    )
    return assemble(iter_inverse_tiles(values, grid, out_shape_hw, **kw), out_shape_hw)


def _one_hot(labels: Array, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """Labels -> one-hot scores; ``ignore_index`` becomes channel ``num_classes``.

    Shape: ``(h, w)`` -> ``(C or C + 1, h, w)`` float32.
    """
    lab = as_numpy(labels).astype(np.int64)
    extra = ignore_index is not None and bool((lab == ignore_index).any())
    if extra:
        lab = np.where(lab == ignore_index, num_classes, lab)
    channels = num_classes + int(extra)
    if lab.size and (lab.min() < 0 or lab.max() >= channels):
        raise ValueError(
            f"labels hold values outside 0..{num_classes - 1} (ignore_index={ignore_index}); "
            "map them with the config's label map first"
        )
    return (np.arange(channels)[:, None, None] == lab[None]).astype(np.float32)


def invert_labels(
    labels: Array,
    grid: Array,
    out_shape_hw: tuple[int, int],
    *,
    num_classes: int,
    ignore_index: int | None = 255,
    origin_xy: Sequence[float] = (0.0, 0.0),
    downsample: float = 1.0,
    tile_size: int = 512,
    workers: int = 1,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Exact inverse of sampled labels: one-hot -> interpolated in warped space -> argmax.

    ``"bilinear"`` (ties go to the lower class) places boundaries between samples smoothly but
    rounds the corner of a 2 x 2 block junction whose diagonal blocks share a class (a saddle);
    ``"nearest"`` takes the nearest of the four samples in warped space, so labels constant on
    the blocks of an integer-factor partition come back exactly. ``ignore_index`` samples
    count as one extra class and come back as ``ignore_index``.

    Shape: labels ``(h, w)``, grid ``(h, w, 2)`` -> ``out_shape_hw``.
    """
    onehot = _one_hot(labels, num_classes, ignore_index)
    kw: dict[str, Any] = dict(
        origin_xy=origin_xy,
        downsample=downsample,
        tile_size=tile_size,
        workers=workers,
        interpolation=interpolation,
    )
    out = invert_grid(onehot, grid, out_shape_hw, **kw)
    if ignore_index is not None and onehot.shape[0] > num_classes:
        out[out == num_classes] = ignore_index
    return out


def auto_output_downsample(grid: Array, *, quantile: float = 0.01) -> int:
    """Coarsest power of two <= a quarter of the finest local sample spacing, at least 1.

    The finest spacing is the ``quantile`` of the lengths of all grid edges (neighbouring
    samples along rows and columns), so a few cells squeezed by clamping at the region edge
    do not force a full-resolution output.

    Shape: grid ``(h, w, 2)`` level-0.
    """
    nodes = as_numpy(grid).astype(np.float64).reshape(-1, *as_numpy(grid).shape[-3:])[0]
    lengths = np.concatenate(
        [
            np.linalg.norm(nodes[:, 1:] - nodes[:, :-1], axis=-1).ravel(),
            np.linalg.norm(nodes[1:] - nodes[:-1], axis=-1).ravel(),
        ]
    )
    if lengths.size == 0:
        return 1
    finest = float(np.quantile(lengths, quantile))
    return 1 if finest < 8 else 2 ** int(math.floor(math.log2(finest / 4)))
