"""Layout of the ``budget`` preset: 1 mm biopsy cores on glass holding regional lesion blobs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from wsi_downsample.errors import BudgetError
from wsi_downsample.synthetic.layout import Core, CoreIndex

__all__ = [
    "LESION_CLASSES",
    "LesionClass",
    "Lesion",
    "BudgetLayout",
    "make_budget_layout",
    "min_budget_shape",
    "MAX_CORES",
]

MAX_CORES = 256  # a slide never holds more cores (a huge slide keeps the first ones)
MAX_LESIONS_PER_CORE = 64
_THICKNESS_UM = 1000.0  # core thickness (PCa-Histo regions are ~2000 px across at 0.5 um/px)
_LENGTH_T = (1.5, 5.0)  # core length range, in thicknesses (1.5-5 mm)
_BAND_T = 1.6  # band height per row of cores, in thicknesses
_END_T = 0.75  # slide edge to a core's axis end, in thicknesses (cap + margin)
_GAP_T = 1.6  # axis gap between cores in a band, in thicknesses (two caps + clearance)
_LESIONS_PER_MM2 = 8.0  # mean lesion count per mm^2 of core
_FOCI_PER_T = 0.3  # lesion foci (clusters) per core thickness of length, besides one
_FOCUS_T = 0.3  # spread of the lesions around a focus along the core, in thicknesses
_HARMONICS = (2, 3, 4, 6, 9)  # outline harmonics of a lesion (lobes)
_WIGGLE = 0.35  # amplitude of harmonic k is uniform in [0, _WIGGLE / (k - 1)]
_CLEAR_UM = 20.0  # minimum gap between two lesions and between a lesion and the core edge


@dataclass(frozen=True)
class LesionClass:
    """One lesion class: label value, blob diameter range (um) and relative frequency."""

    value: int
    name: str
    diameter_um: tuple[float, float]
    weight: float


LESION_CLASSES = (
    LesionClass(1, "benign", (40.0, 130.0), 0.30),
    LesionClass(2, "Gleason 3", (32.0, 100.0), 0.25),
    LesionClass(3, "Gleason 4", (26.0, 80.0), 0.20),
    LesionClass(4, "atrophy", (20.0, 60.0), 0.15),
    LesionClass(5, "HGPIN", (16.0, 40.0), 0.10),
)
"""Lesion classes of the budget preset; class 0 is glass and stroma (unlabelled)."""


@dataclass(frozen=True)
class Lesion:
    """A regional annotation: a wobbly ellipse of one class, wholly inside its core.

    A level-0 point ``(x, y)`` is inside when, with ``(p, q)`` its offset from the centre
    rotated by ``-angle`` and scaled by the semi-axes ``a`` (along) and ``b`` (across),
    ``hypot(p, q) <= 1 + sum(amp * cos(k * atan2(q, p) + phase))`` over ``harmonics``.
    """

    cls: int
    cx: float
    cy: float
    a: float
    b: float
    angle: float
    harmonics: tuple[tuple[int, float, float], ...]  # (k, amp, phase)

    @cached_property
    def reach(self) -> float:
        """Radius of a disc around the centre that holds the lesion (level-0 pixels)."""
        return max(self.a, self.b) * (1 + sum(abs(amp) for _, amp, _ in self.harmonics)) + 1


@dataclass(frozen=True)
class BudgetLayout(CoreIndex):
    """Cores and their lesions on a budget-preset slide."""

    shape_hw: tuple[int, int]
    mpp: float
    seed: int
    cores: tuple[Core, ...]
    lesions: tuple[tuple[Lesion, ...], ...]  # per core


def min_budget_shape(mpp: float) -> tuple[int, int]:
    """Smallest ``(short, long)`` slide sides (pixels) that hold one budget-preset core."""
    t = _THICKNESS_UM / mpp
    return math.ceil(_BAND_T * t), math.ceil((_LENGTH_T[0] + 2 * _END_T) * t)


def _check_shape(shape_hw: tuple[int, int], mpp: float) -> None:
    """Refuse slides too small for one core (thin ones included) with a clear error."""
    h, w = shape_hw
    short, long = min(shape_hw), max(shape_hw)
    need_short, need_long = min_budget_shape(mpp)
    if short < need_short or long < need_long:
        fix = (need_short, need_long) if h <= w else (need_long, need_short)
        raise BudgetError(
            f"slide {h}x{w} (rows x columns) cannot hold a biopsy core of the budget preset: "
            f"cores are {_THICKNESS_UM / 1000:g} mm thick and at least "
            f"{_LENGTH_T[0] * _THICKNESS_UM / 1000:g} mm long, which needs at least "
            f"{need_short} px on the short side and {need_long} px on the long side at "
            f"{mpp:g} um/px; use a larger slide",
            hint={"shape_hw": f"{fix[0]}x{fix[1]}"},
        )


def _slots(short: float, long: float, t: float, rng: np.random.Generator) -> list[tuple]:
    """Cores ``(v_centre, u_start, length, band)`` laid in bands; at most MAX_CORES."""
    n_bands = max(1, int(short // (_BAND_T * t)))
    band = short / n_bands
    usable = long - 2 * _END_T * t
    slots: list[tuple] = []
    for b in range(n_bands):
        row: list[tuple[float, float]] = []
        pos = 0.0
        while len(slots) + len(row) < MAX_CORES:
            length = min(rng.uniform(*_LENGTH_T) * t, usable)
            if row and pos + length > usable:
                break
            row.append((pos, length))
            pos += length + _GAP_T * t + rng.uniform(0.0, 0.5) * t
        if not row:
            break
        end = row[-1][0] + row[-1][1]
        shift = _END_T * t + rng.uniform(0, max(0.0, usable - end))
        slots += [((b + 0.5) * band, shift + start, length, band) for start, length in row]
    return slots


def _core(slot: tuple, t: float, landscape: bool, rng: np.random.Generator) -> Core:
    """One core in its slot: small bend, wobble and a tilt that keeps it in its band."""
    v_mid, u0, length, band = slot
    bend = rng.uniform(-0.1, 0.1) * t
    wobble = tuple(
        (rng.uniform(0.01, 0.04), length / rng.uniform(1.5, 4), rng.uniform(0, 2 * math.pi))
        for _ in range(2)
    )
    reach = t / 2 * 1.08 + abs(bend) + 0.05 * t
    room = max(0.0, band / 2 - reach)
    tilt = math.asin(min(0.1, room / (length / 2 + t)))
    angle = rng.uniform(-tilt, tilt) + (0.0 if landscape else math.pi / 2)
    cu = u0 + length / 2
    cx, cy = (cu, v_mid) if landscape else (v_mid, cu)
    return Core(cx, cy, angle, length, t, bend, wobble, (length,), (0,))


def _lesion_classes(n: int, rng: np.random.Generator) -> list[int]:
    """Lesion classes by their weights, each class at least once when ``n >= 5``."""
    values = np.array([c.value for c in LESION_CLASSES])
    p = np.array([c.weight for c in LESION_CLASSES])
    first = list(rng.permutation(values))[: min(n, len(values))]
    rest = list(rng.choice(values, size=max(0, n - len(values)), p=p / p.sum()))
    return [int(c) for c in rng.permutation(first + rest)]


def _lesion(
    cls: int, core: Core, foci: np.ndarray, rng: np.random.Generator, mpp: float
) -> Lesion | None:
    """A lesion of ``cls`` near one of the ``foci`` (axis positions), wholly inside ``core``
    (None: no room)."""
    spec = LESION_CLASSES[cls - 1]
    d = rng.uniform(*spec.diameter_um) / mpp
    aspect = rng.uniform(1.0, 2.2)
    a, b = d / 2 * math.sqrt(aspect), d / 2 / math.sqrt(aspect)
    harmonics = tuple(
        (k, float(rng.uniform(0.0, _WIGGLE / (k - 1))), float(rng.uniform(0, 2 * math.pi)))
        for k in _HARMONICS
    )
    reach = max(a, b) * (1 + sum(amp for _, amp, _ in harmonics)) + _CLEAR_UM / mpp
    half = core.thickness / 2 * (1 - sum(amp for amp, _, _ in core.wobble))
    if reach >= half or 2 * reach >= core.length:
        return None
    u = float(
        np.clip(
            rng.choice(foci) + rng.normal(0, _FOCUS_T * core.thickness), reach, core.length - reach
        )
    )
    v = core.bend * math.sin(math.pi * u / core.length) + rng.uniform(-1, 1) * (half - reach)
    cx, cy = core.to_xy(u, v)
    return Lesion(cls, cx, cy, a, b, float(rng.uniform(0, math.pi)), harmonics)


def _core_lesions(core: Core, classes: list[int], rng: np.random.Generator, mpp: float) -> tuple:
    """Place lesions of ``classes`` in ``core`` without overlaps (a few tries each)."""
    placed: list[Lesion] = []
    clear = _CLEAR_UM / mpp
    n_foci = 1 + int(rng.poisson(_FOCI_PER_T * core.length / core.thickness))
    foci = rng.uniform(0, core.length, size=n_foci)
    xyr = np.zeros((len(classes), 3))  # centres and reaches of the placed lesions
    for cls in classes:
        for _ in range(8):
            les = _lesion(cls, core, foci, rng, mpp)
            if les is None:
                break
            n = len(placed)
            gaps = np.hypot(xyr[:n, 0] - les.cx, xyr[:n, 1] - les.cy) - xyr[:n, 2]
            if n == 0 or gaps.min() > les.reach + clear:
                xyr[n] = les.cx, les.cy, les.reach
                placed.append(les)
                break
    return tuple(placed)


def make_budget_layout(
    shape_hw: tuple[int, int], seed: int, mpp: float, n_regions: int | None = None
) -> BudgetLayout:
    """Lay out cores and lesions of a budget-preset slide (deterministic by ``seed``).

    Cores are 1 mm thick, 1.5-6 mm long (at most :data:`MAX_CORES`), in bands along the
    slide's longer side with small tilts. Each core holds ~3.5 lesions per mm^2 (Poisson;
    at most :data:`MAX_LESIONS_PER_CORE`) whose classes follow the weights of
    :data:`LESION_CLASSES`; every class occurs at least once on a slide with 5 lesions or
    more. Raises :class:`BudgetError` when the slide cannot hold one core.
    """
    h, w = (int(v) for v in shape_hw)
    _check_shape((h, w), mpp)
    rng = np.random.default_rng([seed, 8])
    landscape = w >= h
    short, long = (h, w) if landscape else (w, h)
    t = _THICKNESS_UM / mpp
    slots = _slots(short, long, t, rng)
    if n_regions is not None:
        if not 1 <= n_regions <= len(slots):
            raise BudgetError(
                f"n_regions={n_regions} does not fit a {h}x{w} slide of the budget preset; "
                f"use 1..{len(slots)}",
                hint={"n_regions": len(slots)},
            )
        keep = np.sort(rng.choice(len(slots), size=n_regions, replace=False))
        slots = [slots[i] for i in keep]
    cores = [_core(s, t, landscape, rng) for s in slots]
    area_mm2 = [c.length * t * (mpp / 1000) ** 2 for c in cores]
    counts = [min(MAX_LESIONS_PER_CORE, int(rng.poisson(_LESIONS_PER_MM2 * a))) for a in area_mm2]
    classes = _lesion_classes(sum(counts), rng)
    lesions = []
    for core, n in zip(cores, counts, strict=True):
        mine, classes = classes[:n], classes[n:]
        lesions.append(_core_lesions(core, mine, rng, mpp))
    return BudgetLayout((h, w), mpp, seed, tuple(cores), tuple(lesions))
