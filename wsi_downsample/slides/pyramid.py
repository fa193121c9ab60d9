"""Pure pyramid arithmetic: level choice by downsample or mpp, and level-0 <-> level-k frames.

Convention (docs/method.md): a point at level k is the level-0 point divided by that level's
downsample; pixel (row i, col j) covers [j, j+1) x [i, i+1) in its own level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from wsi_downsample._arrays import as_pair
from wsi_downsample._types import BoxXYXY
from wsi_downsample.errors import LevelError
from wsi_downsample.slides._checks import Placeholder

__all__ = [
    "best_level_for_downsample",
    "level_just_finer",
    "level_for_mpp",
    "level_mpps",
    "level0_to_level",
    "level_to_level0",
    "level_box",
]

#: relative slack when comparing downsamples/mpps: Aperio levels are 4.0003x, not 4x
RTOL = 1e-3

Scale = float | tuple[float, float]


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{k}: {v:.6g}" for k, v in enumerate(values)) + "]"


def _check_positive(value: float, what: str, values: Sequence[float]) -> None:
    if not values:
        raise LevelError(f"no levels to choose from for {what} {value}")
    if not (math.isfinite(value) and value > 0):
        raise LevelError(f"{what} must be positive and finite, got {value}; levels: {_fmt(values)}")


def best_level_for_downsample(
    level_downsamples: Sequence[float], downsample: float, *, rtol: float = RTOL
) -> int:
    """The coarsest level whose downsample is <= ``downsample`` (just finer or equal).

    A level within ``rtol`` above the target counts as equal (4.0003 serves 4). A target
    finer than level 0 gets level 0.
    """
    _check_positive(downsample, "downsample", level_downsamples)
    best = 0
    for k, ds in enumerate(level_downsamples):
        if ds <= downsample * (1 + rtol) and ds >= level_downsamples[best]:
            best = k
    return best


def level_just_finer(level_mpps: Sequence[float], mpp: float, *, rtol: float = RTOL) -> int:
    """The coarsest level whose mpp is <= ``mpp``: read it, then area-average to ``mpp``.

    A target finer than level 0 gets level 0 (the caller then upsamples).
    """
    _check_positive(mpp, "mpp", level_mpps)
    return best_level_for_downsample(level_mpps, mpp, rtol=rtol)


def level_for_mpp(
    level_mpps: Sequence[float], mpp: float, *, max_ratio: float | None = None
) -> int:
    """The level closest to ``mpp`` in log scale (ratio), the finer one on ties.

    With ``max_ratio`` (e.g. 1.25), a best level further than that factor from ``mpp``
    raises LevelError listing the level mpps.
    """
    _check_positive(mpp, "mpp", level_mpps)
    dist = [abs(math.log(m / mpp)) for m in level_mpps]
    best = min(range(len(dist)), key=lambda k: (round(dist[k], 9), level_mpps[k]))
    if max_ratio is not None and dist[best] > math.log(max_ratio) + 1e-12:
        raise LevelError(
            f"no level within {max_ratio}x of {mpp} mpp; level mpps: {_fmt(level_mpps)}; "
            "ask for one of these mpps, or correct the slide's level-0 mpp",
            hint={"slide_mpp": Placeholder("UM_PER_PX")},
        )
    return best


def level_mpps(mpp: float, level_downsamples: Sequence[float]) -> tuple[float, ...]:
    """Micrometres per pixel of every level from level 0's mpp."""
    return tuple(mpp * ds for ds in level_downsamples)


def _pair(downsample: Scale) -> tuple[float, float]:
    return as_pair(downsample, "downsample", error=LevelError)


def level0_to_level(xy: tuple[float, float], downsample: Scale) -> tuple[float, float]:
    """A continuous level-0 point ``(x, y)`` in the frame of a level (divide by downsample)."""
    dx, dy = _pair(downsample)
    return xy[0] / dx, xy[1] / dy


def level_to_level0(xy: tuple[float, float], downsample: Scale) -> tuple[float, float]:
    """A continuous level point ``(x, y)`` in level-0 pixels (multiply by downsample)."""
    dx, dy = _pair(downsample)
    return xy[0] * dx, xy[1] * dy


def level_box(
    box_level0: BoxXYXY,
    downsample: Scale,
    *,
    shape_hw: tuple[int, int] | None = None,
) -> tuple[int, int, int, int]:
    """The smallest integer box ``(x0, y0, x1, y1)`` of a level covering a level-0 box.

    ``box_level0`` is half-open ``[x0, x1) x [y0, y1)``; with ``shape_hw`` the result is
    clipped to the level.
    """
    dx, dy = _pair(downsample)
    x0, y0, x1, y1 = box_level0
    eps = 1e-9  # keep exact multiples exact despite float division
    box = [
        math.floor(x0 / dx + eps),
        math.floor(y0 / dy + eps),
        math.ceil(x1 / dx - eps),
        math.ceil(y1 / dy - eps),
    ]
    if shape_hw is not None:
        h, w = shape_hw
        box = [
            min(max(box[0], 0), w),
            min(max(box[1], 0), h),
            min(max(box[2], 0), w),
            min(max(box[3], 0), h),
        ]
    return box[0], box[1], box[2], box[3]
