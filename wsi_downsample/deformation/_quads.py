"""Quad geometry of a sampling grid: bilinear inverse, scanline ownership, walking, fallbacks."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from wsi_downsample.deformation._tiles import Tile

__all__ = [
    "Quads",
    "build_quads",
    "convex",
    "cross",
    "first_guess",
    "inside",
    "settle",
    "solve",
    "tile_owner",
]

_TOL = 1e-4  # (lam, mu) slack for points on a quad's edge
_MAX_STEPS = 8  # walk steps before the exhaustive search


class Quads(NamedTuple):
    """The ``(h-1) x (w-1)`` quads of an ``h x w`` grid in output-pixel coordinates.

    Inside quad ``(i, j)`` the forward map is bilinear, ``P(lam, mu) = A + lam e + mu f +
    lam mu g``; its edges are the straight segments between its corners. ``coef`` holds
    ``(ax, ay, ex, ey, fx, fy, gx, gy, f x g, f x e)`` per quad.
    """

    nodes: np.ndarray  # (h, w, 2) float32, output-pixel coordinates
    coef: np.ndarray  # (10, h-1, w-1) float32
    box: np.ndarray  # (4, Q): xmin, xmax, ymin, ymax (a column layout, not a box tuple)
    col_span: np.ndarray  # (2, w-1): xmin, xmax over each column of quads
    row_span: np.ndarray  # (2, h-1): ymin, ymax over each row of quads


def cross(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """z of the cross product ``a x b``. Shape: broadcast of the inputs."""
    return ax * by - ay * bx


def build_quads(nodes: np.ndarray) -> Quads:
    """Coefficients, boxes and row/column spans of every quad. Shape: nodes ``(h, w, 2)``."""
    p00, p01, p10, p11 = nodes[:-1, :-1], nodes[:-1, 1:], nodes[1:, :-1], nodes[1:, 1:]
    e, f, g = p01 - p00, p10 - p00, p11 - p01 - p10 + p00
    fxg = cross(f[..., 0], f[..., 1], g[..., 0], g[..., 1])
    fxe = cross(f[..., 0], f[..., 1], e[..., 0], e[..., 1])
    coef = np.concatenate([p00, e, f, g, fxg[..., None], fxe[..., None]], axis=-1)
    corners = np.stack([p00, p01, p10, p11]).reshape(4, -1, 2)
    lo, hi = corners.min(0), corners.max(0)
    box = np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]])
    grid_box = box.reshape(4, *p00.shape[:2])
    col_span = np.stack([grid_box[0].min(0), grid_box[1].max(0)])
    row_span = np.stack([grid_box[2].min(1), grid_box[3].max(1)])
    coef = np.ascontiguousarray(coef.transpose(2, 0, 1))
    return Quads(nodes, coef, box, col_span, row_span)


def convex(nodes: np.ndarray) -> np.ndarray:
    """Strictly convex quads (all four turns the same way). Shape: ``(Q,)`` bool."""
    ring = [nodes[:-1, :-1], nodes[:-1, 1:], nodes[1:, 1:], nodes[1:, :-1]]
    edges = [ring[(k + 1) % 4] - ring[k] for k in range(4)]
    turns = np.stack([cross(*edges[k].T, *edges[(k + 1) % 4].T).T for k in range(4)])
    return ((turns > 0).all(0) | (turns < 0).all(0)).ravel()


def solve(coef: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        b = fxe - cross(hx, hy, gx, gy)
        c = cross(hy, hx, ey, ex)
        disc = b * b - 4 * fxg * c
        q = -0.5 * (b + np.copysign(np.sqrt(np.maximum(disc, 0)), b))
        r1, r2 = q / fxg, c / q
        # the root nearer to [0, 1] is the one nearer to 0.5 (NaN compares False: r2)
        mu = np.where(np.abs(r1 - 0.5) < np.abs(r2 - 0.5), r1, r2)
        dx, dy = ex + mu * gx, ey + mu * gy
        lam = ((hx - mu * fx) * dx + (hy - mu * fy) * dy) / (dx * dx + dy * dy)
        unreal = disc < -1e-5 * (b * b + np.abs(4 * fxg * c))
    return np.where(unreal, lam + np.copysign(2.0, lam - 0.5), lam), mu


def inside(lam: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Local coordinates within the quad, up to ``_TOL``. Shape: ``(n,)`` -> ``(n,)`` bool."""
    return (lam >= -_TOL) & (lam <= 1 + _TOL) & (mu >= -_TOL) & (mu <= 1 + _TOL)


