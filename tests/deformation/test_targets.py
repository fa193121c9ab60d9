"""Edge-loss target: class-agnostic boundaries, max-pooled, blurred, no frame, no NaN."""

from __future__ import annotations

import numpy as np
import torch

from wsi_downsample.deformation.targets import (
    boundary_map,
    boundary_target,
    gaussian_blur,
    pooled_boundaries,
)


def test_boundary_map_marks_both_sides_of_each_change_and_no_frame():
    labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    assert boundary_map(labels).astype(int).tolist() == [
        [0, 1, 1, 0],
        [1, 1, 1, 1],
        [1, 1, 1, 1],
    ]


def test_single_class_gives_zeros_without_nan():
    target = boundary_target(torch.full((2, 64, 80), 3), (8, 10), sigma=1.0)
    assert target.shape == (2, 1, 8, 10) and target.dtype == torch.float32
    assert torch.isfinite(target).all() and target.abs().sum() == 0


def test_relabelling_classes_gives_the_same_target():
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 4, (6, 8)), np.ones((10, 10), dtype=np.int64))[None]
    relabelled = np.array([7, 0, 255, 2])[labels]
    a = boundary_target(labels, (12, 16))
    b = boundary_target(relabelled, (12, 16))
    assert torch.equal(a, b) and a.max() > 0


def test_thin_structure_is_not_aliased_away():
    labels = np.zeros((1, 1000, 1000), dtype=np.uint8)
    labels[0, 437, 150:850] = 1  # a one-pixel line: strided subsampling would miss it
    pooled = pooled_boundaries(labels, (10, 10))[0, 0]
    assert pooled[4, 1:9].tolist() == [1.0] * 8  # rows 436..438 all fall in cell row 4
    assert pooled.sum() == 8


def test_vertical_boundary_has_no_border_frame():
    labels = torch.zeros(1, 200, 300, dtype=torch.long)
    labels[:, :, 150:] = 1
    target = boundary_target(labels, (20, 30), sigma=1.0)[0, 0]
    # columns 14 and 15 hold the boundary; 3 sigma away the blur has died out completely
    assert target[:, :10].abs().max() == 0 and target[:, 20:].abs().max() == 0
    assert torch.allclose(target[:, 14], target[0, 14].expand(20))  # no darkening at rows 0/19
    peak = target[0, 12:18]
    assert peak.argmax().item() in (2, 3) and peak.max() > 0.5


def test_blur_preserves_mass_away_from_borders():
    maps = torch.zeros(1, 1, 21, 21)
    maps[0, 0, 10, 10] = 1.0
    out = gaussian_blur(maps, 1.5)
    assert abs(out.sum().item() - 1.0) < 1e-5 and out[0, 0, 10, 10] == out.max()
