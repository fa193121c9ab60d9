"""In-memory deformed sampler G_d: bilinear for images, exact nearest for labels.

Grids hold level-0 ``(x, y)``; an in-memory array whose pixel (0, 0) starts at level-0
``origin_xy`` with ``downsample`` level-0 pixels per array pixel sees the point at array
coordinates ``((x - ox) / downsample, (y - oy) / downsample)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["to_array_coords", "normalize_grid", "sample_image", "sample_labels"]


def to_array_coords(
    grid: Tensor, *, origin_xy: Sequence[float] = (0.0, 0.0), downsample: float = 1.0
) -> Tensor:
    """Level-0 ``(x, y)`` -> continuous pixel coordinates of an array at ``origin_xy``.

    Shape: ``(..., 2)`` -> ``(..., 2)``.
    """
    origin = torch.tensor(origin_xy, dtype=grid.dtype, device=grid.device)
    return (grid - origin) / float(downsample)


def normalize_grid(
    grid: Tensor,
    size_hw: tuple[int, int],
    *,
    origin_xy: Sequence[float] = (0.0, 0.0),
    downsample: float = 1.0,
) -> Tensor:
    """Level-0 grid -> ``grid_sample`` coordinates (``align_corners=False``) of an ``H x W`` array.

    Shape: ``(N, h, w, 2)`` -> ``(N, h, w, 2)`` in ``[-1, 1]`` inside the array.
    """
    h, w = size_hw
    pix = to_array_coords(grid, origin_xy=origin_xy, downsample=downsample)
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=grid.dtype, device=grid.device)
    return pix * scale - 1.0


def sample_image(
    image: Tensor,
    grid: Tensor,
    *,
    origin_xy: Sequence[float] = (0.0, 0.0),
    downsample: float = 1.0,
) -> Tensor:
    """Bilinear samples of ``image`` at the grid (``align_corners=False``, border padding).

    On a uniform grid this equals ``F.interpolate(mode="bilinear", align_corners=False,
    antialias=False)``. Gradients reach both ``image`` and ``grid``.

    Shape: image ``(N, C, H, W)``, grid ``(N, h, w, 2)`` -> ``(N, C, h, w)``.
    """
    norm = normalize_grid(
        grid, (image.shape[-2], image.shape[-1]), origin_xy=origin_xy, downsample=downsample
    )
    return F.grid_sample(
        image, norm.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )


def sample_labels(
    labels: Tensor,
    grid: Tensor,
    *,
    origin_xy: Sequence[float] = (0.0, 0.0),
    downsample: float = 1.0,
) -> Tensor:
    """Nearest samples of a label map: the pixel containing each point (``floor``), clamped.

    Class indices are never interpolated, so the output only holds values of the input.

    Shape: labels ``(N, H, W)`` (any integer dtype), grid ``(N, h, w, 2)`` -> ``(N, h, w)``.
    """
    n, height, width = labels.shape
    pix = to_array_coords(grid.detach(), origin_xy=origin_xy, downsample=downsample)
    cols = pix[..., 0].floor().long().clamp_(0, width - 1)
    rows = pix[..., 1].floor().long().clamp_(0, height - 1)
    batch = torch.arange(n, device=labels.device).view(n, 1, 1)
    return labels[batch, rows.to(labels.device), cols.to(labels.device)]
