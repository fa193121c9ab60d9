"""An oracle predictor for infer tests: the slide's own mask sampled on a uniform grid."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from wsi_downsample.deformation import ReadStats, SlideSampler, uniform_grid

CLASSES = [
    (0, "background", (255, 255, 255)),
    (1, "benign", (0, 170, 0)),
    (2, "Gleason 3", (255, 220, 0)),
    (3, "Gleason 4", (255, 128, 0)),
    (4, "atrophy", (0, 150, 255)),
    (5, "HGPIN", (160, 60, 220)),
]


class FakePrediction(NamedTuple):
    probs: torch.Tensor
    grid: torch.Tensor
    density: torch.Tensor
    task_hw: tuple[int, int]
    stats: ReadStats
    timings: dict[str, float]


def oracle(mask: Any, spacing_px: float = 8.0, num_classes: int = 6):
    """``predict(slide, region)``: one-hot of ``mask`` at a uniform grid of ``spacing_px``."""

    def predict(slide: Any, region: Any) -> FakePrediction:
        w, h = region.size_wh
        shape = (max(2, round(h / spacing_px)), max(2, round(w / spacing_px)))
        grid = uniform_grid(
            (region.x0, region.y0, region.x1, region.y1), shape, dtype=torch.float64
        )
        with SlideSampler(mask, source_level=0) as sampler:
            labels = sampler.sample_labels(grid).values.numpy()
        probs = (np.arange(num_classes)[:, None, None] == labels[None]).astype(np.float32)
        density = torch.ones(shape[0] // 4 + 1, shape[1] // 4 + 1)
        timings = {"lowres": 0.0, "density_grid": 0.0, "sample": 0.0, "model": 0.0}
        return FakePrediction(torch.from_numpy(probs), grid, density, shape, ReadStats(), timings)

    return predict
