"""Names that carry units and frames, said once.

Conventions (METHOD.md, binding):

- ``location_xy``: (x, y) = (column, row) in continuous level-0 pixel coordinates; pixel
  (row i, column j) covers [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5).
- ``size_wh``: (width, height) in pixels of the level being read.
- ``shape_hw``: (height, width), like numpy shapes; every ``AxB`` on a command line is
  rows x columns, except the dynamic budget ``SHORTxLONG``.
- ``mpp``: micrometres per pixel; ``downsample``: level-0 pixels per level pixel.
- Grids: float tensors of shape (h, w, 2) holding (x, y) in level-0 pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["XY", "WH", "HW", "Mpp", "Region"]


class XY(NamedTuple):
    """A point (x, y) = (column, row)."""

    x: float
    y: float


class WH(NamedTuple):
    """A size (width, height) in pixels."""

    w: int
    h: int


class HW(NamedTuple):
    """A shape (height, width) in pixels, numpy order."""

    h: int
    w: int


class Mpp(NamedTuple):
    """Micrometres per pixel along x and y."""

    x: float
    y: float


@dataclass(frozen=True)
class Region:
    """One tissue region: the unit of work of every pipeline.

    ``x0, y0, x1, y1`` bound the region in level-0 pixels (half-open, integers);
    ``area`` is its tissue area in level-0 pixels (<= the box area); ``index`` numbers
    regions of one slide from 0 in reading order (top to bottom, left to right).
    """

    index: int
    x0: int
    y0: int
    x1: int
    y1: int
    area: float

    @property
    def location_xy(self) -> tuple[int, int]:
        return (self.x0, self.y0)

    @property
    def size_wh(self) -> tuple[int, int]:
        return (self.x1 - self.x0, self.y1 - self.y0)

    @property
    def shape_hw(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)
