"""The three samplers behind one interface: ``uniform``, ``edge`` (oracle) and ``learned``.

Every sampler is an ``nn.Module`` mapping ``(x_lr, labels=None)`` to a density
``(N, 1, h_d, w_d)`` that sums to 1 per image; ``x_lr`` is the low-resolution view at the
density's size. ``get_sampler(name, **kwargs)`` builds one by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from wsi_downsample.deformation.net import DeformationNet
from wsi_downsample.deformation.targets import boundary_target
from wsi_downsample.errors import ConfigError

__all__ = [
    "SAMPLERS",
    "density_uniform",
    "density_edge",
    "UniformSampler",
    "EdgeSampler",
    "LearnedSampler",
    "get_sampler",
]


def density_uniform(
    shape_hw: tuple[int, int], *, batch: int = 1, dtype=torch.float32, device=None
) -> Tensor:
    """Constant density ``1 / (h_d w_d)``.

    Shape: ``(batch, 1, h_d, w_d)``.
    """
    h, w = shape_hw
    return torch.full((batch, 1, h, w), 1.0 / (h * w), dtype=dtype, device=device)


def density_edge(
    labels: Tensor, shape_hw: tuple[int, int], *, blur: float = 1.0, floor: float = 0.25
) -> Tensor:
    """Simulated "edge-based" density (paper A.5): blurred boundary map plus a floor.

    The boundary map (``boundary_target``, Gaussian ``blur`` in density cells: small = dense
    next to edges) is scaled to a maximum of 1 per image, ``floor`` is added (relative to that
    maximum; it keeps some samples away from edges) and the sum is normalised to 1. A
    single-class label gives the uniform density.

    Shape: labels ``(N, H, W)`` -> ``(N, 1, h_d, w_d)``.
    """
    edges = boundary_target(labels, shape_hw, sigma=blur)
    peak = edges.amax(dim=(1, 2, 3), keepdim=True)
    density = torch.where(peak > 0, edges / peak.clamp_min(1e-12), edges) + float(floor)
    density = density + (density.sum(dim=(1, 2, 3), keepdim=True) == 0).float()
    return density / density.sum(dim=(1, 2, 3), keepdim=True)


class UniformSampler(nn.Module):
    """Constant density at ``x_lr``'s size (the baseline)."""

    def forward(self, x_lr: Tensor, labels: Tensor | None = None) -> Tensor:
        """Shape: ``(N, C, h_d, w_d)`` -> ``(N, 1, h_d, w_d)``."""
        n, _, h, w = x_lr.shape
        return density_uniform((h, w), batch=n, dtype=x_lr.dtype, device=x_lr.device)


class EdgeSampler(nn.Module):
    """Oracle edge density from the full-resolution labels (needs ``labels``)."""

    def __init__(self, blur: float = 1.0, floor: float = 0.25) -> None:
        super().__init__()
        self.blur, self.floor = float(blur), float(floor)

    def forward(self, x_lr: Tensor, labels: Tensor | None = None) -> Tensor:
        """Shape: ``(N, C, h_d, w_d)``, labels ``(N, H, W)`` -> ``(N, 1, h_d, w_d)``."""
        if labels is None:
            raise ConfigError(
                "the 'edge' sampler is an oracle that needs the label mask; "
                "use --sampler uniform or learned for inference without labels"
            )
        d = density_edge(labels, (x_lr.shape[-2], x_lr.shape[-1]), blur=self.blur, floor=self.floor)
        return d.to(dtype=x_lr.dtype, device=x_lr.device)


class LearnedSampler(nn.Module):
    """The deformation network; keyword arguments go to ``DeformationNet``."""

    def __init__(self, **net_kwargs) -> None:
        super().__init__()
        self.net = DeformationNet(**net_kwargs)

    def forward(self, x_lr: Tensor, labels: Tensor | None = None) -> Tensor:
        """Shape: ``(N, C, h_d, w_d)`` -> ``(N, 1, h_d, w_d)``."""
        return self.net(x_lr)


SAMPLERS: dict[str, Callable[..., nn.Module]] = {
    "edge": EdgeSampler,
    "learned": LearnedSampler,
    "uniform": UniformSampler,
}


def get_sampler(name: str, **kwargs) -> nn.Module:
    """Build a sampler by name (``uniform``, ``edge`` or ``learned``)."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; available: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name](**kwargs)
