"""Validation during training: full-resolution, warped-space and intrinsic IoU, clearly named.

Counts are summed over regions (and ranks) before any IoU is taken. Full-resolution scores
and IoU(Y', Y) use one output downsample for every slide and sampler: the source level's,
unless ``train.val_output_downsample`` sets another (stated in every metrics row).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from pipelines.config import IGNORE, Config
from pipelines.data import OpenSlides, RegionDataset
from pipelines.distributed import all_reduce_sum, rank, world_size

__all__ = ["validate", "source_downsample"]

log = logging.getLogger(__name__)

METRICS = ("full_resolution", "warped_space", "intrinsic")


def source_downsample(slide: Any, source_mpp: float) -> float:
    """Level-0 pixels per pixel of the slide's source level (the level closest to the mpp)."""
    from wsi_downsample.slides.pyramid import level_for_mpp, level_mpps

    mpps = level_mpps(float(np.mean(slide.mpp)), list(slide.level_downsamples))
    return float(slide.level_downsamples[level_for_mpp(mpps, source_mpp)])


def _frame_labels(label_sampler: Any, frame: Any) -> np.ndarray:
    """Labels at the centres of an output frame's pixels (nearest, fixed source level)."""
    h, w = frame.shape_hw
    ox, oy = frame.origin_xy
    xs = ox + (torch.arange(w, dtype=torch.float64) + 0.5) * frame.downsample
    ys = oy + (torch.arange(h, dtype=torch.float64) + 0.5) * frame.downsample
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    return label_sampler(grid).numpy()


def _region_counts(
    model: Any, dataset: RegionDataset, index: int, slides: OpenSlides, config: Config
) -> dict[str, np.ndarray] | None:
    from wsi_downsample.deformation import OutputFrame, invert_grid, invert_labels
    from wsi_downsample.metrics import confusion_counts
    from wsi_downsample.models import image_sampler

    c = config.num_classes
    entry = dataset[index]
    if "item" not in entry:  # a failing slide, skipped (``skip_errors``)
        return None
    record, item = dataset.records[index], entry["item"]
    image, labels = slides.samplers(record, dataset.luts, dataset.known)
    out = model([item], [image_sampler(image)], [labels])
    h, w = item.task_hw
    lab = out.labels[0, :h, :w].cpu()
    probs = torch.softmax(out.logits[0, :, :h, :w].float(), 0).cpu()
    grid = out.grid[0, :h, :w].detach().cpu()
    ds = config.train.val_output_downsample or source_downsample(image.slide, model.source_mpp)
    frame = OutputFrame.for_region(item.view.box, ds)
    kw: dict[str, Any] = {"origin_xy": frame.origin_xy, "downsample": ds}
    truth = _frame_labels(labels, frame)
    full = invert_grid(probs, grid, frame.shape_hw, **kw)
    recon = invert_labels(lab, grid, frame.shape_hw, num_classes=c, ignore_index=IGNORE, **kw)
    return {
        "warped_space": confusion_counts(probs.argmax(0), lab, c, ignore_index=IGNORE),
        "full_resolution": confusion_counts(full, truth, c, ignore_index=IGNORE),
        "intrinsic": confusion_counts(recon, truth, c, ignore_index=IGNORE),
        "downsample": np.array(ds),
    }


@torch.no_grad()
def validate(
    model: Any, dataset: RegionDataset, slides: OpenSlides, config: Config
) -> dict[str, Any]:
    """Scores of the current model over the validation regions (sharded over ranks).

    Keys: ``val_miou_full_resolution``, ``val_miou_warped_space``, ``val_intrinsic_iou``
    (IoU(Y', Y) of the current density), ``val_iou_full_<class>`` per class (empty when absent),
    ``val_output_downsample``, ``val_regions``.
    """
    from wsi_downsample.metrics import iou_from_counts, mean_iou

    was_training = model.training
    model.eval()
    c = config.num_classes
    totals = {k: np.zeros((c, c + 1), dtype=np.int64) for k in METRICS}  # metrics: (C, C + 1)
    downsamples: list[float] = []
    for index in range(rank(), len(dataset), world_size()):
        counts = _region_counts(model, dataset, index, slides, config)
        if counts is None:
            log.warning("validation skipped %s", dataset.records[index].slide_path)
            continue
        downsamples.append(float(counts.pop("downsample")))
        for k in METRICS:
            totals[k] += counts[k]
    model.train(was_training)
    totals = {k: all_reduce_sum(v) for k, v in totals.items()}
    row: dict[str, Any] = {
        "val_miou_full_resolution": mean_iou(totals["full_resolution"]),
        "val_miou_warped_space": mean_iou(totals["warped_space"]),
        "val_intrinsic_iou": mean_iou(totals["intrinsic"]),
    }
    names = config.class_names
    for i, iou in enumerate(iou_from_counts(totals["full_resolution"])):
        key = "val_iou_full_" + names.get(i, str(i)).replace(" ", "_")
        row[key] = "" if math.isnan(iou) else float(iou)
    unique = sorted(set(downsamples))
    row["val_output_downsample"] = unique[0] if len(unique) == 1 else ";".join(map(str, unique))
    row["val_regions"] = int(all_reduce_sum(float(len(downsamples))))
    return row
