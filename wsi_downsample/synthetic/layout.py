"""Where the tissue goes on a synthetic slide: elongated cores and their class zones."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["CLASS_NAMES", "Core", "Layout", "make_layout"]

CLASS_NAMES = ("background", "benign", "Gleason 3", "Gleason 4", "atrophy", "HGPIN")
"""Default Gleason class table: label value = index."""

_CORE_THICKNESS_UM = 1000.0  # a needle biopsy core is ~1 mm across
_CAP_GAP = 1.6  # end-to-end axis gap in a band, in thicknesses: caps + bend + 0.1 t clear
_BAND = 2.2  # band height per core, in core thicknesses


@dataclass(frozen=True)
class Core:
    """One needle-biopsy-like core: a bent, rounded rectangle of slowly varying width.

    In core coordinates ``u`` runs along the axis from 0 to ``length`` and ``v`` across it;
    the axis bends to ``v = bend * sin(pi * u / length)``; the half-width at ``u`` is
    ``thickness / 2 * (1 + sum(a * sin(2 pi u / wl + ph)))`` over ``wobble``. Pixels
    within that half-width of the axis (round caps at both ends) are tissue.
    ``zone_ends`` split ``u`` into zones of classes ``zone_classes``.
    """

    cx: float
    cy: float
    angle: float
    length: float
    thickness: float
    bend: float
    wobble: tuple[tuple[float, float, float], ...]
    zone_ends: tuple[float, ...]
    zone_classes: tuple[int, ...]

    @property
    def max_half_width(self) -> float:
        return self.thickness / 2 * (1 + sum(abs(a) for a, _, _ in self.wobble))

    @cached_property
    def sd_slope(self) -> float:
        """An upper bound (with 10% margin) of the gradient of the signed distance to the
        core's edge: how fast it can change per pixel."""
        bend = abs(self.bend) * math.pi / self.length
        wob = sum(self.thickness / 2 * abs(a) * 2 * math.pi / wl for a, wl, _ in self.wobble)
        return 1.1 * (math.hypot(1.0, bend) + wob)

    @cached_property
    def box(self) -> tuple[float, float, float, float]:
        """:meth:`bbox`, computed once."""
        return self.bbox()

    def bbox(self) -> tuple[float, float, float, float]:
        """A box ``(x0, y0, x1, y1)`` that surely holds the core (level-0 pixels)."""
        r = self.max_half_width + 1
        rv = r + abs(self.bend)
        corners = [(u, v) for u in (-r, self.length + r) for v in (-rv, rv)]
        xs, ys = zip(*(self.to_xy(u, v) for u, v in corners), strict=True)
        return min(xs), min(ys), max(xs), max(ys)

    def to_xy(self, u: float, v: float) -> tuple[float, float]:
        """Core coordinates to level-0 ``(x, y)``."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        du = u - self.length / 2
        return self.cx + du * c - v * s, self.cy + du * s + v * c


class CoreIndex:
    """Which cores a tile window meets, from the cores' boxes (both layouts share it)."""

    cores: tuple[Core, ...]

    @cached_property
    def boxes(self) -> np.ndarray:
        """The cores' boxes as an ``(n, 4)`` array of ``x0, y0, x1, y1``."""
        return np.array([c.box for c in self.cores], np.float64).reshape(-1, 4)

    def cores_in(self, y0: int, x0: int, h: int, w: int) -> list[int]:
        """Indices of the cores whose box meets the window ``[y0, y0+h) x [x0, x0+w)``."""
        b = self.boxes
        hit = (b[:, 0] < x0 + w) & (b[:, 2] > x0) & (b[:, 1] < y0 + h) & (b[:, 3] > y0)
        return [int(k) for k in np.flatnonzero(hit)]


@dataclass(frozen=True)
class Layout(CoreIndex):
    """Everything drawn on a synthetic slide, as a few numbers: cores and gland settings."""

    shape_hw: tuple[int, int]
    mpp: float
    seed: int
    cores: tuple[Core, ...]
    cell: int  # side of the jittered gland grid's cells, level-0 pixels


