"""The three density policies behind one interface, and the registry's helpful miss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsi_downsample.deformation.densities import (
    EdgeDensity,
    LearnedDensity,
    UniformDensity,
    density_edge,
    density_uniform,
    get_density,
)
from wsi_downsample.deformation.targets import pooled_boundaries
from wsi_downsample.errors import ConfigError


def test_registry_miss_lists_the_densities():
    with pytest.raises(
        ConfigError, match=r"unknown density 'x'; available: edge, learned, uniform"
    ):
        get_density("x")
    assert isinstance(get_density("uniform"), UniformDensity)
    assert isinstance(get_density("edge", blur=2.0), EdgeDensity)
    assert isinstance(get_density("learned", widths=(4,)), LearnedDensity)


def test_uniform_density():
    d = density_uniform((4, 5), batch=2)
    assert d.shape == (2, 1, 4, 5) and torch.all(d == 0.05)
    x = torch.rand(3, 3, 6, 7)
    assert torch.allclose(UniformDensity()(x), torch.full((3, 1, 6, 7), 1 / 42))


def test_edge_density_has_a_floor_and_sums_to_one():
    labels = torch.zeros(1, 120, 160, dtype=torch.long)
    labels[:, :, 80:] = 1
    d = density_edge(labels, (12, 16), blur=1.0, floor=0.25)[0, 0]
    assert abs(d.sum().item() - 1.0) < 1e-6
    # far from the edge the blurred map is 0: density = floor / sum; at the peak 1 + floor
    assert d.min().item() == pytest.approx(d.max().item() * 0.25 / 1.25, rel=1e-5)
    assert d[:, 7:9].min() == d.max()  # the boundary columns 7 and 8


def test_edge_density_of_a_single_class_is_uniform():
    d = density_edge(torch.ones(2, 30, 30, dtype=torch.long), (5, 6), floor=0.0)
    assert torch.allclose(d, torch.full((2, 1, 5, 6), 1 / 30))


def test_edge_density_needs_labels_and_matches_the_function():
    labels = torch.from_numpy(np.kron(np.eye(3, dtype=np.int64), np.ones((20, 20), np.int64)))
    x = torch.rand(1, 3, 6, 6)
    with pytest.raises(ConfigError, match="needs the label mask"):
        EdgeDensity()(x)
    boundaries = pooled_boundaries(labels[None], (6, 6))
    got = EdgeDensity(blur=0.5, floor=0.1)(x, boundaries)
    assert torch.equal(got, density_edge(labels[None], (6, 6), blur=0.5, floor=0.1))


def test_learned_density_starts_uniform():
    x = torch.rand(2, 3, 10, 12)
    d = LearnedDensity()(x)
    assert d.shape == (2, 1, 10, 12)
    assert (d - 1 / 120).abs().max().item() < 1e-8
