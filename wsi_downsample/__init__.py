"""wsi_downsample: learned non-uniform downsampling for whole-slide image segmentation."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wsi_downsample._types import Region
from wsi_downsample.errors import WsiSegError

if TYPE_CHECKING:
    from wsi_downsample.deformation.inverse import invert_grid, invert_labels, iter_inverse_tiles
    from wsi_downsample.deformation.slide_sampler import SlideSampler
    from wsi_downsample.io.mask_tiff import write_label_tiff
    from wsi_downsample.metrics import confusion_counts, iou_from_counts, mean_iou
    from wsi_downsample.models.composed import DownsampleSegmenter
    from wsi_downsample.slides.masks import open_mask
    from wsi_downsample.slides.open import open_slide
    from wsi_downsample.slides.tissue import find_tissue_regions

__version__ = "0.1.0"

#: public name -> the module that defines it; imported on first use, so that
#: ``import wsi_downsample`` does not import torch (see docs/api.md)
_LAZY = {
    "DownsampleSegmenter": "wsi_downsample.models.composed",
    "SlideSampler": "wsi_downsample.deformation.slide_sampler",
    "confusion_counts": "wsi_downsample.metrics",
    "find_tissue_regions": "wsi_downsample.slides.tissue",
    "invert_grid": "wsi_downsample.deformation.inverse",
    "invert_labels": "wsi_downsample.deformation.inverse",
    "iou_from_counts": "wsi_downsample.metrics",
    "iter_inverse_tiles": "wsi_downsample.deformation.inverse",
    "mean_iou": "wsi_downsample.metrics",
    "open_mask": "wsi_downsample.slides.masks",
    "open_slide": "wsi_downsample.slides.open",
    "write_label_tiff": "wsi_downsample.io.mask_tiff",
}

__all__ = [
    "DownsampleSegmenter",
    "Region",
    "SlideSampler",
    "WsiSegError",
    "confusion_counts",
    "find_tissue_regions",
    "invert_grid",
    "invert_labels",
    "iou_from_counts",
    "iter_inverse_tiles",
    "mean_iou",
    "open_mask",
    "open_slide",
    "write_label_tiff",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wsi_downsample' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
