"""Density -> sampling grid (Jin et al. 2022, eq. 3), in level-0 pixel coordinates.

Coordinate frame (docs/method.md, "Conventions"): a region is the level-0 box
``(x0, y0, x1, y1)``; pixel (row i, col j) covers ``[j, j+1) x [i, i+1)`` and has centre
``(j + 0.5, i + 0.5)``. A grid is a float tensor ``(h, w, 2)`` (or ``(N, h, w, 2)``) of
``(x, y)`` = (column, row) sample positions in that frame. The uniform grid of shape ``h x w``
holds the centres of the ``h x w`` uniform partition of the box. For ``grid_sample`` on an
in-memory array of width ``W`` and height ``H`` whose pixel (0, 0) is level-0 pixel (0, 0):
``x_norm = 2 * x / W - 1``, ``y_norm = 2 * y / H - 1``, ``align_corners=False``.

The density ``d`` lives on an ``h_d x w_d`` lattice whose nodes are the cell centres of the
``h_d x w_d`` partition of the region. Eq. 3 moves each node to the ``d * k``-weighted mean of
the node positions around it (``k`` a fixed Gaussian). Because a weighted mean commutes with
translation, we evaluate it relative to each node: the node's displacement is
``sum d k (X' - X) / sum d k``, and ``X' - X`` is the lattice offset times the cell size, so the
numerator is a convolution of ``d`` with the first-moment kernels ``k * dx`` and ``k * dy``.
This is eq. 3 exactly, with the node positions extended *linearly* into the padding (the
offsets keep growing past the border), and it keeps float32 exact at level-0 magnitudes: a
uniform ``d`` gives a zero displacement, i.e. exactly the lattice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wsi_downsample._types import BoxXYXY
from wsi_downsample.errors import ConfigError

__all__ = [
    "PADDINGS",
    "gaussian_kernel1d",
    "uniform_grid",
    "density_to_displacement",
    "resize_displacement",
    "saliency_to_grid",
    "clamp_to_region",
]

PADDINGS = ("replicate", "reflect")

Box = BoxXYXY  # level-0 (x0, y0, x1, y1), see wsi_downsample._types


def gaussian_kernel1d(sigma: float, radius: int, *, dtype=torch.float32, device=None) -> Tensor:
    """Normalised 1-D Gaussian taps at offsets ``-radius..radius``.

    Shape: ``(2 * radius + 1,)``.
    """
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def uniform_grid(
    region_box_xyxy: Box, shape_hw: tuple[int, int], *, dtype=torch.float32, device=None
) -> Tensor:
    """Centres of the ``h x w`` uniform partition of a level-0 box.

    Shape: ``(h, w, 2)`` holding ``(x, y)``.
    """
    x0, y0, x1, y1 = (float(v) for v in region_box_xyxy)
    h, w = shape_hw
    xs = x0 + (torch.arange(w, dtype=torch.float64) + 0.5) * ((x1 - x0) / w)
    ys = y0 + (torch.arange(h, dtype=torch.float64) + 0.5) * ((y1 - y0) / h)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    return grid.to(dtype=dtype, device=device)


def _pad_index(n: int, radius: int, padding: str, device) -> Tensor:
    """Source index of every padded position ``-radius..n-1+radius`` (any radius, any n)."""
    idx = torch.arange(-radius, n + radius, device=device)
    if padding == "replicate" or n == 1:
        return idx.clamp(0, n - 1)
    period = 2 * (n - 1)  # mirror without repeating the edge, like numpy's "reflect"
    idx = idx.remainder(period)
    return torch.where(idx < n, idx, period - idx)


def _moment_kernels(sigma: float, radius: int, dtype, device) -> Tensor:
    """Weights ``k``, ``k * dx``, ``k * dy`` of eq. 3 as one conv2d weight ``(3, 1, K, K)``."""
    g = gaussian_kernel1d(sigma, radius, dtype=torch.float64)
    k = g[:, None] * g[None, :]
    off = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernels = torch.stack([k, k * off[None, :], k * off[:, None]])  # dx varies along columns
    return kernels[:, None].to(dtype=dtype, device=device)


def density_to_displacement(
    density: Tensor, *, sigma: float = 4.25, radius: int = 10, padding: str = "replicate"
) -> Tensor:
    """Eq. 3: displacement of every lattice node, in lattice cells, channels ``(dx, dy)``.

    Parameters
    ----------
    density : Tensor
        Sampling density ``d >= 0`` on the ``h_d x w_d`` lattice.
    sigma, radius : float, int
        Standard deviation and window radius of the Gaussian kernel, in lattice cells
        (the authors' histology setting: FWHM 10 -> sigma 4.25, radius 10).
    padding : {"replicate", "reflect"}
        How ``d`` is extended past the region border.

    Shape: density ``(N, 1, h_d, w_d)`` -> ``(N, 2, h_d, w_d)``.
    """
    if padding not in PADDINGS:
        raise ConfigError(f"unknown grid padding {padding!r}; available: {', '.join(PADDINGS)}")
    _, _, h, w = density.shape
    rows = _pad_index(h, radius, padding, density.device)
    cols = _pad_index(w, radius, padding, density.device)
    padded = density.index_select(2, rows).index_select(3, cols)
    moments = F.conv2d(padded, _moment_kernels(sigma, radius, density.dtype, density.device))
    den = moments[:, :1]
    safe = den.clamp_min(torch.finfo(density.dtype).tiny)
    return torch.where(den > 0, moments[:, 1:] / safe, torch.zeros_like(moments[:, 1:]))


def _linear_resize_matrix(n_in: int, n_out: int, dtype, device) -> Tensor:
    """``(n_out, n_in)`` weights: linear interpolation between node centres of an ``n_in``
    partition, linear extrapolation beyond the outermost centres, at ``n_out`` cell centres."""
    if n_in == 1:
        return torch.ones(n_out, 1, dtype=dtype, device=device)
    u = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    left = u.floor().clamp(0, n_in - 2)
    t = u - left  # < 0 or > 1 beyond the outermost centres: extrapolation, never clamping
    mat = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    mat[rows, left.long()] = 1 - t
    mat[rows, left.long() + 1] = t
    return mat.to(dtype=dtype, device=device)


def resize_displacement(displacement: Tensor, out_shape_hw: tuple[int, int]) -> Tensor:
    """Bilinear resize of a node field with linear extrapolation past the outer centres.

    Shape: ``(N, 2, h_d, w_d)`` -> ``(N, 2, h, w)``.
    """
    _, _, h_d, w_d = displacement.shape
    h, w = out_shape_hw
    a_rows = _linear_resize_matrix(h_d, h, displacement.dtype, displacement.device)
    a_cols = _linear_resize_matrix(w_d, w, displacement.dtype, displacement.device)
    return a_rows @ displacement @ a_cols.T


def saliency_to_grid(
    density: Tensor,
    region_box: Box,
    out_shape_hw: tuple[int, int],
    *,
    sigma: float = 4.25,
    radius: int = 10,
    padding: str = "replicate",
) -> Tensor:
    """Sampling grid from a density (eq. 3), resized to the task shape, clamped to the region.

    Node displacements (eq. 3) are resized from the ``h_d x w_d`` lattice to ``h x w``
    (bilinear between node centres, linear extrapolation beyond them), added to the uniform
    grid and clamped to the half-open region box (``clamp_to_region``); since node positions
    are linear in the index this equals resizing the node lattice
    itself. A uniform density returns exactly ``uniform_grid(region_box, out_shape_hw)``.
    Differentiable with respect to ``density``.

    Shape: density ``(N, 1, h_d, w_d)`` -> grid ``(N, h, w, 2)`` of level-0 ``(x, y)``.
    """
    _, _, h_d, w_d = density.shape
    x0, y0, x1, y1 = (float(v) for v in region_box)
    disp = density_to_displacement(density, sigma=sigma, radius=radius, padding=padding)
    disp = resize_displacement(disp, out_shape_hw).permute(0, 2, 3, 1)
    cell = torch.tensor([(x1 - x0) / w_d, (y1 - y0) / h_d], dtype=disp.dtype, device=disp.device)
    base = uniform_grid(region_box, out_shape_hw, dtype=disp.dtype, device=disp.device)
    return clamp_to_region(base + disp * cell, region_box)


def clamp_to_region(grid: Tensor, region_box: Box) -> Tensor:
    """Clamp points to the half-open box ``[x0, x1) x [y0, y1)``.

    The upper bound is the largest value of the grid's dtype below ``x1`` (``nextafter``), so
    a point never lands on ``x1`` or ``y1``: under the ``[j, j + 1)`` pixel convention that
    pixel lies outside the region. Gradients pass where a point is not clamped.

    Shape: ``(..., 2)`` -> ``(..., 2)``.
    """
    x0, y0, x1, y1 = (float(v) for v in region_box)
    lo = torch.tensor([x0, y0], dtype=grid.dtype, device=grid.device)
    hi = torch.tensor([x1, y1], dtype=grid.dtype, device=grid.device)
    hi = torch.nextafter(hi, torch.full_like(hi, -torch.inf))
    return torch.maximum(torch.minimum(grid, hi), lo)
