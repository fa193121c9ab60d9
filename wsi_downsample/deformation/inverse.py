"""Exact inverse of a piecewise-bilinear sampling grid, streamed per output tile.

The grid's ``h x w`` samples form ``(h-1) x (w-1)`` quads; inside quad ``(i, j)`` the forward
map is bilinear, ``P(lam, mu) = A + lam e + mu f + lam mu g``, and the quad's edges are the
straight segments between its corners. Per output tile, each quad's edges cut every pixel row
into a span, so a scanline fill finds the quad owning each pixel centre. A strictly convex quad
whose four samples share one argmax gives that class to all its pixels, exactly. Elsewhere we
solve for ``(lam, mu)`` (a quadratic in ``mu``), interpolate the four samples' class scores
bilinearly in warped space and take the argmax. Pixels no quad owns (outside the grid's hull,
between the outermost sample centres and the region edge), or not inside the quad that claimed
them (non-convex quads), walk from quad to quad by ``floor(lam)``, ``floor(mu)`` (Newton-like
steps on the bilinear extrapolation), then fall back to testing every quad whose box holds
them; outside the hull they take the nearest corner of their border quad. Output pixel
``(r, c)`` has level-0 centre ``origin_xy + ((c + 0.5) * downsample, (r + 0.5) * downsample)``.
Pure numpy per tile (its ufuncs release the GIL), so ``workers`` threads invert tiles in
parallel.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from torch import Tensor

from wsi_downsample.errors import ConfigError

__all__ = [
    "INTERPOLATIONS",
    "InverseTile",
    "OutputFrame",
    "auto_output_downsample",
    "iter_inverse_tiles",
    "invert_grid",
    "invert_labels",
    "iter_scatter_tiles",
    "scatter_nearest_inverse",
]

_TOL = 1e-4  # (lam, mu) slack for points on a quad's edge
_MAX_STEPS = 8  # walk steps before the exhaustive search
_STRIP_PIXELS = 1 << 16  # pixels per strip of a tile (3x faster than a 512 x 512 block)
_PRUNE_MAX_CLASSES = 16  # per-quad class pruning compares every pair of classes
INTERPOLATIONS = ("bilinear", "nearest")
Array = Tensor | np.ndarray
Tile = tuple[int, int, int, int]  # r0, r1, c0, c1


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
    def for_region(cls, region_box: Sequence[float], downsample: float) -> OutputFrame:
        """The smallest crop of the slide frame at ``downsample`` covering a level-0 box."""
        x0, y0, x1, y1 = (float(v) / downsample for v in region_box)
        r0, c0 = math.floor(y0), math.floor(x0)
        return cls(r0, c0, (math.ceil(y1) - r0, math.ceil(x1) - c0), float(downsample))


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


class _Quads(NamedTuple):
    """Per-quad coefficients ``(ax, ay, ex, ey, fx, fy, gx, gy, f x g, f x e)`` and boxes."""

    nodes: np.ndarray  # (h, w, 2) float32, output-pixel coordinates
    coef: np.ndarray  # (10, h-1, w-1) float32
    box: np.ndarray  # (4, Q): xmin, xmax, ymin, ymax
    col_span: np.ndarray  # (2, w-1): xmin, xmax over each column of quads
    row_span: np.ndarray  # (2, h-1): ymin, ymax over each row of quads


def _np(values: Array) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)


def _output_nodes(grid: Array, origin_xy: Sequence[float], downsample: float) -> np.ndarray:
    """Level-0 grid -> float32 output-pixel coordinates. Shape: ``(h, w, 2)``."""
    g = _np(grid).astype(np.float64)
    if g.ndim == 4 and g.shape[0] == 1:
        g = g[0]
    if g.ndim != 3 or g.shape[-1] != 2:
        raise ValueError(f"grid must be (h, w, 2) level-0 (x, y); got {g.shape}")
    return ((g - np.asarray(origin_xy, dtype=np.float64)) / float(downsample)).astype(np.float32)


def _cross(ax, ay, bx, by):
    return ax * by - ay * bx


def _build_quads(nodes: np.ndarray) -> _Quads:
    p00, p01, p10, p11 = nodes[:-1, :-1], nodes[:-1, 1:], nodes[1:, :-1], nodes[1:, 1:]
    e, f, g = p01 - p00, p10 - p00, p11 - p01 - p10 + p00
    fxg = _cross(f[..., 0], f[..., 1], g[..., 0], g[..., 1])
    fxe = _cross(f[..., 0], f[..., 1], e[..., 0], e[..., 1])
    coef = np.concatenate([p00, e, f, g, fxg[..., None], fxe[..., None]], axis=-1)
    corners = np.stack([p00, p01, p10, p11]).reshape(4, -1, 2)
    lo, hi = corners.min(0), corners.max(0)
    box = np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]])
    grid_box = box.reshape(4, *p00.shape[:2])
    col_span = np.stack([grid_box[0].min(0), grid_box[1].max(0)])
    row_span = np.stack([grid_box[2].min(1), grid_box[3].max(1)])
    coef = np.ascontiguousarray(coef.transpose(2, 0, 1))
    return _Quads(nodes, coef, box, col_span, row_span)


def _solve(coef: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local ``(lam, mu)`` of points in their quads (extrapolated when outside).

    ``mu`` solves ``(f x g) mu^2 + (f x e - h x g) mu - h x e = 0`` with ``h = P - A``; of the
    stable root pair (``r1`` is infinite for parallelograms, ``r2`` then right) the one nearer
    to [0, 1] is kept. ``lam`` projects ``h - mu f`` on ``e + mu g``. Points on no iso-``mu``
    line (negative discriminant: outside the quad) get the vertex of the parabola, good for
    walking, and ``lam`` offset by 2 so that they never count as inside.

    Shape: coef ``(10, n)``, x, y ``(n,)`` -> two ``(n,)``.
    """
    ax, ay, ex, ey, fx, fy, gx, gy, fxg, fxe = coef
    with np.errstate(divide="ignore", invalid="ignore"):
        hx, hy = x - ax, y - ay
        b = fxe - _cross(hx, hy, gx, gy)
        c = _cross(hy, hx, ey, ex)
        disc = b * b - 4 * fxg * c
        q = -0.5 * (b + np.copysign(np.sqrt(np.maximum(disc, 0)), b))
        r1, r2 = q / fxg, c / q
        # the root nearer to [0, 1] is the one nearer to 0.5 (NaN compares False: r2)
        mu = np.where(np.abs(r1 - 0.5) < np.abs(r2 - 0.5), r1, r2)
        dx, dy = ex + mu * gx, ey + mu * gy
        lam = ((hx - mu * fx) * dx + (hy - mu * fy) * dy) / (dx * dx + dy * dy)
        unreal = disc < -1e-5 * (b * b + np.abs(4 * fxg * c))
    return np.where(unreal, lam + np.copysign(2.0, lam - 0.5), lam), mu


