"""Stats-first metrics: confusion counts, IoU with absent classes, trimap, cost."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsi_downsample.metrics import (
    confusion_counts,
    intrinsic_iou,
    iou_from_counts,
    mean_iou,
    miou_full_resolution,
    miou_warped_space,
    sampled_fraction,
    trimap_accuracy,
    trimap_counts,
)


def test_confusion_counts_rows_are_labels():
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2]])
    counts = confusion_counts(pred, target, 4)
    assert counts.dtype == np.int64
    assert counts.tolist() == [
        [1, 1, 0, 0, 0],
        [0, 2, 0, 0, 0],
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]


def test_unpredicted_pixels_are_misses_of_their_label():
    counts = confusion_counts([255, 255, 255, 1, 0, 0], [1, 1, 1, 1, 0, 0], 2)
    assert counts.tolist() == [[2, 0, 0], [0, 1, 3]]
    assert iou_from_counts(counts).tolist() == [1.0, 0.25]
    # a 255 prediction is no false positive of any class; a 255 label is never scored
    counts = confusion_counts([255, 1, 0, 1], [0, 255, 0, 1], 2)
    assert counts.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert iou_from_counts(counts).tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="outside 0..1 .ignore_index=None"):
        confusion_counts([255, 0], [0, 0], 2, ignore_index=None)


def test_square_counts_are_still_accepted():
    counts = np.array([[3, 1], [0, 2]])
    assert iou_from_counts(counts).tolist() == [0.75, 2 / 3]
    with pytest.raises(ValueError, match=r"\(C, C \+ 1\) or \(C, C\), got \(2, 4\)"):
        iou_from_counts(np.zeros((2, 4), np.int64))


def test_iou_nan_for_absent_classes_and_mean_excludes_them():
    counts = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    iou = iou_from_counts(counts)
    assert iou[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert math.isnan(iou[3])
    assert mean_iou(counts) == pytest.approx(1 / 3)
    assert math.isnan(mean_iou(np.zeros((3, 3), dtype=np.int64)))


def test_dataset_reduction_is_a_sum_of_counts():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 3, (5, 7)) for _ in range(3)]
    targets = [rng.integers(0, 3, (5, 7)) for _ in range(3)]
    summed = sum(confusion_counts(p, t, 3) for p, t in zip(preds, targets, strict=True))
    joined = confusion_counts(np.concatenate(preds), np.concatenate(targets), 3)
    assert (summed == joined).all()


def test_named_mious_score_their_own_frames():
    # full resolution: the inverted prediction has a hole (255) and the label an ignored pixel
    pred, target = np.array([0, 1, 255, 2, 2]), np.array([0, 1, 1, 2, 255])
    assert miou_full_resolution(pred, target, 3) == pytest.approx((1 + 0.5 + 1) / 3)
    # warped space: tensors, class 2 absent from both -> excluded from the mean
    p_hat, y_hat = torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 0], [1, 1]])
    assert miou_warped_space(p_hat, y_hat, 3) == pytest.approx((0.5 + 2 / 3) / 2)
    # intrinsic: Y' vs Y with no ignore value at all
    y_rec, y = np.array([3, 3, 0, 0]), np.array([3, 0, 0, 0])
    assert intrinsic_iou(y_rec, y, 4, ignore_index=None) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_counts(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="differ"):
        confusion_counts(np.zeros(3), np.zeros(4), 3)


def test_trimap_counts_pixels_near_boundaries():
    target = np.zeros((5, 8), dtype=np.uint8)
    target[:, 4:] = 1  # boundary pixels: columns 3 and 4
    pred = target.copy()
    pred[:, 2] = 1  # wrong one pixel away from the boundary band
    assert trimap_counts(pred, target, 0) == (10, 10)
    assert trimap_counts(pred, target, 1) == (15, 20)  # columns 2..5
    assert trimap_accuracy(pred, target, 1) == 0.75
    # a hole (255 prediction) is wrong; an ignored label is not scored and makes no boundary:
    # row 4 keeps only (4, 3) (1 px from the edge at (3, 3)): 16 + 1 pixels, 4 + 1 wrong
    pred[0, 3], target[4, 4] = 255, 255
    assert trimap_counts(pred, target, 1) == (12, 17)
    assert math.isnan(trimap_accuracy(pred, np.zeros((5, 8), np.uint8), 2))


def test_sampled_fraction():
    assert sampled_fraction(80 * 800, 2000 * 20000) == pytest.approx(0.0016)


def test_boundary_map_is_neutral_and_skips_ignored_neighbours():
    from wsi_downsample.deformation.targets import boundary_map as edge_targets_map
    from wsi_downsample.labels import boundary_map

    assert edge_targets_map is boundary_map  # re-exported where the edge targets use it
    labels = np.array([[0, 0, 1], [0, 255, 1]])
    assert boundary_map(labels).astype(int).tolist() == [[0, 1, 1], [1, 1, 1]]
    assert boundary_map(labels, ignore_index=255).astype(int).tolist() == [[0, 1, 1], [0, 0, 0]]
