"""The composed model: x_lr -> density -> grid -> sample -> segment (one home for the chain).

Train, infer, evaluate and the intrinsic study all go through ``DownsampleSegmenter``. Image
sampling happens here, inside the autograd graph: the segmentation loss reaches the density
only through the slide sampler's bilinear weights.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsi_downsample._types import Region
from wsi_downsample.deformation.budget import Budget
from wsi_downsample.deformation.grid import saliency_to_grid
from wsi_downsample.deformation.slide_sampler import SlideSampler
from wsi_downsample.deformation.targets import gaussian_blur
from wsi_downsample.deformation.tile_cache import ReadStats
from wsi_downsample.errors import ConfigError
from wsi_downsample.models.regions import LabelSampler, PreparedRegion, prepare_region

__all__ = ["ForwardOutput", "RegionPrediction", "DownsampleSegmenter", "IGNORE_INDEX"]

IGNORE_INDEX = 255
ImageSampler = Callable[[Tensor], Tensor]  # level-0 grid (h, w, 2) -> image (3, h, w)


@dataclass
class ForwardOutput:
    """One batch through the chain; items of different sizes are padded to the largest.

    ``logits`` ``(N, C, h, w)`` in warped space; ``density`` ``(N, 1, h_d, w_d)`` (0 in the
    padding); ``grid`` ``(N, h, w, 2)`` level-0 ``(x, y)`` float64; ``image`` ``(N, 3, h, w)``;
    ``labels`` ``(N, h, w)`` (255 in the padding) or None; ``edge_target`` ``(N, 1, h_d, w_d)``
    or None. ``task_hw`` and ``density_hw`` give each item's own size (view orientation);
    ``timings``: seconds for ``density_grid``, ``sample`` and ``model`` (forward only).
    """

    logits: Tensor
    density: Tensor
    grid: Tensor
    image: Tensor
    labels: Tensor | None
    edge_target: Tensor | None
    task_hw: list[tuple[int, int]]
    density_hw: list[tuple[int, int]]
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


class RegionPrediction(NamedTuple):
    """One region's prediction, in the region's own orientation.

    ``probs`` ``(C, h, w)`` float32 softmax in warped space; ``grid`` ``(h, w, 2)`` float64
    level-0 ``(x, y)``; ``density`` ``(h_d, w_d)`` float32; ``task_hw`` ``(h, w)``; ``stats``
    the slide reads; ``timings`` seconds for ``lowres``, ``density_grid``, ``sample``, ``model``.
    """

    probs: Tensor
    grid: Tensor
    density: Tensor
    task_hw: tuple[int, int]
    stats: ReadStats
    timings: dict[str, float]


def _pad_to(tensors: Sequence[Tensor], shape_hw: tuple[int, int], value: float) -> Tensor:
    """Stack tensors ``(..., h, w)``, padding bottom/right to ``shape_hw`` with ``value``."""
    h, w = shape_hw
    return torch.stack(
        [F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=value) for t in tensors]
    )


def _batch_hw(shapes: Sequence[tuple[int, int]], multiple: int) -> tuple[int, int]:
    h = max(s[0] for s in shapes)
    w = max(s[1] for s in shapes)
    return (h + -h % multiple, w + -w % multiple)


class DownsampleSegmenter(nn.Module):
    """Learned (or uniform, or edge) non-uniform downsampling in front of a segmenter.

    Parameters
    ----------
    segmenter : nn.Module
        Maps ``(N, 3, H, W)`` in [0, 1] to logits ``(N, C, H, W)``; its ``multiple`` attribute
        (default 1) is the size granularity it needs.
    density : nn.Module
        A density policy (``deformation.densities``): ``(x_lr, boundaries) -> d``.
    density_name : {"uniform", "edge", "learned"}
    budget : Budget
        Task shape per region.
    density_fraction, sigma, radius, padding
        Density size and the eq. 3 kernel (``saliency_to_grid``).
    level_choice : {"fixed", "adaptive"}
        How image samples choose their pyramid level; stored with the model.
    source_mpp : float
        Source resolution; labels always come from its level.
    edge_sigma : float
        Blur of the edge-loss target ``d_t``, in density cells.
    """

    def __init__(
        self,
        segmenter: nn.Module,
        density: nn.Module,
        *,
        density_name: str,
        budget: Budget,
        num_classes: int,
        density_fraction: float = 0.25,
        sigma: float = 4.25,
        radius: int = 10,
        padding: str = "replicate",
        level_choice: str = "fixed",
        source_mpp: float = 0.5,
        edge_sigma: float = 1.0,
    ) -> None:
        super().__init__()
        self.segmenter, self.density = segmenter, density
        self.density_name, self.budget, self.num_classes = density_name, budget, num_classes
        self.density_fraction, self.sigma, self.radius = density_fraction, sigma, radius
        self.padding, self.level_choice, self.source_mpp = padding, level_choice, source_mpp
        self.edge_sigma = edge_sigma
        #: optional image transform applied after sampling in training (e.g. stain jitter)
        self.augment: Callable[[Tensor], Tensor] | None = None
        #: training only: shift each region's grid by a random offset of up to this many
        #: mean sample spacings per axis (a new sub-sample phase each time; 0 = off)
        self.grid_jitter = 0.0
        #: CUDA only: autocast dtype of the segmenter (AMP) and channels-last inputs
        self.autocast_dtype: torch.dtype | None = None
        self.channels_last = False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def multiple(self) -> int:
        return int(getattr(self.segmenter, "multiple", 1))

    def density_of(self, item: PreparedRegion) -> Tensor:
        """x_lr -> density. Shape: ``-> (1, 1, h_d, w_d)``."""
        x_lr = item.x_lr[None].to(self.device)
        bounds = None if item.boundaries is None else item.boundaries[None].to(self.device)
        if getattr(self.density, "needs_labels", False) and bounds is None:
            raise ConfigError(
                "the 'edge' density needs the label mask at training and evaluation time; "
                "commands without labels take the 'uniform' or 'learned' density",
                hint={"sampler": "learned"},
            )
        return self.density(x_lr, bounds)

    def grid_of(self, density: Tensor, item: PreparedRegion) -> Tensor:
        """density -> level-0 grid (eq. 3 in the view frame, mapped to the region).

        Shape: ``(1, 1, h_d, w_d)`` -> ``(h, w, 2)`` float64.
        """
        h_v, w_v = item.view.shape_hw
        grid = saliency_to_grid(
            density,
            (0, 0, w_v, h_v),
            item.task_hw,
            sigma=self.sigma,
            radius=self.radius,
            padding=self.padding,
        )
        return item.view.to_level0(grid[0])

    def edge_target(self, item: PreparedRegion) -> Tensor | None:
        """``d_t``: the pooled boundaries blurred by ``edge_sigma``. Shape: ``(1, h_d, w_d)``."""
        if item.boundaries is None:
            return None
        return gaussian_blur(item.boundaries[None].to(self.device), self.edge_sigma)[0]

    def segment(self, images: Sequence[Tensor]) -> Tensor:
        """Pad to the segmenter's multiple, segment. Shape: ``[(3, h, w)] -> (N, C, H, W)``."""
        shape = _batch_hw([(int(i.shape[-2]), int(i.shape[-1])) for i in images], self.multiple)
        batch = _pad_to(images, shape, 0.0)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return self.segmenter(batch)

    def forward(
        self,
        items: Sequence[PreparedRegion],
        image_samplers: Sequence[ImageSampler],
        label_samplers: Sequence[Callable[[Tensor], Tensor]] | None = None,
    ) -> ForwardOutput:
        """``x_lr -> density -> grid -> sample -> segment`` for a batch of regions.

        ``image_samplers[i]`` samples item ``i``'s slide at a level-0 grid (gradients flow to
        the grid); ``label_samplers[i]`` reads its labels (nearest, fixed source level).
        """
        t0 = time.perf_counter()
        densities = [self.density_of(item) for item in items]
        grids = [self.grid_of(d, item) for d, item in zip(densities, items, strict=True)]
        if self.training and self.grid_jitter > 0:
            grids = [
                jitter_grid(g, item.view.box, self.grid_jitter)
                for g, item in zip(grids, items, strict=True)
            ]
        t1 = time.perf_counter()
        images = [
            sample(g).to(self.device, torch.float32)
            for sample, g in zip(image_samplers, grids, strict=True)
        ]
        labels = None
        if label_samplers is not None:
            sampled = [s(g) for s, g in zip(label_samplers, grids, strict=True)]
        if self.augment is not None and self.training:
            images = [self.augment(image) for image in images]
        t2 = time.perf_counter()
        logits = self.segment(images)
        batch_hw = (int(logits.shape[-2]), int(logits.shape[-1]))
        if label_samplers is not None:
            labels = _pad_to(sampled, batch_hw, IGNORE_INDEX).to(self.device)
        targets = [self.edge_target(item) for item in items]
        d_hw = _batch_hw([item.density_hw for item in items], 1)
        grid = _pad_to([g.permute(2, 0, 1) for g in grids], batch_hw, 0.0).permute(0, 2, 3, 1)
        return ForwardOutput(
            logits=logits,
            density=_pad_to([d[0] for d in densities], d_hw, 0.0),
            grid=grid,
            image=_pad_to(images, batch_hw, 0.0),
            labels=labels,
            edge_target=None if any(t is None for t in targets) else _pad_to(targets, d_hw, 0.0),  # type: ignore[arg-type]
            task_hw=[item.task_hw for item in items],
            density_hw=[item.density_hw for item in items],
            timings={"density_grid": t1 - t0, "sample": t2 - t1, "model": time.perf_counter() - t2},
        )

    @torch.no_grad()
    def predict_region(
        self,
        slide: Any,
        region: Region,
        *,
        sampler: SlideSampler,
        labels: Any = None,
        label_lut: Any = None,
    ) -> RegionPrediction:
        """Segment one region in eval mode (no augmentation, portrait regions transposed).

        ``sampler`` is a ``SlideSampler`` on ``slide`` with the model's ``level_choice`` and
        ``source_mpp``; ``labels`` (a mask opened against the slide, with ``label_lut``) is
        needed only by the ``edge`` density.
        """
        if self.training:
            self.eval()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        mask = labels if self.density_name == "edge" else None
        item = prepare_region(
            slide,
            region,
            budget=self.budget,
            density_fraction=self.density_fraction,
            mask=mask,
            lut=label_lut,
        )
        t1 = time.perf_counter()
        density = self.density_of(item)
        grid = self.grid_of(density, item)
        t2 = time.perf_counter()
        result = sampler.sample(grid.cpu())
        t3 = time.perf_counter()
        logits = self.segment([result.values.to(self.device, torch.float32)])
        h, w = item.task_hw
        probs = torch.softmax(logits[0, :, :h, :w].float(), dim=0).cpu()
        t4 = time.perf_counter()
        timings.update(lowres=t1 - t0, density_grid=t2 - t1, sample=t3 - t2, model=t4 - t3)
        view = item.view
        return RegionPrediction(
            probs=view.from_view(probs).contiguous(),
            grid=view.grid_from_view(grid.cpu()).contiguous(),
            density=view.from_view(density[0, 0].float().cpu()).contiguous(),
            task_hw=tuple(view.from_view(torch.empty(0, h, w)).shape[-2:]),  # type: ignore[arg-type]
            stats=result.stats,
            timings=timings,
        )


