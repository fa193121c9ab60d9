"""Coordinate hashes and small periodic textures (stroma, nuclei, speckle) for synthetic slides."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["uniform", "Textures", "textures", "pack_rgb", "PERIOD"]

PERIOD = 512  # texture side in pixels; textures repeat every PERIOD level-0 pixels

_M1, _M2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)
_STROMA_RGB = np.array([236, 168, 198], np.float32)
_NUCLEUS_RGB = np.array([105, 55, 148], np.float32)
_LUMEN_RGB = np.array([245, 236, 245], np.float32)


def _mix(x: np.ndarray) -> np.ndarray:
    """A 32-bit integer hash (lowbias32): a bijection with good avalanche."""
    x = x ^ (x >> 16)
    x = x * _M1
    x = x ^ (x >> 15)
    x = x * _M2
    return x ^ (x >> 16)


def uniform(a: np.ndarray, b: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """Uniform [0, 1) floats hashed from integer arrays ``a``, ``b`` (broadcast together).

    Shape: ``broadcast(a, b)`` float32.
    """
    key = np.uint32((seed * 0x9E3779B1 + stream * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF)
    ha = _mix(np.asarray(a, np.int64).astype(np.uint32) ^ key)
    h = _mix(ha ^ (np.asarray(b, np.int64).astype(np.uint32) * np.uint32(0x27D4EB2F)))
    return (h >> 8).astype(np.float32) * np.float32(1.0 / 16777216)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Pack uint8 RGB into one uint32 per pixel (bytes R, G, B, 0 in memory order).

    Shape: ``(..., 3) -> (...)``.
    """
    rgba = np.zeros((*rgb.shape[:-1], 4), np.uint8)
    rgba[..., :3] = rgb
    return rgba.view(np.uint32)[..., 0]


def _periodic_noise(scale_px: float, seed: int, stream: int, period: int = PERIOD) -> np.ndarray:
    """Smooth value noise in [0, 1] with features ~``scale_px``, periodic over ``period``.

    Shape: ``(period, period)`` float32.
    """
    n = max(2, round(period / scale_px))
    lattice = uniform(np.arange(n)[:, None], np.arange(n)[None, :], seed, stream)
    t = (np.arange(period) + 0.5) * n / period
    i = np.floor(t).astype(np.int64)
    f = t - i
    s = (f * f * (3 - 2 * f)).astype(np.float32)
    m = np.zeros((period, n), np.float32)
    rows = np.arange(period)
    m[rows, i % n] += 1 - s
    m[rows, (i + 1) % n] += s
    return m @ lattice @ m.T


def _nuclei(cell_um: float, mpp: float, seed: int) -> np.ndarray:
    """Spindle-shaped stromal nuclei on a periodic jittered grid: 1 inside a nucleus.

    Shape: ``(PERIOD, PERIOD)`` float32 (a soft edge of one pixel).
    """
    n = max(1, round(PERIOD * mpp / cell_um))
    cell = PERIOD / n
    cy, cx = np.arange(n)[:, None], np.arange(n)[None, :]
    rnd = [uniform(cy, cx, seed, 40 + k) for k in range(6)]
    a = (2.0 + 1.5 * rnd[0]) / mpp
    b = a * (0.35 + 0.25 * rnd[1])
    phi = np.pi * rnd[2]
    room = np.maximum(cell / 2 - a - 1, 0)
    gx = (cx + 0.5) * cell + (2 * rnd[3] - 1) * room
    gy = (cy + 0.5) * cell + (2 * rnd[4] - 1) * room
    p = np.arange(PERIOD) + 0.5
    iy, ix = (p // cell).astype(np.int64)[:, None], (p // cell).astype(np.int64)[None, :]
    dx, dy = p[None, :] - gx[iy, ix], p[:, None] - gy[iy, ix]
    c, s = np.cos(phi)[iy, ix], np.sin(phi)[iy, ix]
    r = np.sqrt(((dx * c + dy * s) / a[iy, ix]) ** 2 + ((dy * c - dx * s) / b[iy, ix]) ** 2)
    inside = np.clip((1 - r) * b[iy, ix] + 0.5, 0, 1)  # ~1-pixel soft edge
    return np.where(rnd[5][iy, ix] < 0.45, inside, 0).astype(np.float32)


@dataclass(frozen=True)
class Textures:
    """Periodic textures of one seed and pixel size (indexed by level-0 ``(y, x) % PERIOD``)."""

    stroma: np.ndarray  # (P, P) packed RGB (see pack_rgb): pink fibres with spindle nuclei
    lumen: np.ndarray  # (P, P) packed RGB: near-white lumen content
    speckle: np.ndarray  # (P, P) float32 ~[0.78, 1.18]: epithelial nuclei shading of rims
    cribriform: np.ndarray  # (P, P) bool: small holes of Gleason 4 glands

    def lookup(self, name: str, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """The texture over the level-0 window ``[y0, y0+h) x [x0, x0+w)``.

        Shape: ``(h, w)``.
        """
        tex = getattr(self, name)
        rows = np.arange(y0, y0 + h) % PERIOD
        cols = np.arange(x0, x0 + w) % PERIOD
        return np.take(np.take(tex, rows, axis=0), cols, axis=1)


@lru_cache(maxsize=8)
def textures(seed: int, mpp: float) -> Textures:
    """Build (once per seed and mpp) the periodic textures of a synthetic slide."""
    um = 1.0 / mpp
    fibres = 0.6 * _periodic_noise(6 * um, seed, 11) + 0.4 * _periodic_noise(2 * um, seed, 12)
    fine = _periodic_noise(1.2 * um, seed, 13)
    stroma = _STROMA_RGB * (0.9 + 0.22 * (fibres - 0.5))[..., None]
    nuc = _nuclei(8.0, mpp, seed)[..., None]
    stroma = stroma * (1 - 0.7 * nuc) + _NUCLEUS_RGB * (0.7 * nuc)
    lumen = _LUMEN_RGB * (0.98 + 0.04 * fine)[..., None]
    return Textures(
        stroma=pack_rgb(np.clip(np.rint(stroma), 0, 255).astype(np.uint8)),
        lumen=pack_rgb(np.clip(np.rint(lumen), 0, 255).astype(np.uint8)),
        speckle=(0.78 + 0.4 * fine).astype(np.float32),
        cribriform=_periodic_noise(1.5 * um, seed, 15) > 0.62,
    )