def _slots(short: float, long: float, t: float, rng: np.random.Generator) -> list[tuple]:
    """Candidate cores ``(v_centre, u_start, length, band)`` laid in bands across ``short``.

    Each band gets cores of random length, separated by random gaps, while they fit; the
    row of cores is then shifted by a random part of the band's unused length.
    """
    n_bands = max(1, int(short // (_BAND * t)))
    band = short / n_bands
    margin = t
    slots = []
    for b in range(n_bands):
        row: list[tuple[float, float]] = []  # (start, length) from 0
        pos = 0.0
        while True:
            length = min(rng.uniform(4, 10) * t, long - 2 * margin)
            if row and pos + length > long - 2 * margin:
                break
            row.append((pos, length))
            pos += length + _CAP_GAP * t + rng.uniform(0.0, 0.8) * t
        end = row[-1][0] + row[-1][1]
        shift = margin + rng.uniform(0, max(0.0, long - 2 * margin - end))
        v_mid = (b + 0.5) * band
        slots += [(v_mid, shift + start, length, band) for start, length in row]
    return slots


def _zone_classes(n_zones: int, rng: np.random.Generator) -> list[int]:
    """Classes 1..5 for the zones, each present once when there are at least five zones."""
    classes = list(rng.permutation(np.arange(1, 6)))
    classes += list(rng.integers(1, 6, size=max(0, n_zones - 5)))
    return [int(c) for c in rng.permutation(classes[:n_zones])]


def _make_core(
    slot: tuple, t: float, landscape: bool, rng: np.random.Generator, classes: tuple[int, ...]
) -> Core:
    """One core in its slot: random bend, wobble, tilt within the band, zone cuts."""
    v_mid, u0, length, band = slot
    bend = rng.uniform(-0.15, 0.15) * t
    wobble = tuple(
        (rng.uniform(0.02, 0.06), length / rng.uniform(1.5, 5), rng.uniform(0, 2 * math.pi))
        for _ in range(2)
    )
    reach = t / 2 * 1.13 + abs(bend) + 2
    tilt = math.asin(min(0.3, max(0.0, (band / 2 - reach) / (length / 2 + t))))
    angle = rng.uniform(-tilt, tilt) + (0.0 if landscape else math.pi / 2)
    cu, cv = u0 + length / 2, v_mid
    cx, cy = (cu, cv) if landscape else (cv, cu)
    cuts = np.sort(rng.uniform(0.1, 0.9, size=len(classes) - 1))
    ends = (*(float(c) * length for c in cuts), length)
    return Core(cx, cy, angle, length, t, bend, wobble, ends, classes)


def make_layout(
    shape_hw: tuple[int, int], seed: int, mpp: float, n_regions: int | None = None
) -> Layout:
    """Lay out cores for a slide of ``shape_hw`` (deterministic by ``seed``).

    Cores are ~1 mm thick (less on small slides: at most a seventh of the shorter side),
    4-10 times as long, laid in bands along the slide's longer side with small tilts.
    ``n_regions`` keeps that many of the candidate cores (all when None).
    """
    h, w = shape_hw
    rng = np.random.default_rng([seed, 7])
    landscape = w >= h
    short, long = (h, w) if landscape else (w, h)
    t = min(_CORE_THICKNESS_UM / mpp, short / 7)
    slots = _slots(short, long, t, rng)
    if n_regions is not None:
        if not 1 <= n_regions <= len(slots):
            raise ValueError(
                f"n_regions={n_regions} does not fit a {h}x{w} slide; use 1..{len(slots)}"
            )
        keep = np.sort(rng.choice(len(slots), size=n_regions, replace=False))
        slots = [slots[i] for i in keep]
    zones = [max(-(-5 // len(slots)), min(8, round(s[2] / (2.5 * t)))) for s in slots]
    classes = _zone_classes(sum(zones), rng)
    cores = []
    for slot, n_zones in zip(slots, zones, strict=True):
        mine, classes = tuple(classes[:n_zones]), classes[n_zones:]
        cores.append(_make_core(slot, t, landscape, rng, mine))
    cell = max(8, round(24.0 / mpp))
    return Layout((h, w), mpp, seed, tuple(cores), cell)
