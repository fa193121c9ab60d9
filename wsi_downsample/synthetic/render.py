"""Per-tile rendering of synthetic H&E-like tissue and its Gleason labels, from a Layout."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wsi_downsample._types import TileYXHW
from wsi_downsample.synthetic.layout import Core, Layout
from wsi_downsample.synthetic.texture import PERIOD, pack_rgb, textures, uniform

__all__ = ["TileLabels", "render_labels", "render_rgb", "BACKGROUND_RGB"]

BACKGROUND_RGB = (238, 236, 240)

# per class 0..5: gland diameter range (um), lumen radius / gland radius, rim RGB
_DIAMETER_UM = np.array([[0, 0], [12, 20], [5, 10], [4, 8], [6, 12], [10, 16]], np.float64)
_LUMEN = np.array([[0, 0], [0.6, 0.75], [0.4, 0.55], [0.0, 0.0], [0.75, 0.85], [0.3, 0.45]])
_RIM_RGB = np.array(
    [[0, 0, 0], [190, 125, 195], [145, 72, 168], [108, 46, 142], [200, 150, 210], [118, 52, 150]],
    np.float32,
)
_BG32 = np.array(BACKGROUND_RGB + (0,), np.uint8).view(np.uint32)[0]
_P_GLAND = 0.6  # chance that a cell inside tissue holds a gland
_P_LESION = 0.8  # chance that a gland in a lesion zone has the zone's class (else benign)


def core_uv_sd(core: Core, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis coordinate ``u`` (clamped to the core) and signed distance to the core's edge.

    Negative inside. ``x``, ``y`` are level-0 coordinates (pixel centres at ``+0.5``).
    Positions are float64; the slow sines of bend and wobble are float32 (their
    arguments need ~1e-5 relative precision at most).

    Shape: ``broadcast(x, y)`` twice.
    """
    c, s = np.cos(core.angle), np.sin(core.angle)
    dx, dy = x - core.cx, y - core.cy
    u = dx * c + dy * s + core.length / 2
    v = dy * c - dx * s
    uc = np.clip(u, 0.0, core.length)
    t = (uc * (1.0 / core.length)).astype(np.float32)
    vc = core.bend * np.sin(np.float32(np.pi) * t)
    r = np.ones_like(t)
    for amp, wavelength, phase in core.wobble:
        r += np.float32(amp) * np.sin(
            np.float32(2 * np.pi * core.length / wavelength) * t + np.float32(phase)
        )
    du, dv = u - uc, v - vc
    return uc, np.sqrt(du * du + dv * dv) - (core.thickness / 2) * r


def _core_sd_scalar(core: Core, x: float, y: float) -> float:
    """:func:`core_uv_sd`'s signed distance at one point, in plain floats (fast)."""
    c, s = math.cos(core.angle), math.sin(core.angle)
    dx, dy = x - core.cx, y - core.cy
    u = dx * c + dy * s + core.length / 2
    uc = min(max(u, 0.0), core.length)
    v = dy * c - dx * s - core.bend * math.sin(math.pi * uc / core.length)
    r = 1.0 + sum(a * math.sin(2 * math.pi * uc / wl + ph) for a, wl, ph in core.wobble)
    return math.hypot(u - uc, v) - core.thickness / 2 * r


def _split(core: Core, slope: float, window: tuple, inside: list, edge: list) -> None:
    """Sort ``window`` (level-0 ``r0, r1, c0, c1``) into wholly-inside and edge windows.

    Quadtree: a window whose centre is farther from the core's edge than ``slope`` times
    its half-diagonal is wholly inside (kept) or outside (dropped); others split down to
    32 pixels, which are evaluated per pixel later (``edge``).
    """
    r0, r1, c0, c1 = window
    if r0 >= r1 or c0 >= c1:
        return
    sd = _core_sd_scalar(core, (c0 + c1) / 2, (r0 + r1) / 2)
    margin = slope * 0.5 * math.hypot(r1 - r0, c1 - c0) + 1
    if sd > margin:
        return
    if sd < -margin:
        inside.append(window)
    elif max(r1 - r0, c1 - c0) <= 32:
        edge.append(window)
    else:
        rm, cm = (r0 + r1) // 2, (c0 + c1) // 2
        for win in ((r0, rm, c0, cm), (r0, rm, cm, c1), (rm, r1, c0, cm), (rm, r1, cm, c1)):
            _split(core, slope, win, inside, edge)


def _fill_core(core_map: np.ndarray, k: int, core: Core, y0: int, x0: int, window: tuple) -> bool:
    """Mark the pixels of ``core`` in ``window`` of the tile; return whether any was marked."""
    inside: list[tuple[int, int, int, int]] = []
    edge: list[tuple[int, int, int, int]] = []
    _split(core, core.sd_slope, window, inside, edge)
    for r0, r1, c0, c1 in inside:
        core_map[r0 - y0 : r1 - y0, c0 - x0 : c1 - x0] = k
    if not edge:
        return bool(inside)
    grids = [np.mgrid[r0:r1, c0:c1].reshape(2, -1) for r0, r1, c0, c1 in edge]
    rows, cols = np.concatenate(grids, axis=1)  # every edge pixel, evaluated at once
    hit = core_uv_sd(core, cols + 0.5, rows + 0.5)[1] < 0
    core_map[rows[hit] - y0, cols[hit] - x0] = k
    return bool(inside) or bool(hit.any())