def _coef_at(quads: Quads, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Coefficients of quads ``(i, j)`` gathered from the smallest block holding them (a
    tile's block fits in cache). Shape: ``(n,)`` each -> ``(10, n)``."""
    if i.size == 0:
        return np.empty((10, 0), dtype=np.float32)
    i0, i1, j0, j1 = i.min(), i.max() + 1, j.min(), j.max() + 1
    block = quads.coef[:, i0:i1, j0:j1].reshape(10, -1)
    return block.take((i - i0) * (j1 - j0) + (j - j0), axis=1)


def first_guess(quads: Quads, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Separable quad guess: search the grid row (column) nearest the points' centre.

    Shape: ``(n,)`` each -> ``(i, j)``, two ``(n,)``.
    """
    nodes, (h, w) = quads.nodes, quads.nodes.shape[:2]
    row = np.abs(nodes[:, :, 1].mean(1) - ys.mean()).argmin()
    col = np.abs(nodes[:, :, 0].mean(0) - xs.mean()).argmin()
    j = np.searchsorted(np.maximum.accumulate(nodes[row, :, 0]), xs) - 1
    i = np.searchsorted(np.maximum.accumulate(nodes[:, col, 1]), ys) - 1
    return np.clip(i, 0, h - 2), np.clip(j, 0, w - 2)


def _step(
    shape: tuple[int, int], lam: np.ndarray, mu: np.ndarray, i: np.ndarray, j: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Next quad of the walk, and whether the point is outside the hull or stuck."""
    h1, w1 = shape[0] - 1, shape[1] - 1
    nj = np.clip(j + np.floor(np.clip(np.nan_to_num(lam), -w1, w1)).astype(np.int64), 0, w1 - 1)
    ni = np.clip(i + np.floor(np.clip(np.nan_to_num(mu), -h1, h1)).astype(np.int64), 0, h1 - 1)
    still = (nj == j) & (ni == i)
    border = (i == 0) | (i == h1 - 1) | (j == 0) | (j == w1 - 1)
    outside = still & border & ~(np.isnan(lam) | np.isnan(mu))
    return ni, nj, outside, still & ~outside


def settle(
    quads: Quads, x: np.ndarray, y: np.ndarray, i: np.ndarray, j: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Quad ``(i, j)`` and local ``(lam, mu)`` in [0, 1] of every point, walking from ``(i, j)``.

    Points not inside their start quad walk by ``floor(lam)``, ``floor(mu)`` (Newton-like
    steps on the bilinear extrapolation); outside the hull they take the nearest border
    sample (Euclidean); points still unsettled test every quad whose box holds them.

    Shape: ``(n,)`` each -> four ``(n,)``.
    """
    i, j = i.astype(np.int64), j.astype(np.int64)
    lam, mu = solve(_coef_at(quads, i, j), x, y)
    out = [i.copy(), j.copy(), lam, mu]  # entries of unsettled points are overwritten below
    idx = np.flatnonzero(~inside(lam, mu))
    left = _walk(quads, x, y, out, idx, (i[idx], j[idx], lam[idx], mu[idx]))
    if left.size:
        _put(out, left, *_exhaustive(quads, x[left], y[left]))
    out[2], out[3] = np.clip(out[2], 0, 1), np.clip(out[3], 0, 1)
    return out[0], out[1], out[2], out[3]


def _walk(
    quads: Quads,
    x: np.ndarray,
    y: np.ndarray,
    out: list[np.ndarray],
    idx: np.ndarray,
    start: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """Walk points ``idx`` (at ``start``: ``i, j, lam, mu``) for up to ``_MAX_STEPS`` quads,
    writing those that settle into ``out``; returns the indices of those that did not."""
    i, j, lam, mu = start
    stuck = [idx[:0]]
    for _ in range(_MAX_STEPS):
        if idx.size == 0:
            break
        ni, nj, outside, still = _step(quads.nodes.shape[:2], lam, mu, i, j)
        o = outside  # outside the hull: the nearest border sample (Euclidean, level 0)
        _put(out, idx[o], *_nearest_border(quads, x[idx[o]], y[idx[o]]))
        stuck.append(idx[still])
        move = ~(outside | still)
        idx, i, j = idx[move], ni[move], nj[move]
        lam, mu = solve(_coef_at(quads, i, j), x[idx], y[idx])
        ok = inside(lam, mu)
        _put(out, idx[ok], i[ok], j[ok], lam[ok], mu[ok])
        idx, lam, mu, i, j = idx[~ok], lam[~ok], mu[~ok], i[~ok], j[~ok]
    return np.concatenate([*stuck, idx])


def _put(out: list[np.ndarray], idx: np.ndarray, *parts: np.ndarray) -> None:
    for dst, part in zip(out, parts, strict=True):
        dst[idx] = part


def _exhaustive(quads: Quads, x: np.ndarray, y: np.ndarray, chunk: int = 1024) -> list[np.ndarray]:
    """Test every quad whose box holds the point; the nearest sample where none contains it.

    Shape: ``(n,)`` each -> ``[i, j, lam, mu]``, four ``(n,)``.
    """
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
        lam, mu = solve(coef[:, q], x[s + pt], y[s + pt])
        ok = inside(lam, mu)
        _put(res, s + pt[ok], q[ok] // w1, q[ok] % w1, lam[ok], mu[ok])
    miss = np.flatnonzero(res[0] < 0)
    if miss.size:
        h, w = quads.nodes.shape[:2]
        _, k = cKDTree(quads.nodes.reshape(-1, 2)).query(np.stack([x[miss], y[miss]], 1))
        r, c = k // w, k % w
        i, j = np.minimum(r, h - 2), np.minimum(c, w - 2)
        _put(res, miss, i, j, (c - j).astype(np.float32), (r - i).astype(np.float32))
    return res


def _nearest_border(quads: Quads, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """The nearest sample on the grid's outer rows and columns, as ``[i, j, lam, mu]`` of a
    quad corner (``lam, mu`` in {0, 1}).

    Shape: ``(n,)`` each -> four ``(n,)``.
    """
    h, w = quads.nodes.shape[:2]
    rows = np.concatenate([np.zeros(w, np.int64), np.full(w, h - 1), np.arange(h), np.arange(h)])
    cols = np.concatenate([np.arange(w), np.arange(w), np.zeros(h, np.int64), np.full(h, w - 1)])
    if x.size == 0:
        return [rows[:0], cols[:0], np.zeros(0, np.float32), np.zeros(0, np.float32)]
    _, k = cKDTree(quads.nodes[rows, cols]).query(np.stack([x, y], 1))
    r, c = rows[k], cols[k]
    i, j = np.minimum(r, h - 2), np.minimum(c, w - 2)
    return [i, j, (c - j).astype(np.float32), (r - i).astype(np.float32)]


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


def _quads_near(quads: Quads, window: tuple[float, float, float, float]) -> np.ndarray:
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


def _quad_rows(quads: Quads, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Every (quad, pixel row) pair of a tile whose row centre lies in the quad's box.

    Shape: two ``(m,)`` int64, flat quad indices and absolute rows.
    """
    r0, r1, c0, c1 = tile
    xmin, xmax, ymin, ymax = quads.box
    sel = _quads_near(quads, (r0 + 0.5, r1 - 0.5, c0 + 0.5, c1 - 0.5))
    sel = sel[(xmax[sel] >= c0 + 0.5) & (xmin[sel] <= c1 - 0.5)]
    sel = sel[(ymax[sel] >= r0 + 0.5) & (ymin[sel] <= r1 - 0.5)]
    lo = np.maximum(np.ceil(ymin[sel] - 0.5), r0).astype(np.int64)
    hi = np.minimum(np.floor(ymax[sel] - 0.5), r1 - 1).astype(np.int64)
    count = np.maximum(hi - lo + 1, 0)
    return np.repeat(sel, count), _ragged(lo, count)


def tile_owner(quads: Quads, tile: Tile) -> np.ndarray:
    """Quad index owning each pixel centre of a tile, -1 outside every quad (scanline fill:
    each quad's straight edges cut each pixel row into a closed span).

    Shape: ``(th * tw,)`` int64.
    """
    r0, r1, c0, c1 = tile
    tw, w1 = c1 - c0, quads.coef.shape[2]
    owner = np.full((r1 - r0) * tw, -1, dtype=np.int64)
    q, row = _quad_rows(quads, tile)
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
