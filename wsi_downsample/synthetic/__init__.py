"""Synthetic H&E-like slides with Gleason label masks, for tests, demos and benchmarks."""

from wsi_downsample.synthetic.budget_layout import (
    LESION_CLASSES,
    BudgetLayout,
    Lesion,
    make_budget_layout,
)
from wsi_downsample.synthetic.budget_render import render_budget_labels, render_budget_rgb
from wsi_downsample.synthetic.layout import CLASS_NAMES, Core, Layout, make_layout
from wsi_downsample.synthetic.render import render_labels, render_rgb
from wsi_downsample.synthetic.slide import (
    PRESETS,
    SyntheticSlide,
    split_for,
    write_synthetic_set,
    write_synthetic_slide,
)
from wsi_downsample.synthetic.svs import write_svs

__all__ = [
    "BudgetLayout",
    "CLASS_NAMES",
    "Core",
    "LESION_CLASSES",
    "Layout",
    "Lesion",
    "PRESETS",
    "SyntheticSlide",
    "make_budget_layout",
    "make_layout",
    "render_budget_labels",
    "render_budget_rgb",
    "render_labels",
    "render_rgb",
    "split_for",
    "write_svs",
    "write_synthetic_set",
    "write_synthetic_slide",
]
