"""Intrinsic upsampling error IoU(Y', Y) of a sampler on one label array (paper section 2.2).

Y' = inverse(G_d(Y)): sample the label with the sampler's grid (nearest), invert back to the
label's frame and compare. It needs no model, only a label and a density; sum the returned
counts over regions and slides, then take ``metrics.mean_iou`` once.
"""

from __future__ import annotations

import numpy as np
import torch

from wsi_downsample.deformation.budget import density_shape
from wsi_downsample.deformation.densities import density_edge, density_uniform
from wsi_downsample.deformation.grid import saliency_to_grid
from wsi_downsample.deformation.inverse import invert_labels, scatter_nearest_inverse
from wsi_downsample.deformation.sampler import sample_labels
from wsi_downsample.errors import ConfigError
from wsi_downsample.metrics import confusion_counts

__all__ = ["INVERSES", "INTRINSIC_SAMPLERS", "reconstruct_labels", "intrinsic_counts"]

INVERSES = ("exact", "scatter")
INTRINSIC_SAMPLERS = ("edge", "uniform")


def reconstruct_labels(
    labels: np.ndarray,
    budget_hw: tuple[int, int],
    *,
    sampler: str = "uniform",
    blur: float = 1.0,
    floor: float = 0.25,
    inverse: str = "exact",
    interpolation: str = "bilinear",
    num_classes: int,
    ignore_index: int | None = 255,
    density_fraction: float = 0.25,
    sigma: float = 4.25,
    radius: int = 10,
) -> np.ndarray:
    """Y' = inverse(G_d(Y)) in the label's own frame.

    Shape: labels ``(H, W)`` -> ``(H, W)``.
    """
    if sampler not in INTRINSIC_SAMPLERS:
        raise ConfigError(
            f"unknown sampler {sampler!r} for the intrinsic study; "
            f"available: {', '.join(INTRINSIC_SAMPLERS)}"
        )
    if inverse not in INVERSES:
        raise ConfigError(f"unknown inverse {inverse!r}; available: {', '.join(INVERSES)}")
    lab = torch.from_numpy(np.array(labels, copy=True))[None]  # writable, owned copy
    height, width = lab.shape[-2:]
    d_shape = density_shape(budget_hw, fraction=density_fraction)
    if sampler == "uniform":
        density = density_uniform(d_shape)
    else:
        density = density_edge(lab, d_shape, blur=blur, floor=floor)
    grid = saliency_to_grid(density, (0, 0, width, height), budget_hw, sigma=sigma, radius=radius)
    sampled = sample_labels(lab, grid)[0]
    if inverse == "scatter":
        return scatter_nearest_inverse(sampled, grid[0], (height, width))
    return invert_labels(
        sampled,
        grid[0],
        (height, width),
        num_classes=num_classes,
        ignore_index=ignore_index,
        interpolation=interpolation,
    )


def intrinsic_counts(
    labels: np.ndarray,
    budget_hw: tuple[int, int],
    *,
    sampler: str = "uniform",
    blur: float = 1.0,
    floor: float = 0.25,
    inverse: str = "exact",
    interpolation: str = "bilinear",
    num_classes: int,
    ignore_index: int | None = 255,
    density_fraction: float = 0.25,
    sigma: float = 4.25,
    radius: int = 10,
) -> np.ndarray:
    """Confusion counts of Y' = inverse(G_d(Y)) against Y (see ``reconstruct_labels``).

    Parameters
    ----------
    labels : ndarray
        Label array ``(H, W)`` at the source mpp (class indices, ``ignore_index`` allowed).
    budget_hw : (int, int)
        Task shape ``(h, w)`` of the sampled label.
    sampler : {"uniform", "edge"}
        The density; ``edge`` uses ``blur`` and ``floor`` (see ``density_edge``).
    inverse : {"exact", "scatter"}
        Exact piecewise-bilinear inverse or the paper's scatter + nearest neighbour.
    interpolation : {"bilinear", "nearest"}
        How the exact inverse reads the samples around a pixel (see ``invert_labels``).
    density_fraction, sigma, radius
        Density size relative to the budget, and the eq. 3 kernel (lattice cells).

    Shape: labels ``(H, W)`` -> counts ``(C, C + 1)`` int64 (rows: label, columns: Y'; the
    last: labelled pixels Y' left at ``ignore_index``, see ``metrics.confusion_counts``).
    """
    recon = reconstruct_labels(
        labels,
        budget_hw,
        sampler=sampler,
        blur=blur,
        floor=floor,
        inverse=inverse,
        interpolation=interpolation,
        num_classes=num_classes,
        ignore_index=ignore_index,
        density_fraction=density_fraction,
        sigma=sigma,
        radius=radius,
    )
    return confusion_counts(recon, labels, num_classes, ignore_index=ignore_index)
