"""What a region needs before its grid exists: the low-res view, label boundaries, labels.

``prepare_region`` runs where the slide is open (a DataLoader worker or the caller of
``predict_region``) and does not depend on the density; ``LabelSampler`` reads labels Y_hat
point-wise from a mask's tiles at the fixed source level, nearest.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wsi_downsample._types import Region
from wsi_downsample.deformation.budget import Budget, budget_shape, density_shape
from wsi_downsample.deformation.lowres import read_lowres
from wsi_downsample.deformation.slide_sampler import SlideSampler
from wsi_downsample.deformation.targets import pooled_boundaries
from wsi_downsample.errors import ConfigError
from wsi_downsample.models.view import RegionView

__all__ = [
    "PreparedRegion",
    "prepare_region",
    "boundary_level",
    "read_boundaries",
    "LabelSampler",
    "map_labels",
]

#: mask pixels per density cell (per axis) at least, for the edge target and edge density
MIN_PX_PER_CELL = 4


@dataclass
class PreparedRegion:
    """A region ready for the model: view, shapes (view orientation) and grid-free inputs.

    ``x_lr``: ``(3, h_d, w_d)`` float32; ``boundaries``: ``(1, h_d, w_d)`` float32 label
    boundaries max-pooled to the density's cells, or None without a mask.
    """

    region: Region
    view: RegionView
    task_hw: tuple[int, int]
    density_hw: tuple[int, int]
    x_lr: Tensor
    boundaries: Tensor | None = None


def _swap(shape_hw: tuple[int, int], swap: bool) -> tuple[int, int]:
    return (shape_hw[1], shape_hw[0]) if swap else shape_hw


def prepare_region(
    slide: Any,
    region: Region,
    *,
    budget: Budget,
    density_fraction: float = 0.25,
    view: RegionView | None = None,
    mask: Any = None,
    lut: np.ndarray | None = None,
    known_values: Collection[int] | None = None,
) -> PreparedRegion:
    """Task and density shapes, ``X_lr`` and (with ``mask``) the pooled label boundaries.

    The view defaults to the region transposed to landscape when the budget keeps the
    aspect ratio (dynamic or downsample), else the region as it is.
    """
    if view is None:
        view = RegionView.of(region, landscape=budget.mode != "fixed")
    task_hw = budget_shape(budget, view.shape_hw)
    density_hw = density_shape(task_hw, fraction=density_fraction)
    own_hw = _swap(density_hw, view.transpose)
    x_lr = view.to_view(read_lowres(slide, region, own_hw))
    boundaries = None
    if mask is not None:
        raw = read_boundaries(mask, region, own_hw, lut=lut, known_values=known_values)
        boundaries = view.to_view(raw[0])
    return PreparedRegion(region, view, task_hw, density_hw, x_lr.contiguous(), boundaries)


def boundary_level(mask: Any, region: Region, density_hw: tuple[int, int]) -> int:
    """The coarsest mask level with at least 4 pixels per density cell on both axes."""
    frame = float(getattr(mask, "frame_downsample", 1.0))
    h, w = region.shape_hw
    cell = min(h / density_hw[0], w / density_hw[1])
    level = 0
    for k, ds in enumerate(mask.level_downsamples):
        if cell / (ds * frame) >= MIN_PX_PER_CELL:
            level = k
    return level


def read_boundaries(
    mask: Any,
    region: Region,
    density_hw: tuple[int, int],
    *,
    lut: np.ndarray | None = None,
    known_values: Collection[int] | None = None,
) -> Tensor:
    """Label boundaries of a region max-pooled to ``density_hw`` (region orientation).

    Reads the region at ``boundary_level``; values outside ``known_values`` raise.

    Shape: ``-> (1, 1, h_d, w_d)`` float32 in {0, 1}.
    """
    level = boundary_level(mask, region, density_hw)
    frame = float(getattr(mask, "frame_downsample", 1.0))
    ds = mask.level_downsamples[level] * frame
    x0, y0 = int(region.x0 / frame), int(region.y0 / frame)
    w = max(density_hw[1], math.ceil((region.x1 - region.x0) / ds))
    h = max(density_hw[0], math.ceil((region.y1 - region.y0) / ds))
    labels = np.asarray(mask.read_region((x0, y0), level, (w, h)))
    labels = map_labels(labels, lut, known_values, source=str(getattr(mask, "path", "mask")))
    return pooled_boundaries(labels[None], density_hw)


def map_labels(
    raw: np.ndarray,
    lut: np.ndarray | None,
    known_values: Collection[int] | None,
    *,
    source: str = "mask",
) -> np.ndarray:
    """Translate mask values through a 256-entry lookup table; unknown values raise."""
    if known_values is not None:
        unknown = sorted(set(np.unique(raw).tolist()) - set(known_values))
        if unknown:
            raise ConfigError(
                f"{source}: mask values {unknown} are not in the label map (known: "
                f"{sorted(known_values)}); map them to a class or 'ignore' in the config"
            )
    return raw if lut is None else lut[raw]


class LabelSampler:
    """Nearest labels of a mask at level-0 slide points, from the fixed source level.

    Parameters
    ----------
    mask
        A mask opened against its slide (``open_mask(path, slide=...)``).
    source_mpp
        The source resolution; labels always come from the mask level closest to it.
    lut, known_values
        Translation to class values and the dataset values allowed (see ``map_labels``).
    """

    def __init__(
        self,
        mask: Any,
        *,
        source_mpp: float = 0.5,
        lut: np.ndarray | None = None,
        known_values: Collection[int] | None = None,
        cache_tiles: int = 64,
        threads: int = 1,
    ) -> None:
        self.mask, self.lut, self.known_values = mask, lut, known_values
        self.frame = float(getattr(mask, "frame_downsample", 1.0))
        self.sampler = SlideSampler(
            mask,
            level_choice="fixed",
            source_mpp=source_mpp,
            cache_tiles=cache_tiles,
            threads=threads,
        )

    def __call__(self, grid: Tensor) -> Tensor:
        """Shape: ``(h, w, 2)`` level-0 slide points -> ``(h, w)`` int64 class values."""
        raw = self.sampler.sample_labels(grid.detach().to(torch.float64) / self.frame).values
        mapped = map_labels(raw.numpy(), self.lut, self.known_values, source=str(self.mask.path))
        return torch.from_numpy(np.asarray(mapped, dtype=np.int64))

    def close(self) -> None:
        self.sampler.close()