def _core_map(layout: Layout, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, list]:
    """Index of the core holding each pixel (-1: background) and the cores in the tile."""
    core_map = np.full((h, w), -1, np.int16)
    near = []
    for k in layout.cores_in(y0, x0, h, w):
        core = layout.cores[k]
        bx0, by0, bx1, by1 = core.box
        r0, r1 = max(y0, int(by0)), min(y0 + h, math.ceil(by1))
        c0, c1 = max(x0, int(bx0)), min(x0 + w, math.ceil(bx1))
        if r0 < r1 and c0 < c1 and _fill_core(core_map, k, core, y0, x0, (r0, r1, c0, c1)):
            near.append((k, core))
    return core_map, near


@dataclass(frozen=True)
class _Glands:
    """Gland parameters of a block of cells (arrays of shape ``(ny, nx)``)."""

    cls: np.ndarray  # class, 0 where the cell has no gland
    gx: np.ndarray  # (float64) centre relative to the cell's top-left corner, pixels
    gy: np.ndarray
    a: np.ndarray  # semi-axes (pixels)
    b: np.ndarray
    cos: np.ndarray  # orientation
    sin: np.ndarray
    lumen: np.ndarray  # lumen radius / gland radius


def _cell_glands(layout: Layout, cores: list, cy: np.ndarray, cx: np.ndarray) -> _Glands:
    """Decide, for each cell, whether it holds a gland and the gland's class and shape."""
    c, seed = layout.cell, layout.seed
    rnd = [uniform(cy, cx, seed, s) for s in range(8)]
    ccx, ccy = (cx + 0.5) * c, (cy + 0.5) * c
    cls = np.zeros(np.broadcast_shapes(cy.shape, cx.shape), np.int64)
    owner = np.full(cls.shape, -1)
    for k, core in cores:
        u, sd = core_uv_sd(core, ccx, ccy)
        zone = np.minimum(np.searchsorted(core.zone_ends, u), len(core.zone_classes) - 1)
        inside = sd < 0
        cls = np.where(inside, np.asarray(core.zone_classes)[zone], cls)
        owner = np.where(inside, k, owner)
    cls = np.where((cls > 1) & (rnd[1] >= _P_LESION), 1, cls)
    cls = np.where(rnd[0] < _P_GLAND, cls, 0)
    dmin, dmax = _DIAMETER_UM[cls, 0] / layout.mpp, _DIAMETER_UM[cls, 1] / layout.mpp
    a = np.maximum(0.5 * (dmin + rnd[2] * (dmax - dmin)), 1.0)  # 1 where no gland: no 0/0
    room = np.maximum(c / 2 - a - 1, 0)
    gx, gy = c / 2 + (2 * rnd[5] - 1) * room, c / 2 + (2 * rnd[6] - 1) * room
    for k, core in cores:  # the whole gland must lie inside its core
        _, sd = core_uv_sd(core, cx * c + gx, cy * c + gy)
        cls = np.where((owner == k) & (sd > -(a + 2)), 0, cls)
    lo, hi = _LUMEN[cls, 0], _LUMEN[cls, 1]
    phi = np.pi * rnd[4].astype(np.float64)
    b = a * (0.6 + 0.4 * rnd[3])
    return _Glands(cls, gx, gy, a, b, np.cos(phi), np.sin(phi), lo + rnd[7] * (hi - lo))


@dataclass(frozen=True)
class TileLabels:
    """Labels of one tile, the core of each tissue pixel and its gland pixels (sparse)."""

    labels: np.ndarray  # (h, w) uint8 class values
    core: np.ndarray  # (h, w) int16 core index, -1 on background
    gland_rc: tuple[np.ndarray, np.ndarray]  # rows, cols (in the tile) of gland pixels
    gland_rho: np.ndarray  # their normalised radius within the gland (0 centre, 1 edge)
    gland_lumen: np.ndarray  # their gland's lumen radius / gland radius
    cores: tuple[int, ...] = ()  # indices of the cores with pixels in the tile


