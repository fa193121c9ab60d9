"""Training losses: segmentation loss in warped space, the edge regulariser, the joint loss."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from monai.losses import FocalLoss
from torch import Tensor, nn

from wsi_downsample.deformation.densities import edge_weights
from wsi_downsample.errors import ConfigError

__all__ = [
    "SEG_LOSSES",
    "SCHEDULES",
    "EDGE_SCALINGS",
    "minmax_scale",
    "mean_scale",
    "edge_loss",
    "class_weights_from_counts",
    "SegmentationLoss",
    "gamma_at",
    "JointLossOutput",
    "JointLoss",
]

SEG_LOSSES = ("ce", "focal")
SCHEDULES = ("constant", "poly")
EDGE_SCALINGS = ("minmax", "mean")


def minmax_scale(maps: Tensor, *, span_floor: float = 0.5) -> Tensor:
    """Per-image min-max scaling with a floored span: ``(d - min d) / max(span, f * mean d)``.

    Deviation from the paper (docs/method.md, piece 6): pure min-max scaling
    (``span_floor=0``) has an exactly zero gradient at a constant map — the deformation
    net's uniform start — and a gradient of order ``1 / span`` at tiny spreads (about 4e4
    times the usual for a spread of 1e-6). Flooring the span at ``span_floor`` times the
    mean keeps the gradient finite and bounded at every spread and equals the paper's
    scaling once ``max - min >= span_floor * mean``. An all-zero map scales to 0 (no NaN,
    also in the gradient).

    Shape: ``(N, ...)`` -> same.
    """
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.amin(1, keepdim=True)
    span = flat.amax(1, keepdim=True) - lo
    scale = torch.maximum(span, span_floor * flat.mean(1, keepdim=True).abs())
    scaled = (flat - lo) / scale.clamp_min(torch.finfo(maps.dtype).tiny) * (scale > 0)
    return scaled.reshape(maps.shape)


def mean_scale(maps: Tensor) -> Tensor:
    """Each image divided by its mean: ``d / mean d`` (1 = the uniform density).

    Unlike ``minmax_scale`` this keeps contrast: a map twice as peaked scales to values
    twice as far from 1. An all-zero map scales to 0 (no NaN, also in the gradient).

    Shape: ``(N, ...)`` -> same.
    """
    flat = maps.reshape(maps.shape[0], -1)
    mean = flat.mean(1, keepdim=True)
    safe = torch.where(mean > 0, mean, torch.ones_like(mean))
    return (flat / safe * (mean > 0)).reshape(maps.shape)


def edge_loss(
    density: Tensor, target: Tensor, *, scaling: str = "minmax", floor: float = 0.25
) -> Tensor:
    """Edge regulariser ``L_e`` between the density ``d`` and the blurred boundaries ``d_t``.

    ``scaling="minmax"`` (the paper): ``MSE(m(d), m(d_t))``, ``m`` = ``minmax_scale``
    (floored span). It compares shapes only: once the density's span exceeds half its mean,
    a density 1.5x and one 10x denser on the edges have the same loss.

    ``scaling="mean"``: ``MSE(d / mean d, e / mean e)`` with ``e = d_t / max d_t + floor``,
    the edge oracle's density (``density_from_boundaries`` with the same blur and floor).
    It sees contrast: zero only when ``d`` is that density (up to its scale), and it has a
    gradient at the uniform start. A target without boundaries is the uniform density.

    Shape: density, target ``(N, 1, h_d, w_d)`` -> scalar.
    """
    target = target.to(density.dtype)
    if scaling == "minmax":
        return F.mse_loss(minmax_scale(density), minmax_scale(target))
    if scaling != "mean":
        raise ConfigError(
            f"unknown edge scaling {scaling!r}; available: {', '.join(EDGE_SCALINGS)}"
        )
    if floor <= 0:
        raise ConfigError(f"the 'mean' edge scaling needs floor > 0, got {floor}")
    return F.mse_loss(mean_scale(density), mean_scale(edge_weights(target, floor=floor)))


def class_weights_from_counts(
    counts: Tensor, *, power: float = 0.5, max_ratio: float = 10.0
) -> Tensor:
    """Inverse-frequency class weights ``(n_c / n) ** -power``, clipped, smallest weight 1.

    ``power`` 1 is plain inverse frequency, 0.5 its square root (rare classes are not
    weighted up to their noise). Weights are divided by the smallest one, then clipped at
    ``max_ratio``; a class without pixels gets ``max_ratio``. No pixel at all: all ones.

    Shape: ``(C,)`` pixel counts -> ``(C,)`` float32.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if max_ratio < 1 or power < 0:
        raise ConfigError(f"need max_ratio >= 1 and power >= 0, got {max_ratio}, {power}")
    total = counts.sum()
    if total <= 0:
        return torch.ones(counts.shape, dtype=torch.float32)
    present = counts > 0
    weights = torch.full(counts.shape, float("inf"), dtype=torch.float64)
    weights[present] = (counts[present] / total) ** -power
    weights = weights / weights[present].min()
    return weights.clamp(max=max_ratio).float()