def jitter_grid(grid: Tensor, box: tuple[int, int, int, int], amount: float) -> Tensor:
    """The grid shifted by one random level-0 offset, uniform in ``+-amount`` mean sample
    spacings (``sqrt(box area / samples)``) per axis, the shift limited so that every point
    stays inside the region box ``(x0, y0, x1, y1)`` (half-open). Points are never clamped
    one by one: that would stack them on the box edge (and make the adaptive sampler read
    level 0 there).

    Differentiable in ``grid`` (a constant shift). Uses the global torch RNG, which
    checkpoints save, so a resumed run draws the same shifts.

    Shape: ``(h, w, 2)`` level-0 ``(x, y)`` -> same.
    """
    h, w = int(grid.shape[0]), int(grid.shape[1])
    x0, y0, x1, y1 = box
    spacing = math.sqrt((x1 - x0) * (y1 - y0) / max(h * w, 1))  # any view orientation
    shift = (2 * torch.rand(2, dtype=torch.float64) - 1) * (amount * spacing)
    flat = grid.detach().reshape(-1, 2).to(torch.float64).cpu()
    low = torch.tensor([x0, y0], dtype=torch.float64) - flat.min(0).values
    high = torch.tensor([x1, y1], dtype=torch.float64) - flat.max(0).values
    high = torch.nextafter(high, torch.full_like(high, -math.inf))  # half-open box
    shift = torch.minimum(torch.maximum(shift, low), high)
    return grid + shift.to(grid.device, grid.dtype)


def image_sampler(sampler: SlideSampler) -> ImageSampler:
    """Adapt a ``SlideSampler`` to the model's ``image_samplers`` (values only)."""
    return lambda grid: sampler.sample(grid.cpu()).values


__all__ += ["image_sampler", "jitter_grid", "LabelSampler"]
