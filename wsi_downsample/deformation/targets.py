"""Edge-loss target d_t: a class-agnostic label boundary map at the density's resolution."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from wsi_downsample._arrays import as_numpy
from wsi_downsample.deformation.grid import gaussian_kernel1d
from wsi_downsample.labels import boundary_map  # re-exported: it used to live here

__all__ = ["boundary_map", "pooled_boundaries", "gaussian_blur", "boundary_target"]


def _bin_starts(n_in: int, n_out: int) -> np.ndarray:
    """First input index of each of ``n_out`` contiguous, non-overlapping bins of ``n_in``."""
    return (np.arange(n_out) * n_in) // n_out


def pooled_boundaries(labels: Tensor | np.ndarray, out_shape_hw: tuple[int, int]) -> Tensor:
    """Full-resolution boundaries max-pooled onto an ``h_d x w_d`` partition (no aliasing:
    every boundary pixel marks the cell it falls in).

    Shape: labels ``(N, H, W)`` -> ``(N, 1, h_d, w_d)`` float32 in {0, 1}.
    """
    lab = as_numpy(labels)
    h_d, w_d = out_shape_hw
    if lab.shape[-2] < h_d or lab.shape[-1] < w_d:
        raise ValueError(f"labels {lab.shape[-2:]} are smaller than the target {out_shape_hw}")
    edges = boundary_map(lab)
    pooled = np.logical_or.reduceat(edges, _bin_starts(lab.shape[-2], h_d), axis=-2)
    pooled = np.logical_or.reduceat(pooled, _bin_starts(lab.shape[-1], w_d), axis=-1)
    out = torch.from_numpy(pooled.astype(np.float32))[:, None]
    return out.to(labels.device) if isinstance(labels, Tensor) else out


def gaussian_blur(maps: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (radius ``ceil(3 sigma)``), replicate padding: no border frame.

    Shape: ``(N, 1, h, w)`` -> ``(N, 1, h, w)``.
    """
    if sigma <= 0:
        return maps
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = gaussian_kernel1d(sigma, radius, dtype=maps.dtype, device=maps.device)
    out = F.pad(maps, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, taps.view(1, 1, 1, -1))
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, taps.view(1, 1, -1, 1))


def boundary_target(
    labels: Tensor | np.ndarray, out_shape_hw: tuple[int, int], *, sigma: float = 1.0
) -> Tensor:
    """Target deformation map ``d_t`` of the edge loss (docs/method.md, piece 6).

    Class-agnostic boundaries computed at full resolution, max-pooled to the density's shape
    and blurred (``sigma`` in density cells). A single-class label gives zeros, never NaN.

    Shape: labels ``(N, H, W)`` -> ``(N, 1, h_d, w_d)`` float32.
    """
    return gaussian_blur(pooled_boundaries(labels, out_shape_hw), sigma)
