"""A region seen in a view: optional transpose (portrait -> landscape) and flips.

The view frame is the region box, transposed first when ``transpose`` and then flipped; a
grid computed in the view frame (``(0, 0, W_v, H_v)``) maps back to level-0 points, and
arrays (``x_lr``, boundary maps, predictions) map between the view and the region's own
orientation. Flipping or transposing the grid this way is the augmentation: the image and the
labels sampled at the mapped grid come out flipped or transposed together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from wsi_downsample._types import Region
from wsi_downsample.deformation.grid import clamp_to_region

__all__ = ["RegionView"]


@dataclass(frozen=True)
class RegionView:
    """How a region's box is seen: ``transpose`` (swap axes), then ``flip_x`` / ``flip_y``."""

    box: tuple[int, int, int, int]
    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False

    @classmethod
    def of(cls, region: Region, *, landscape: bool = False, **flips: bool) -> RegionView:
        """The view of a region; ``landscape`` transposes portrait regions (H > W)."""
        box = (region.x0, region.y0, region.x1, region.y1)
        h, w = region.shape_hw
        return cls(box, transpose=landscape and h > w, **flips)

    @property
    def shape_hw(self) -> tuple[int, int]:
        """The region's shape in the view (swapped when transposed)."""
        x0, y0, x1, y1 = self.box
        h, w = y1 - y0, x1 - x0
        return (w, h) if self.transpose else (h, w)

    def to_view(self, array: Tensor) -> Tensor:
        """Region orientation -> view. Shape: ``(..., h, w)`` -> ``(..., h_v, w_v)``."""
        out = array.transpose(-2, -1) if self.transpose else array
        dims = [d for d, f in ((-1, self.flip_x), (-2, self.flip_y)) if f]
        return out.flip(dims) if dims else out

    def from_view(self, array: Tensor) -> Tensor:
        """View -> region orientation. Shape: ``(..., h_v, w_v)`` -> ``(..., h, w)``."""
        dims = [d for d, f in ((-1, self.flip_x), (-2, self.flip_y)) if f]
        out = array.flip(dims) if dims else array
        return out.transpose(-2, -1) if self.transpose else out

    def grid_from_view(self, grid: Tensor) -> Tensor:
        """View-layout grid -> region-layout grid (positions unchanged).

        Shape: ``(..., h_v, w_v, 2)`` -> ``(..., h, w, 2)``.
        """
        return self.from_view(grid.movedim(-1, -3)).movedim(-3, -1)

    def to_level0(self, grid: Tensor) -> Tensor:
        """View-frame points ``(u, v)`` in ``[0, W_v) x [0, H_v)`` -> level-0 ``(x, y)``,
        float64, clamped to the half-open region box. Differentiable.

        Shape: ``(..., 2)`` -> ``(..., 2)``.
        """
        h_v, w_v = self.shape_hw
        g = grid.to(torch.float64)
        u, v = g[..., 0], g[..., 1]
        u = w_v - u if self.flip_x else u
        v = h_v - v if self.flip_y else v
        x, y = (v, u) if self.transpose else (u, v)
        x0, y0 = float(self.box[0]), float(self.box[1])
        return clamp_to_region(torch.stack([x + x0, y + y0], dim=-1), self.box)
