"""Density policies behind one interface: ``uniform``, ``edge`` (oracle) and ``learned``.

A density policy is an ``nn.Module`` mapping ``(x_lr, boundaries=None)`` to a density
``(N, 1, h_d, w_d)`` that sums to 1 per image; ``x_lr`` is the low-resolution view at the
density's size and ``boundaries`` the label boundaries max-pooled to that size
(``targets.pooled_boundaries``), which only the ``edge`` oracle reads. ``get_density(name,
**kwargs)`` builds one by name. ("Sampler" names only the sampling operator: ``sampler.py``,
``slide_sampler.py``.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from wsi_downsample.deformation.net import DeformationNet
from wsi_downsample.deformation.targets import gaussian_blur, pooled_boundaries
from wsi_downsample.errors import ConfigError

__all__ = [
    "DENSITIES",
    "density_uniform",
    "density_edge",
    "density_from_boundaries",
    "edge_weights",
    "UniformDensity",
    "EdgeDensity",
    "LearnedDensity",
    "get_density",
]


def density_uniform(
    shape_hw: tuple[int, int], *, batch: int = 1, dtype=torch.float32, device=None
) -> Tensor:
    """Constant density ``1 / (h_d w_d)``.

    Shape: ``(batch, 1, h_d, w_d)``.
    """
    h, w = shape_hw
    return torch.full((batch, 1, h, w), 1.0 / (h * w), dtype=dtype, device=device)


def edge_weights(edges: Tensor, *, floor: float) -> Tensor:
    """The edge oracle's unnormalised density: ``edges / max edges + floor`` per image (an
    image without edges: ``floor``). Shared by ``density_from_boundaries`` and the mean-scaled
    edge loss, so the loss's target is exactly what the oracle samples with.

    Shape: ``(N, 1, h, w)`` -> same, same dtype.
    """
    peak = edges.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(peak > 0, edges / peak.clamp_min(1e-12), edges) + float(floor)


def density_from_boundaries(
    boundaries: Tensor, *, blur: float = 1.0, floor: float = 0.25
) -> Tensor:
    """Edge density from pooled boundaries: blur, scale to a peak of 1, add ``floor``, normalise.

    A map without boundaries gives the uniform density.

    Shape: ``(N, 1, h_d, w_d)`` -> ``(N, 1, h_d, w_d)``.
    """
    density = edge_weights(gaussian_blur(boundaries.float(), blur), floor=floor)
    density = density + (density.sum(dim=(1, 2, 3), keepdim=True) == 0).float()
    return density / density.sum(dim=(1, 2, 3), keepdim=True)


def density_edge(
    labels: Tensor, shape_hw: tuple[int, int], *, blur: float = 1.0, floor: float = 0.25
) -> Tensor:
    """Simulated "edge-based" density (paper A.5): blurred boundary map plus a floor.

    The boundary map (class changes max-pooled to ``shape_hw``, Gaussian ``blur`` in density
    cells: small = dense next to edges) is scaled to a maximum of 1 per image, ``floor`` is
    added (relative to that maximum; it keeps some samples away from edges) and the sum is
    normalised to 1. A single-class label gives the uniform density.

    Shape: labels ``(N, H, W)`` -> ``(N, 1, h_d, w_d)``.
    """
    return density_from_boundaries(pooled_boundaries(labels, shape_hw), blur=blur, floor=floor)


class UniformDensity(nn.Module):
    """Constant density at ``x_lr``'s size (the baseline)."""

    needs_labels = False

    def forward(self, x_lr: Tensor, boundaries: Tensor | None = None) -> Tensor:
        """Shape: ``(N, C, h_d, w_d)`` -> ``(N, 1, h_d, w_d)``."""
        n, _, h, w = x_lr.shape
        return density_uniform((h, w), batch=n, dtype=x_lr.dtype, device=x_lr.device)


class EdgeDensity(nn.Module):
    """Oracle edge density from the label boundaries (needs ``boundaries``)."""

    needs_labels = True

    def __init__(self, blur: float = 1.0, floor: float = 0.25) -> None:
        super().__init__()
        self.blur, self.floor = float(blur), float(floor)

    def forward(self, x_lr: Tensor, boundaries: Tensor | None = None) -> Tensor:
        """Shape: ``(N, C, h_d, w_d)``, boundaries ``(N, 1, h_d, w_d)`` -> ``(N, 1, h_d, w_d)``."""
        if boundaries is None:
            raise ConfigError(
                "the 'edge' density is an oracle that needs the label mask; "
                "use the 'uniform' or 'learned' density without labels",
                hint={"sampler": "uniform"},
            )
        d = density_from_boundaries(boundaries, blur=self.blur, floor=self.floor)
        return d.to(dtype=x_lr.dtype, device=x_lr.device)


class LearnedDensity(nn.Module):
    """The deformation network; keyword arguments go to ``DeformationNet``."""

    needs_labels = False

    def __init__(self, **net_kwargs) -> None:
        super().__init__()
        self.net = DeformationNet(**net_kwargs)

    def forward(self, x_lr: Tensor, boundaries: Tensor | None = None) -> Tensor:
        """Shape: ``(N, C, h_d, w_d)`` -> ``(N, 1, h_d, w_d)``."""
        return self.net(x_lr)


DENSITIES: dict[str, Callable[..., nn.Module]] = {
    "edge": EdgeDensity,
    "learned": LearnedDensity,
    "uniform": UniformDensity,
}


def get_density(name: str, **kwargs) -> nn.Module:
    """Build a density policy by name (``uniform``, ``edge`` or ``learned``)."""
    if name not in DENSITIES:
        raise ConfigError(
            f"unknown density {name!r}; available: {', '.join(sorted(DENSITIES))}",
        )
    return DENSITIES[name](**kwargs)
