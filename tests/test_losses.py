"""Losses: min-max edge loss without NaN, focal/CE with ignore, gamma schedules, joint loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from wsi_downsample.deformation.densities import density_from_boundaries
from wsi_downsample.deformation.targets import gaussian_blur
from wsi_downsample.errors import ConfigError
from wsi_downsample.losses import (
    JointLoss,
    SegmentationLoss,
    edge_loss,
    gamma_at,
    mean_scale,
    minmax_scale,
)


def test_minmax_scale_per_image_and_constant_maps():
    maps = torch.tensor(
        [[[[1.0, 3.0], [5.0, 2.0]]], [[[4.0, 4.0], [4.0, 4.0]]]], requires_grad=True
    )
    out = minmax_scale(maps)
    assert out[0, 0].tolist() == [[0.0, 0.5], [1.0, 0.25]]
    assert out[1].abs().sum() == 0
    out.sum().backward()
    assert torch.isfinite(maps.grad).all()


def test_edge_loss_values_and_single_class_target():
    d = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]])
    t = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])
    # m(d) = [0, 1/3, 2/3, 1], m(t) = [0, 0, 0, 1]
    assert edge_loss(d, t).item() == pytest.approx((1 / 9 + 4 / 9) / 4)
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    uniform = torch.softmax(logits.reshape(1, -1), 1).reshape(1, 1, 4, 4)
    loss = edge_loss(uniform, torch.zeros(1, 1, 4, 4))  # single-class label: d_t = 0
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(logits.grad).all()


def _blurred_boundaries() -> tuple[torch.Tensor, torch.Tensor]:
    """A 12 x 12 boundary map (a ring) and its blur (sigma 0.5), float64."""
    bounds = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    bounds[0, 0, 3, 3:9] = bounds[0, 0, 8, 3:9] = bounds[0, 0, 3:9, 3] = bounds[0, 0, 3:9, 8] = 1
    return bounds, gaussian_blur(bounds, 0.5)


def test_mean_edge_loss_sees_contrast_that_minmax_cannot():
    _, t = _blurred_boundaries()
    shape = t / t.max()
    peaked = 0.1 + shape  # 11x denser on the edges than elsewhere
    flat = 1 + shape  # 2x: the same shape
    # min-max scaling compares shapes only: both densities have loss 0
    assert edge_loss(peaked, t).item() == pytest.approx(0, abs=1e-12)
    assert edge_loss(flat, t).item() == pytest.approx(0, abs=1e-12)
    # mean scaling compares with the oracle t / max t + 0.1, which is `peaked`
    assert edge_loss(peaked, t, scaling="mean", floor=0.1).item() == pytest.approx(0, abs=1e-12)
    oracle = shape + 0.1
    expected = ((flat / flat.mean() - oracle / oracle.mean()) ** 2).mean().item()
    assert expected > 0.3
    assert edge_loss(flat, t, scaling="mean", floor=0.1).item() == pytest.approx(expected)


def test_mean_edge_loss_is_zero_at_the_edge_oracle_density():
    # the learned density is pulled towards exactly what `EdgeDensity` samples with
    bounds, t = _blurred_boundaries()
    oracle = density_from_boundaries(bounds, blur=0.5, floor=0.1)  # float32
    assert edge_loss(oracle, t, scaling="mean", floor=0.1).item() == pytest.approx(0, abs=1e-12)
    assert edge_loss(oracle, t, scaling="mean", floor=0.25).item() > 1e-3


def test_mean_edge_loss_has_a_gradient_at_the_uniform_start_and_no_edges_is_uniform():
    _, t = _blurred_boundaries()
    logits = torch.zeros(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    uniform = torch.softmax(logits.reshape(1, -1), 1).reshape(1, 1, 12, 12)
    loss = edge_loss(uniform, t, scaling="mean", floor=0.1)
    loss.backward()
    assert loss.item() > 0.5 and torch.isfinite(logits.grad).all()
    # the gradient raises the density on the edges and lowers it elsewhere
    assert logits.grad[t > 0.5].max() < 0 < logits.grad[t == 0].min()
    # a region without boundaries: the target is the uniform density, loss 0 at the start
    none = edge_loss(uniform, torch.zeros_like(t), scaling="mean", floor=0.1)
    assert none.item() == pytest.approx(0, abs=1e-20)
    assert mean_scale(torch.zeros(2, 1, 3, 3)).abs().sum() == 0


def test_edge_loss_refuses_unknown_scaling_and_a_zero_floor():
    _, t = _blurred_boundaries()
    with pytest.raises(ConfigError, match="unknown edge scaling 'max'"):
        edge_loss(t, t, scaling="max")
    with pytest.raises(ConfigError, match="floor > 0"):
        edge_loss(t, t, scaling="mean", floor=0.0)


def _logits_target():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, :2] = 255
    return logits, target


def test_cross_entropy_ignores_pixels():
    logits, target = _logits_target()
    valid = target != 255
    manual = -F.log_softmax(logits, 1).gather(1, target.clamp(max=3)[:, None])[:, 0][valid].mean()
    assert SegmentationLoss("ce")(logits, target).item() == pytest.approx(manual.item(), rel=1e-6)


def test_focal_loss_matches_formula_and_masks_ignored_pixels():
    logits, target = _logits_target()
    valid = target != 255
    logp = F.log_softmax(logits, 1).gather(1, target.clamp(max=3)[:, None])[:, 0]
    manual = (-((1 - logp.exp()) ** 2) * logp)[valid].mean()
    assert SegmentationLoss("focal", gamma=2.0)(logits, target).item() == pytest.approx(
        manual.item(), rel=1e-5
    )
    # gamma = 0: focal is cross-entropy
    ce = SegmentationLoss("ce")(logits, target)
    assert SegmentationLoss("focal", gamma=0.0)(logits, target).item() == pytest.approx(
        ce.item(), rel=1e-5
    )


def test_all_pixels_ignored_gives_zero():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    for name in ("ce", "focal"):
        loss = SegmentationLoss(name)(logits, torch.full((1, 2, 2), 255))
        assert loss.item() == 0 and not math.isnan(loss.item())


def test_gamma_schedules():
    assert gamma_at(10, gamma=100.0) == 100.0
    kw = dict(gamma=100.0, schedule="poly", total_steps=200)
    assert gamma_at(0, **kw) == 100.0
    assert gamma_at(100, **kw) == pytest.approx(100 * 0.5**0.9)
    assert gamma_at(200, **kw) == 0.0 and gamma_at(300, **kw) == 0.0
    with pytest.raises(ConfigError, match="available: constant, poly"):
        gamma_at(0, gamma=1.0, schedule="cosine")
    with pytest.raises(ConfigError, match="total_steps"):
        JointLoss("ce", schedule="poly")


def test_joint_loss_adds_the_weighted_edge_term():
    logits, target = _logits_target()
    d = torch.rand(2, 1, 3, 3)
    d_t = torch.rand(2, 1, 3, 3)
    out = JointLoss("ce", gamma=100.0, schedule="poly", total_steps=10)(logits, target, d, d_t, 5)
    assert out.gamma == pytest.approx(100 * 0.5**0.9)
    assert out.seg.item() == pytest.approx(SegmentationLoss("ce")(logits, target).item())
    assert out.edge.item() == pytest.approx(edge_loss(d, d_t).item())
    assert out.total.item() == pytest.approx(out.seg.item() + out.gamma * out.edge.item())


def test_unknown_loss():
    with pytest.raises(ConfigError, match="available: ce, focal"):
        SegmentationLoss("dice")


def _edge_grad(spread: float, span_floor: float = 0.5) -> torch.Tensor:
    """Gradient of the edge loss w.r.t. the deformation net's logits at a given spread."""
    torch.manual_seed(0)
    logits = (spread * torch.randn(1, 1, 8, 8, dtype=torch.float64)).requires_grad_()
    density = torch.softmax(logits.reshape(1, -1), 1).reshape(1, 1, 8, 8)
    target = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    target[..., 3:5] = 1.0  # a vertical boundary band
    m = minmax_scale(density, span_floor=span_floor)
    F.mse_loss(m, minmax_scale(target, span_floor=span_floor)).backward()
    return logits.grad