def _inside(lam: np.ndarray, mu: np.ndarray) -> np.ndarray:
    return (lam >= -_TOL) & (lam <= 1 + _TOL) & (mu >= -_TOL) & (mu <= 1 + _TOL)


def _coef_at(quads: _Quads, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Coefficients of quads ``(i, j)`` gathered from the smallest block holding them (a
    tile's block fits in cache). Shape: ``(n,)`` each -> ``(10, n)``."""
    if i.size == 0:
        return np.empty((10, 0), dtype=np.float32)
    i0, i1, j0, j1 = i.min(), i.max() + 1, j.min(), j.max() + 1
    block = quads.coef[:, i0:i1, j0:j1].reshape(10, -1)
    return block.take((i - i0) * (j1 - j0) + (j - j0), axis=1)


def _first_guess(quads: _Quads, xs: np.ndarray, ys: np.ndarray):
    """Separable quad guess: search the grid row (column) nearest the points' centre."""
    nodes, (h, w) = quads.nodes, quads.nodes.shape[:2]
    row = np.abs(nodes[:, :, 1].mean(1) - ys.mean()).argmin()
    col = np.abs(nodes[:, :, 0].mean(0) - xs.mean()).argmin()
    j = np.searchsorted(np.maximum.accumulate(nodes[row, :, 0]), xs) - 1
    i = np.searchsorted(np.maximum.accumulate(nodes[:, col, 1]), ys) - 1
    return np.clip(i, 0, h - 2), np.clip(j, 0, w - 2)


def _step(shape: tuple[int, int], lam, mu, i, j):
    """Next quad of the walk, and whether the point is outside the hull or stuck."""
    h1, w1 = shape[0] - 1, shape[1] - 1
    nj = np.clip(j + np.floor(np.clip(np.nan_to_num(lam), -w1, w1)).astype(np.int64), 0, w1 - 1)
    ni = np.clip(i + np.floor(np.clip(np.nan_to_num(mu), -h1, h1)).astype(np.int64), 0, h1 - 1)
    still = (nj == j) & (ni == i)
    border = (i == 0) | (i == h1 - 1) | (j == 0) | (j == w1 - 1)
    outside = still & border & ~(np.isnan(lam) | np.isnan(mu))
    return ni, nj, outside, still & ~outside


def _settle(quads: _Quads, x: np.ndarray, y: np.ndarray, i: np.ndarray, j: np.ndarray):
    """Quad ``(i, j)`` and local ``(lam, mu)`` in [0, 1] of every point, walking from ``(i, j)``.

    Shape: ``(n,)`` each -> four ``(n,)``.
    """
    i, j = i.astype(np.int64), j.astype(np.int64)
    lam, mu = _solve(_coef_at(quads, i, j), x, y)
    out = [i.copy(), j.copy(), lam, mu]  # entries of unsettled points are overwritten below
    idx = np.flatnonzero(~_inside(lam, mu))
    lam, mu, i, j = lam[idx], mu[idx], i[idx], j[idx]
    stuck = [idx[:0]]
    for _ in range(_MAX_STEPS):
        if idx.size == 0:
            break
        ni, nj, outside, still = _step(quads.nodes.shape[:2], lam, mu, i, j)
        o = outside  # outside the hull: the nearest corner of the border quad
        _put(
            out, idx[o], i[o], j[o], np.round(np.clip(lam[o], 0, 1)), np.round(np.clip(mu[o], 0, 1))
        )
        stuck.append(idx[still])
        move = ~(outside | still)
        idx, i, j = idx[move], ni[move], nj[move]
        lam, mu = _solve(_coef_at(quads, i, j), x[idx], y[idx])
        ok = _inside(lam, mu)
        _put(out, idx[ok], i[ok], j[ok], lam[ok], mu[ok])
        idx, lam, mu, i, j = idx[~ok], lam[~ok], mu[~ok], i[~ok], j[~ok]
    left = np.concatenate([*stuck, idx])
    if left.size:
        _put(out, left, *_exhaustive(quads, x[left], y[left]))
    out[2], out[3] = np.clip(out[2], 0, 1), np.clip(out[3], 0, 1)
    return out[0], out[1], out[2], out[3]


def _put(out: list[np.ndarray], idx: np.ndarray, *parts: np.ndarray) -> None:
    for dst, part in zip(out, parts, strict=True):
        dst[idx] = part


def _exhaustive(quads: _Quads, x: np.ndarray, y: np.ndarray, chunk: int = 1024):
    """Test every quad whose box holds the point; the nearest sample where none contains it."""
    n, w1 = x.size, quads.coef.shape[2]
    res = [np.full(n, -1), np.zeros(n, np.int64), np.zeros(n, np.float32), np.zeros(n, np.float32)]
    box, coef = quads.box, quads.coef.reshape(10, -1)
    near = np.flatnonzero(
        (box[1] >= x.min()) & (box[0] <= x.max()) & (box[3] >= y.min()) & (box[2] <= y.max())
    )
    box = box[:, near]
    for s in range(0, n, chunk):
        px, py = x[s : s + chunk, None], y[s : s + chunk, None]
        hit = (px >= box[0]) & (px <= box[1]) & (py >= box[2]) & (py <= box[3])
        pt, q = np.nonzero(hit)
        q = near[q]
        lam, mu = _solve(coef[:, q], x[s + pt], y[s + pt])
        ok = _inside(lam, mu)
        _put(res, s + pt[ok], q[ok] // w1, q[ok] % w1, lam[ok], mu[ok])
    miss = np.flatnonzero(res[0] < 0)
    if miss.size:
        h, w = quads.nodes.shape[:2]
        _, k = cKDTree(quads.nodes.reshape(-1, 2)).query(np.stack([x[miss], y[miss]], 1))
        r, c = k // w, k % w
        i, j = np.minimum(r, h - 2), np.minimum(c, w - 2)
        _put(res, miss, i, j, (c - j).astype(np.float32), (r - i).astype(np.float32))
    return res


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` for every pair, vectorised."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - ends + lengths, lengths) + np.arange(ends[-1] if ends.size else 0)


def _edge_x(pa: np.ndarray, pb: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x where the horizontal line ``y`` crosses segment ``pa -> pb``; NaN if it does not.

    Shared edges are always passed in the same direction, so both quads get the same float.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        x = pa[0] + (y - pa[1]) * (pb[0] - pa[0]) / (pb[1] - pa[1])
    hit = (y >= np.minimum(pa[1], pb[1])) & (y <= np.maximum(pa[1], pb[1]))
    return np.where(hit, x, np.nan)


def _quads_near(quads: _Quads, window: tuple[float, float, float, float]) -> np.ndarray:
    """Flat indices of the block of quads whose grid rows and columns reach the window
    ``(y0, y1, x0, x1)`` (a superset of the quads whose boxes meet it)."""
    y0, y1, x0, x1 = window
    w1 = quads.coef.shape[2]
    cols = np.flatnonzero((quads.col_span[1] >= x0) & (quads.col_span[0] <= x1))
    rows = np.flatnonzero((quads.row_span[1] >= y0) & (quads.row_span[0] <= y1))
    if cols.size == 0 or rows.size == 0:
        return np.empty(0, dtype=np.int64)
    i = np.arange(rows[0], rows[-1] + 1)
    j = np.arange(cols[0], cols[-1] + 1)
    return (i[:, None] * w1 + j[None, :]).ravel()


def _tile_owner(quads: _Quads, tile: Tile) -> np.ndarray:
    """Quad index owning each pixel centre of a tile, -1 outside every quad (scanline fill:
    each quad's straight edges cut each pixel row into a closed span).

    Shape: ``(th * tw,)`` int64.
    """
    r0, r1, c0, c1 = tile
    tw, w1 = c1 - c0, quads.coef.shape[2]
    owner = np.full((r1 - r0) * tw, -1, dtype=np.int64)
    xmin, xmax, ymin, ymax = quads.box
    sel = _quads_near(quads, (r0 + 0.5, r1 - 0.5, c0 + 0.5, c1 - 0.5))
    sel = sel[(xmax[sel] >= c0 + 0.5) & (xmin[sel] <= c1 - 0.5)]
    sel = sel[(ymax[sel] >= r0 + 0.5) & (ymin[sel] <= r1 - 0.5)]
    lo = np.maximum(np.ceil(ymin[sel] - 0.5), r0).astype(np.int64)
    hi = np.minimum(np.floor(ymax[sel] - 0.5), r1 - 1).astype(np.int64)
    count = np.maximum(hi - lo + 1, 0)
    q, row = np.repeat(sel, count), _ragged(lo, count)
    if q.size == 0:
        return owner
    i, j, y = q // w1, q % w1, (row + 0.5).astype(np.float32)
    p00, p01 = quads.nodes[i, j].T, quads.nodes[i, j + 1].T
    p10, p11 = quads.nodes[i + 1, j].T, quads.nodes[i + 1, j + 1].T
    xs = np.stack([_edge_x(*e, y) for e in ((p00, p01), (p10, p11), (p00, p10), (p01, p11))])
    with np.errstate(invalid="ignore"):
        left = np.maximum(np.ceil(np.nanmin(xs, 0) - 0.5), c0)
        right = np.minimum(np.floor(np.nanmax(xs, 0) - 0.5), c1 - 1)
    length = np.nan_to_num(right - left + 1, nan=0).clip(0).astype(np.int64)
    start = (row - r0) * tw + np.nan_to_num(left - c0).astype(np.int64)
    owner[_ragged(start, length)] = np.repeat(q, length)
    return owner


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


def _plan(scores: np.ndarray, nodes: np.ndarray) -> _Plan:
    """Prune, per quad, the classes that cannot win anywhere in it: class ``c`` is out when
    another class is >= at all four samples (and > at one, or has the lower index), since a
    convex combination keeps that order (up to exact float ties on the quad's edges)."""
    (h, w), n = nodes.shape[:2], scores.shape[0]
    grid = scores.reshape(n, h, w)
    corners = np.stack([grid[:, :-1, :-1], grid[:, :-1, 1:], grid[:, 1:, :-1], grid[:, 1:, 1:]])
    corners = corners.reshape(4, n, -1)
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
    count, first = alive.sum(0), alive.argmax(0)
    alive[first, np.arange(first.size)] = False
    second = alive.argmax(0)
    quad_class = np.where(count == 1, first, -1).astype(np.int32)
    pair = np.where(count == 2, np.stack([first, second]), -1).astype(np.int32)
    cols = np.arange(first.size)
    diff = corners[:, first, cols] - corners[:, second, cols]
    fill = np.where(_convex(nodes), quad_class, -1)
    top = scores.argmax(0).astype(np.int32)
    dtype = np.uint8 if n <= 256 else np.int32
    return _Plan(scores, top, quad_class, fill, pair, np.ascontiguousarray(diff), dtype)


def _convex(nodes: np.ndarray) -> np.ndarray:
    """Strictly convex quads (all four turns the same way). Shape: ``(Q,)`` bool."""
    ring = [nodes[:-1, :-1], nodes[:-1, 1:], nodes[1:, 1:], nodes[1:, :-1]]
    edges = [ring[(k + 1) % 4] - ring[k] for k in range(4)]
    turns = np.stack([_cross(*edges[k].T, *edges[(k + 1) % 4].T).T for k in range(4)])
    return ((turns > 0).all(0) | (turns < 0).all(0)).ravel()


def _tile_labels(quads: _Quads, plan: _Plan, nearest: bool, tile: Tile) -> np.ndarray:
    """Class of every pixel of one tile. Shape: ``(th, tw)``.

    Pixels of convex quads with one possible class take it directly; the others are solved
    for ``(lam, mu)`` (and walked on if the quad does not hold them), pixels outside every
    quad walk to the hull.
    """
    r0, r1, c0, c1 = tile
    w1 = quads.coef.shape[2]
    owner = _tile_owner(quads, tile)
    labels = plan.fill.take(np.maximum(owner, 0))
    todo = np.flatnonzero((labels < 0) | (owner < 0))
    if todo.size:
        rows, cols = np.divmod(todo, c1 - c0)
        x, y = (cols + (c0 + 0.5)).astype(np.float32), (rows + (r0 + 0.5)).astype(np.float32)
        own = owner[todo]
        i, j = np.divmod(own, w1)
        lost = own < 0
        if lost.any():
            i[lost], j[lost] = _first_guess(quads, x[lost], y[lost])
        i, j, lam, mu = _settle(quads, x, y, i, j)
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


def _tile_boxes(shape_hw: tuple[int, int], tile_size: int) -> Iterator[Tile]:
    """Row-major ``(r0, r1, c0, c1)`` tiles of an ``H x W`` raster."""
    height, width = shape_hw
    for r0 in range(0, height, tile_size):
        for c0 in range(0, width, tile_size):
            yield r0, min(r0 + tile_size, height), c0, min(c0 + tile_size, width)


def _run_tiles(
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

    Shape: values ``(C, h, w)``, grid ``(h, w, 2)`` level-0 -> tiles ``(th, tw)`` of class
    indices (uint8 when ``C <= 256``, else int32), covering ``out_shape_hw`` row-major.
    """
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(
            f"unknown interpolation {interpolation!r}; available: {', '.join(INTERPOLATIONS)}"
        )
    nearest = interpolation == "nearest"
    scores = _np(values).astype(np.float32)
    nodes = _output_nodes(grid, origin_xy, downsample)
    if scores.ndim != 3 or nodes.shape[:2] != scores.shape[1:]:
        raise ValueError(f"values {scores.shape} do not match grid {nodes.shape}")
    dtype = np.uint8 if scores.shape[0] <= 256 else np.int32
    h, w = nodes.shape[:2]
    flat = np.ascontiguousarray(scores.reshape(scores.shape[0], -1))
    if h > 1 and w > 1:
        quads, plan = _build_quads(nodes), _plan(flat, nodes)

        def func(tile: Tile) -> np.ndarray:
            r0, r1, c0, c1 = tile
            step = max(1, _STRIP_PIXELS // (c1 - c0))  # strips keep temporaries in cache
            strips = [(r, min(r + step, r1), c0, c1) for r in range(r0, r1, step)]
            return np.concatenate([_tile_labels(quads, plan, nearest, t) for t in strips])

    else:  # a single row or column of samples has no quads: nearest sample
        tree, top = cKDTree(nodes.reshape(-1, 2)), flat.argmax(0).astype(dtype)

        def func(tile: Tile) -> np.ndarray:
            rr, cc = np.mgrid[tile[0] : tile[1], tile[2] : tile[3]] + 0.5
            return top[tree.query(np.stack([cc.ravel(), rr.ravel()], 1))[1]].reshape(rr.shape)

    return _run_tiles(func, out_shape_hw, tile_size, workers)


def _assemble(tiles: Iterator[InverseTile], shape_hw: tuple[int, int]) -> np.ndarray:
    out: np.ndarray | None = None
    for tile in tiles:
        if out is None:
            out = np.empty(shape_hw, dtype=tile.labels.dtype)
        out[tile.rows, tile.cols] = tile.labels
    if out is None:
        raise ValueError(f"empty output shape {shape_hw}")
    return out


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
    return _assemble(iter_inverse_tiles(values, grid, out_shape_hw, **kw), out_shape_hw)


def _one_hot(labels: Array, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """Labels -> one-hot scores; ``ignore_index`` becomes channel ``num_classes``.

    Shape: ``(h, w)`` -> ``(C or C + 1, h, w)`` float32.
    """
    lab = _np(labels).astype(np.int64)
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


def _scatter_halo(nodes: np.ndarray) -> int:
    """Pixels past a tile within which every pixel's nearest sample lies (longest diagonal)."""
    if min(nodes.shape[:2]) < 2:
        return 2
    d1 = np.linalg.norm(nodes[1:, 1:] - nodes[:-1, :-1], axis=-1)
    d2 = np.linalg.norm(nodes[1:, :-1] - nodes[:-1, 1:], axis=-1)
    return int(np.ceil(max(d1.max(), d2.max(), 1.0))) + 2


def _scatter_tile(rc: np.ndarray, lab: np.ndarray, halo: int, tree: list, tile: Tile):
    """Labels of the nearest scattered pixel for one tile (EDT over the tile plus a halo;
    pixels farther than the halo from every scattered pixel in it use a KD-tree)."""
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
    lab = _np(labels)
    lab = (lab.argmax(0) if lab.ndim == 3 else lab).ravel()
    if lab.size and lab.min() >= 0:  # the smallest dtype: the output is as large as the region
        lab = lab.astype(np.uint8 if lab.max() <= 255 else np.int32)
    nodes = _output_nodes(grid, origin_xy, downsample)
    if nodes.shape[0] * nodes.shape[1] != lab.size:
        raise ValueError(f"labels ({lab.size} samples) do not match grid {nodes.shape}")
    rc = np.floor(nodes.reshape(-1, 2)[:, ::-1]).astype(np.int64)  # (row, col) holding each
    halo, tree = _scatter_halo(nodes), list[cKDTree]()

    def func(tile: Tile) -> np.ndarray:
        return _scatter_tile(rc, lab, halo, tree, tile)

    return _run_tiles(func, out_shape_hw, tile_size, workers)


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
    return _assemble(iter_scatter_tiles(labels, grid, out_shape_hw, **kw), out_shape_hw)


def auto_output_downsample(grid: Array, *, quantile: float = 0.01) -> int:
    """Coarsest power of two <= a quarter of the finest local sample spacing, at least 1.

    The finest spacing is the ``quantile`` of the lengths of all grid edges (neighbouring
    samples along rows and columns), so a few cells squeezed by clamping at the region edge
    do not force a full-resolution output.

    Shape: grid ``(h, w, 2)`` level-0.
    """
    nodes = _np(grid).astype(np.float64).reshape(-1, *_np(grid).shape[-3:])[0]
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
