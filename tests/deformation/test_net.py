"""Deformation network: uniform start, sizes, and gradients through grid and sampler."""

from __future__ import annotations

import pytest
import torch

from wsi_downsample.deformation.grid import saliency_to_grid
from wsi_downsample.deformation.net import DeformationNet
from wsi_downsample.deformation.sampler import sample_image
from wsi_downsample.errors import ConfigError


def test_starts_exactly_uniform_and_sums_to_one():
    torch.manual_seed(0)
    net = DeformationNet()
    d = net(torch.rand(3, 3, 20, 50))
    assert d.shape == (3, 1, 20, 50)
    assert torch.equal(d, torch.full_like(d, 1 / 1000))
    assert net.head.bias is None and net.head.weight.abs().sum() == 0


def test_parameter_counts_of_the_paper_and_the_authors_code():
    paper = DeformationNet(widths=(24, 24, 3))
    authors = DeformationNet(widths=(192, 192, 24), activation="relu6")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # convs (no bias) + BN (2 per channel) + 1x1 head
    assert count(paper) == 3 * 24 * 9 + 48 + 24 * 24 * 9 + 48 + 24 * 3 * 9 + 6 + 3
    assert count(authors) == 379_272
    assert isinstance(authors.features[2], torch.nn.ReLU6)


def test_softmax_output_is_positive_and_normalised_after_training():
    torch.manual_seed(1)
    net = DeformationNet(widths=(8,))
    torch.nn.init.normal_(net.head.weight, std=3.0)
    d = net(torch.rand(2, 3, 7, 9))
    assert (d > 0).all() and torch.allclose(d.sum(dim=(1, 2, 3)), torch.ones(2))


def test_gradients_reach_every_parameter_through_grid_and_sampler():
    torch.manual_seed(2)
    net = DeformationNet(widths=(8, 8, 3))
    image = torch.rand(2, 3, 96, 128)
    x_lr = torch.nn.functional.interpolate(image, size=(12, 16), mode="area")
    target = torch.rand(2, 3, 24, 32)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)

    def step() -> None:
        opt.zero_grad()
        grid = saliency_to_grid(net(x_lr), (0, 0, 128, 96), (24, 32), sigma=2.0, radius=4)
        loss = ((sample_image(image, grid) - target) ** 2).mean()
        loss.backward()

    step()  # zero-initialised head: only the head gets a gradient at step 0
    assert net.head.weight.grad.abs().sum() > 0
    assert net.features[0].weight.grad.abs().sum() == 0
    opt.step()
    step()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_unknown_activation():
    with pytest.raises(ConfigError, match="available: relu, relu6"):
        DeformationNet(activation="gelu")