def render_labels(layout: Layout, y0: int, x0: int, h: int, w: int) -> TileLabels:
    """Labels of the level-0 tile ``[y0, y0+h) x [x0, x0+w)``.

    Every pixel depends only on its level-0 position, the layout and the seed (integer
    hashes of coordinates, no global state), so any tile of any slide is computed on its
    own and tilings agree exactly. Glands sit on a jittered grid of ``layout.cell``-pixel
    cells, at most one per cell and wholly inside it and inside its core; a gland's class
    is its zone's class (80%; else benign).

    Values: 0 background, 1 benign (stroma and benign glands), 2 Gleason 3, 3 Gleason 4,
    4 atrophy, 5 HGPIN (a gland's whole ellipse, rim and lumen, carries its class).

    Shape: ``(h, w)`` arrays.
    """
    core, near = _core_map(layout, y0, x0, h, w)
    labels = (core >= 0).astype(np.uint8)
    if near:
        cell = layout.cell
        cy0, cx0 = y0 // cell, x0 // cell
        cy = np.arange(cy0, (y0 + h - 1) // cell + 1)[:, None]
        cx = np.arange(cx0, (x0 + w - 1) // cell + 1)[None, :]
        g = _cell_glands(layout, near, cy, cx)
        parts = _gland_pixels(g, cy0, cx0, cell, (y0, x0, h, w))
        labels[parts[0], parts[1]] = parts[4]
        ids = tuple(k for k, _ in near)
        return TileLabels(labels, core, (parts[0], parts[1]), parts[2], parts[3], ids)
    empty = np.zeros(0, np.int64)
    return TileLabels(labels, core, (empty, empty), np.zeros(0, np.float32), np.zeros(0))


def _gland_pixels(g: _Glands, cy0: int, cx0: int, cell: int, tile: TileYXHW) -> tuple:
    """Tile rows, cols, normalised radius, lumen ratio and class of all gland pixels.

    All glands at once: each gets an ``S x S`` window around its centre (``S`` fits the
    largest gland), its ellipse is evaluated there and pixels outside the tile dropped.
    """
    y0, x0, h, w = tile
    js, iz = np.nonzero(g.cls)
    gy, gx = (cy0 + js) * cell + g.gy[js, iz], (cx0 + iz) * cell + g.gx[js, iz]
    a, b, cos, sin = g.a[js, iz], g.b[js, iz], g.cos[js, iz], g.sin[js, iz]
    size = int(2 * np.ceil(a.max(initial=0)) + 2)
    oy, ox = np.floor(gy - a).astype(np.int64), np.floor(gx - a).astype(np.int64)
    ry = oy[:, None] + np.arange(size)  # (n, S) level-0 rows of each window
    rx = ox[:, None] + np.arange(size)
    dy = (ry + 0.5 - gy[:, None])[:, :, None]
    dx = (rx + 0.5 - gx[:, None])[:, None, :]
    c, s = cos[:, None, None], sin[:, None, None]
    r2 = ((dx * c + dy * s) / a[:, None, None]) ** 2 + ((dy * c - dx * s) / b[:, None, None]) ** 2
    ok_y, ok_x = (ry >= y0) & (ry < y0 + h), (rx >= x0) & (rx < x0 + w)
    n, si, sj = np.nonzero((r2 <= 1) & ok_y[:, :, None] & ok_x[:, None, :])
    rho = np.sqrt(r2[n, si, sj]).astype(np.float32)
    return ry[n, si] - y0, rx[n, sj] - x0, rho, g.lumen[js, iz][n], g.cls[js, iz][n]


def _glass(h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND_RGB
    return img


def glass_and_stroma(
    seed: int, mpp: float, core: np.ndarray, y0: int, x0: int
) -> np.ndarray | None:
    """Packed RGB of a tile: glass off the cores, stroma texture on them; None when the
    tile is all glass. RGB is packed as one uint32 per pixel: whole-pixel selects cost a
    third as much.

    Shape: core map ``(h, w)`` -> ``(h, w)`` uint32.
    """
    background = core < 0
    if background.all():
        return None
    tex = textures(seed, mpp)
    return np.where(background, _BG32, tex.lookup("stroma", y0, x0, *core.shape))


def render_rgb(layout: Layout, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, TileLabels]:
    """H&E-like RGB pixels of a level-0 tile and its labels.

    Near-white background; pink fibrous stroma with spindle nuclei; glands with a pale
    lumen and a purple, nucleus-speckled rim whose colour, thickness and size depend on
    the class (Gleason 4 glands are solid with small cribriform holes).

    Shape: ``(h, w, 3)`` uint8 and :class:`TileLabels` of ``(h, w)``.
    """
    lab = render_labels(layout, y0, x0, h, w)
    packed = glass_and_stroma(layout.seed, layout.mpp, lab.core, y0, x0)
    if packed is None:
        return _glass(h, w), lab
    tex = textures(layout.seed, layout.mpp)
    rows, cols = lab.gland_rc
    if rows.size:
        ty, tx = (rows + y0) % PERIOD, (cols + x0) % PERIOD
        cls = lab.labels[rows, cols]
        lumen = lab.gland_rho < lab.gland_lumen
        lumen |= (cls == 3) & (lab.gland_rho < 0.8) & tex.cribriform[ty, tx]
        rim = _RIM_RGB[cls] * tex.speckle[ty, tx][:, None]
        rim32 = pack_rgb(np.clip(np.rint(rim), 0, 255).astype(np.uint8))
        packed[rows, cols] = np.where(lumen, tex.lumen[ty, tx], rim32)
    return np.ascontiguousarray(packed.view(np.uint8).reshape(h, w, 4)[..., :3]), lab