class SegmentationLoss(nn.Module):
    """Focal (paper text, MONAI) or cross-entropy (authors' histology code) in warped space.

    Pixels equal to ``ignore_index`` add nothing; the loss is the mean over the others
    (focal: summed over classes per pixel). All pixels ignored gives 0. With per-class
    ``weight`` both losses are the weighted mean ``sum w_y l / sum w_y`` over valid pixels
    (PyTorch's weighted cross-entropy; the focal loss normalised the same way).

    Parameters
    ----------
    name : {"focal", "ce"}
    ignore_index : int
    gamma : float
        Focusing parameter of the focal loss.
    weight : Tensor, optional
        ``(C,)`` per-class weights (``class_weights_from_counts``); None: all 1.
    """

    def __init__(
        self,
        name: str = "focal",
        *,
        ignore_index: int = 255,
        gamma: float = 2.0,
        weight: Tensor | None = None,
    ):
        super().__init__()
        if name not in SEG_LOSSES:
            raise ConfigError(f"unknown loss {name!r}; available: {', '.join(SEG_LOSSES)}")
        self.name, self.ignore_index = name, ignore_index
        self.weight: Tensor | None
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight).float())
        self.focal = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=gamma, reduction="none")

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Shape: logits ``(N, C, h, w)``, target ``(N, h, w)`` int -> scalar."""
        target = target.long()
        valid = target != self.ignore_index
        if not bool(valid.any()):
            return logits.sum() * 0.0
        weight = None if self.weight is None else self.weight.to(logits)
        if self.name == "ce":
            return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)
        safe = torch.where(valid, target, torch.zeros_like(target))
        per_pixel = self.focal(logits, safe[:, None]).sum(1)
        norm = valid.to(logits) if weight is None else weight[safe] * valid
        if weight is not None:
            per_pixel = per_pixel * weight[safe]
        return (per_pixel * valid).sum() / norm.sum()


def gamma_at(
    step: int, *, gamma: float, schedule: str = "constant", total_steps: int = 0, power: float = 0.9
) -> float:
    """Edge-loss weight at a step: constant, or ``gamma (1 - step / total_steps) ** power``."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; available: {', '.join(SCHEDULES)}")
    if schedule == "constant":
        return float(gamma)
    if total_steps <= 0:
        raise ConfigError("the 'poly' gamma schedule needs total_steps > 0")
    return float(gamma) * max(0.0, 1.0 - step / total_steps) ** power


class JointLossOutput(NamedTuple):
    """Total loss and its parts (``gamma`` is the edge weight used)."""

    total: Tensor
    seg: Tensor
    edge: Tensor
    gamma: float


class JointLoss(nn.Module):
    """``L = L_seg(P_hat, Y_hat) + gamma(step) * L_e(d, d_t)`` (paper eq. 4).

    Parameters
    ----------
    seg : SegmentationLoss or str
        The segmentation loss, or its name.
    gamma : float
        Edge-loss weight (paper: 100).
    schedule : {"constant", "poly"}
        The authors' histology run decays gamma polynomially (power 0.9) to 0.
    edge_scaling, edge_floor
        How ``edge_loss`` compares density and target (``"minmax"``: the paper).
    """

    def __init__(
        self,
        seg: nn.Module | str = "focal",
        *,
        gamma: float = 100.0,
        schedule: str = "constant",
        power: float = 0.9,
        total_steps: int = 0,
        edge_scaling: str = "minmax",
        edge_floor: float = 0.25,
    ) -> None:
        super().__init__()
        self.edge_scaling, self.edge_floor = edge_scaling, edge_floor
        self.seg = SegmentationLoss(seg) if isinstance(seg, str) else seg
        self.gamma, self.schedule, self.power, self.total_steps = (
            gamma,
            schedule,
            power,
            total_steps,
        )
        gamma_at(0, gamma=gamma, schedule=schedule, total_steps=total_steps, power=power)

    def forward(
        self, logits: Tensor, target: Tensor, density: Tensor, density_target: Tensor, step: int = 0
    ) -> JointLossOutput:
        """Shape: logits ``(N, C, h, w)``, target ``(N, h, w)``, density and density_target
        ``(N, 1, h_d, w_d)`` -> ``JointLossOutput`` of scalars."""
        gamma = gamma_at(
            step,
            gamma=self.gamma,
            schedule=self.schedule,
            total_steps=self.total_steps,
            power=self.power,
        )
        seg = self.seg(logits, target)
        edge = edge_loss(density, density_target, scaling=self.edge_scaling, floor=self.edge_floor)
        return JointLossOutput(seg + gamma * edge, seg, edge, gamma)
