"""Names that carry units and frames, said once.

Conventions (docs/method.md, "Conventions"):

- ``location_xy``: (x, y) = (column, row) in continuous level-0 pixel coordinates; pixel
  (row i, column j) covers [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5).
- ``size_wh``: (width, height) in pixels of the level being read.
- ``shape_hw``: (height, width), like numpy shapes; every ``AxB`` on a command line is
  rows x columns, except the dynamic budget ``SHORTxLONG``.
- ``mpp``: micrometres per pixel; ``downsample``: level-0 pixels per level pixel.
- Grids: float tensors of shape (h, w, 2) holding (x, y) in level-0 pixel coordinates.

Boxes come in one order per kind, each named below (:data:`BoxXYXY`, :data:`TileRC`,
:data:`TileYXHW`); a module that orders a box differently for its own use (a sort key)
says so where it does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

__all__ = ["HW", "WH", "XY", "BoxXYXY", "Mpp", "Region", "TileRC", "TileYXHW"]

#: A box ``(x0, y0, x1, y1)``: half-open ``[x0, x1) x [y0, y1)`` in pixels of one level
#: (level 0 unless a name says otherwise). Regions, grids, level boxes, output frames.
BoxXYXY: TypeAlias = Sequence[float]
#: An output tile ``(r0, r1, c0, c1)``: rows ``r0:r1`` and columns ``c0:c1`` of a raster,
#: i.e. ``array[r0:r1, c0:c1]``. The inverse's tiles and the readers' windows
#: ``(y0, y1, x0, x1)``.
TileRC: TypeAlias = tuple[int, int, int, int]
#: A tile read request ``(y0, x0, h, w)``: top-left row and column, then the shape, as
#: ``read_tile(y0, x0, h, w)`` of the synthetic slides and the mask writer takes it.
TileYXHW: TypeAlias = tuple[int, int, int, int]


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
