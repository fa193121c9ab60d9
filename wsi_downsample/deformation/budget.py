"""Pixel budgets per region: fixed ``HxW``, dynamic ``SHORTxLONG``, or a downsample factor."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from wsi_downsample.errors import BudgetError

__all__ = ["Budget", "parse_budget", "budget_shape", "density_shape"]

Mode = Literal["fixed", "dynamic", "downsample"]
_MODES = ("fixed", "dynamic", "downsample")
_FORMS = (
    "accepted forms: 'HxW' (fixed rows x cols, e.g. 80x800), "
    "'dynamic:SHORTxLONG' (keep the aspect ratio, e.g. dynamic:80x800), "
    "'downsample:K' or a bare number K (divide each axis by K, e.g. 25)"
)
_PAIR = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


@dataclass(frozen=True)
class Budget:
    """A pixel budget: ``fixed`` (a, b) = rows x cols, ``dynamic`` (a, b) = short x long side,
    or ``downsample`` a = K (b unused)."""

    mode: Mode
    a: float
    b: float = 0.0

    def __str__(self) -> str:
        if self.mode == "downsample":
            return f"downsample:{self.a:g}"
        prefix = "dynamic:" if self.mode == "dynamic" else ""
        return f"{prefix}{int(self.a)}x{int(self.b)}"


def _pair(text: str, what: str) -> tuple[int, int]:
    match = _PAIR.match(text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise BudgetError(f"cannot parse {what} budget {text!r}; {_FORMS}")
    return int(match[1]), int(match[2])


def parse_budget(text: str, *, mode: Mode | None = None) -> Budget:
    """Parse a budget string; ``mode`` forces how the text is read (e.g. ``--dynamic 80x800``).

    Raises ``BudgetError`` listing the accepted forms.
    """
    body = text.strip()
    if mode is None:
        head, sep, rest = body.partition(":")
        if sep and head.strip().lower() in _MODES:
            mode, body = head.strip().lower(), rest  # type: ignore[assignment]
        else:
            mode = "fixed" if _PAIR.match(body) else "downsample"
    if mode not in _MODES:
        raise BudgetError(f"unknown budget mode {mode!r}; {_FORMS}")
    if mode == "downsample":
        try:
            factor = float(body)
        except ValueError:
            raise BudgetError(f"cannot parse budget {text!r}; {_FORMS}") from None
        if not math.isfinite(factor) or factor <= 0:
            raise BudgetError(f"downsample factor must be > 0, got {text!r}; {_FORMS}")
        return Budget("downsample", factor)
    a, b = _pair(body, mode)
    if mode == "dynamic" and a > b:
        raise BudgetError(f"dynamic budget {text!r} must be SHORTxLONG with SHORT <= LONG")
    return Budget(mode, a, b)


def _round(value: float) -> int:
    return max(1, int(math.floor(value + 0.5)))


def budget_shape(budget: Budget | str, region_shape_hw: tuple[int, int]) -> tuple[int, int]:
    """Task shape ``(h, w)`` of a region ``(H, W)`` under a budget.

    Dynamic: keep the aspect ratio and scale either the short side to SHORT or the long side
    to LONG, whichever gives fewer pixels (80x800: 2000x20000 -> 80x800, 2000x3400 -> 80x136).
    """
    if isinstance(budget, str):
        budget = parse_budget(budget)
    height, width = region_shape_hw
    if height < 1 or width < 1:
        raise BudgetError(f"region shape must be positive, got {region_shape_hw}")
    if budget.mode == "fixed":
        return int(budget.a), int(budget.b)
    if budget.mode == "downsample":
        return _round(height / budget.a), _round(width / budget.a)
    scale = min(budget.a / min(height, width), budget.b / max(height, width))
    return _round(height * scale), _round(width * scale)


def density_shape(task_hw: tuple[int, int], *, fraction: float = 0.25) -> tuple[int, int]:
    """Shape of the density ``d``: ``fraction`` of the task shape per axis, at least 1x1."""
    if fraction <= 0:
        raise BudgetError(f"density fraction must be > 0, got {fraction}")
    return _round(task_hw[0] * fraction), _round(task_hw[1] * fraction)
