"""Stats-first segmentation metrics: confusion counts, then IoU, mIoU, trimap accuracy.

Reduce a dataset by summing counts, then take the IoU once. Three mIoU names keep the frames
apart (docs/method.md, "Metrics"): ``miou_full_resolution`` (prediction after the inverse vs the
label in the output frame), ``miou_warped_space`` (P_hat vs Y_hat in the deformed low-res
space) and ``intrinsic_iou`` (IoU(Y', Y) with Y' = inverse(G(Y))). The mean IoU excludes
classes absent from both prediction and label (union 0).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from torch import Tensor

from wsi_downsample._arrays import as_numpy
from wsi_downsample.labels import boundary_map

__all__ = [
    "confusion_counts",
    "iou_from_counts",
    "mean_iou",
    "miou_full_resolution",
    "miou_warped_space",
    "intrinsic_iou",
    "trimap_counts",
    "trimap_accuracy",
    "sampled_fraction",
]

Array = np.ndarray | Tensor


def confusion_counts(
    pred: Array, target: Array, num_classes: int, *, ignore_index: int | None = 255
) -> np.ndarray:
    """Confusion matrix ``counts[t, p]`` = pixels of label ``t`` predicted ``p``, plus a last
    column ``counts[t, C]`` = pixels of label ``t`` with no prediction (``ignore_index``).

    Only the target decides what is scored: a pixel whose label is ``ignore_index`` is left
    out; a labelled pixel predicted ``ignore_index`` (nothing sampled there, a hole) is a
    false negative of its label and a false positive of no class. Counted in chunks, so
    temporaries stay small whatever the array size. Sum counts over a dataset, then take
    ``iou_from_counts`` once.

    Shape: pred, target ``(...)`` same shape -> ``(C, C + 1)`` int64.
    """
    p_all, t_all = as_numpy(pred).ravel(), as_numpy(target).ravel()
    if p_all.shape != t_all.shape:
        raise ValueError(
            f"prediction {as_numpy(pred).shape} and target {as_numpy(target).shape} differ"
        )
    cols = num_classes + 1
    counts = np.zeros(num_classes * cols, dtype=np.int64)
    for start in range(0, p_all.size, _CHUNK):
        p = p_all[start : start + _CHUNK].astype(np.int64)
        t = t_all[start : start + _CHUNK].astype(np.int64)
        counts += _chunk_counts(p, t, num_classes, ignore_index)
    return counts.reshape(num_classes, cols)


_CHUNK = 1 << 22  # pixels per counting chunk (~100 MB of temporaries at most)


def _chunk_counts(
    p: np.ndarray, t: np.ndarray, num_classes: int, ignore_index: int | None
) -> np.ndarray:
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    unpredicted = p == ignore_index if ignore_index is not None else np.zeros(p.shape, bool)
    for name, v in (("prediction", p[~unpredicted]), ("target", t)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(
                f"{name} holds values outside 0..{num_classes - 1} (ignore_index={ignore_index})"
            )
    p = np.where(unpredicted, num_classes, p)  # the "no prediction" column
    cols = num_classes + 1
    return np.bincount(t * cols + p, minlength=num_classes * cols)


def iou_from_counts(counts: np.ndarray) -> np.ndarray:
    """Per-class IoU ``TP / (TP + FP + FN)``; NaN for classes absent from both (union 0).

    ``counts`` is ``confusion_counts``' matrix: its last column (pixels with no prediction)
    adds to each label's FN only; a square ``(C, C)`` matrix has no such column.

    Shape: ``(C, C + 1)`` or ``(C, C)`` -> ``(C,)`` float64.
    """
    c = counts.shape[0]
    if counts.ndim != 2 or counts.shape[1] not in (c, c + 1):
        raise ValueError(f"confusion counts must be (C, C + 1) or (C, C), got {counts.shape}")
    tp = np.diag(counts[:, :c]).astype(np.float64)
    union = counts[:, :c].sum(0) + counts.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(counts: np.ndarray) -> float:
    """Mean of per-class IoU over present classes (absent classes excluded); NaN if none."""
    iou = iou_from_counts(counts)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def miou_full_resolution(
    pred: Array, target: Array, num_classes: int, *, ignore_index: int | None = 255
) -> float:
    """mIoU of the inverted prediction vs the label, both in the output (full-res) frame."""
    return mean_iou(confusion_counts(pred, target, num_classes, ignore_index=ignore_index))


def miou_warped_space(
    pred_warped: Array, labels_warped: Array, num_classes: int, *, ignore_index: int | None = 255
) -> float:
    """mIoU of P_hat vs Y_hat, both in the low-res deformed space (never mix with the above)."""
    return mean_iou(
        confusion_counts(pred_warped, labels_warped, num_classes, ignore_index=ignore_index)
    )


def intrinsic_iou(
    reconstructed: Array, labels: Array, num_classes: int, *, ignore_index: int | None = 255
) -> float:
    """Intrinsic upsampling mIoU(Y', Y): the label after sampling and inversion vs itself."""
    return mean_iou(confusion_counts(reconstructed, labels, num_classes, ignore_index=ignore_index))


def trimap_counts(
    pred: Array, target: Array, band_px: float, *, ignore_index: int | None = 255
) -> tuple[int, int]:
    """Correct and total pixels within ``band_px`` (Euclidean) of a label boundary.

    As in ``confusion_counts``, only the target decides what is scored: pixels labelled
    ``ignore_index`` are left out (and changes to them are no boundaries); a pixel
    predicted ``ignore_index`` counts as wrong.

    Shape: pred, target ``(H, W)`` -> ``(correct, total)``.
    """
    p, t = as_numpy(pred), as_numpy(target)
    edges = boundary_map(t, ignore_index=ignore_index)
    band = ndimage.distance_transform_edt(~edges) <= band_px if edges.any() else edges
    if ignore_index is not None:
        band &= t != ignore_index
    return int((p[band] == t[band]).sum()), int(band.sum())


def trimap_accuracy(
    pred: Array, target: Array, band_px: float, *, ignore_index: int | None = 255
) -> float:
    """Pixel accuracy within ``band_px`` of label boundaries (Kohli et al. 2009); NaN if none."""
    correct, total = trimap_counts(pred, target, band_px, ignore_index=ignore_index)
    return correct / total if total else float("nan")


def sampled_fraction(sampled_pixels: int, region_pixels: int) -> float:
    """Cost: ``h * w`` samples over the region's pixels at the source mpp."""
    if region_pixels <= 0:
        raise ValueError(f"region_pixels must be > 0, got {region_pixels}")
    return sampled_pixels / region_pixels