def test_edge_gradient_is_nonzero_finite_and_bounded_from_the_uniform_start():
    for spread in (0.0, 1e-9, 1e-6, 1e-3, 1e-1, 1.0):
        g = _edge_grad(spread)
        assert torch.isfinite(g).all()
        assert 1e-2 < g.norm().item() < 2.0, spread  # non-zero and bounded at every spread
    # pure min-max scaling (the paper's): zero at the uniform start, huge at tiny spreads
    assert _edge_grad(0.0, span_floor=0.0).abs().max().item() == 0.0
    assert _edge_grad(1e-6, span_floor=0.0).norm().item() > 1e4


def test_floored_scale_equals_min_max_once_the_span_is_large():
    maps = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    assert torch.equal(minmax_scale(maps), minmax_scale(maps, span_floor=0.0))
    tiny = torch.tensor([[[[1.0, 1.0], [1.0, 1.0 + 1e-6]]]], dtype=torch.float64)
    # span 1e-6 < 0.5 * mean: scaled by 0.5 * mean, not blown up to [0, 1]
    assert minmax_scale(tiny).max().item() == pytest.approx(1e-6 / (0.5 * (1 + 0.25e-6)))


def test_class_weights_from_counts_sqrt_clip_and_absent_classes():
    from wsi_downsample.losses import class_weights_from_counts

    counts = torch.tensor([9600.0, 300.0, 100.0, 0.0])
    # frequencies 0.96, 0.03, 0.01 -> (f / 0.96) ** -0.5 = 1, sqrt(32), sqrt(96); absent: max
    w = class_weights_from_counts(counts, power=0.5, max_ratio=9.0)
    assert w.tolist() == pytest.approx([1.0, math.sqrt(32), 9.0, 9.0], rel=1e-6)
    assert class_weights_from_counts(counts, power=1.0, max_ratio=1e4)[2] == pytest.approx(96.0)
    assert class_weights_from_counts(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match="max_ratio >= 1"):
        class_weights_from_counts(counts, max_ratio=0.5)


def test_weighted_losses_are_weighted_means_over_valid_pixels():
    logits, target = _logits_target()
    weight = torch.tensor([1.0, 2.0, 5.0, 0.5])
    valid = target != 255
    safe = target.clamp(max=3)
    w = weight[safe][valid]
    logp = F.log_softmax(logits, 1).gather(1, safe[:, None])[:, 0][valid]
    ce = SegmentationLoss("ce", weight=weight)(logits, target)
    assert ce.item() == pytest.approx((-(w * logp).sum() / w.sum()).item(), rel=1e-6)
    focal = SegmentationLoss("focal", gamma=2.0, weight=weight)(logits, target)
    manual = (-w * (1 - logp.exp()) ** 2 * logp).sum() / w.sum()
    assert focal.item() == pytest.approx(manual.item(), rel=1e-5)
    ones = SegmentationLoss("ce", weight=torch.ones(4))(logits, target)
    assert ones.item() == pytest.approx(SegmentationLoss("ce")(logits, target).item(), rel=1e-6)
