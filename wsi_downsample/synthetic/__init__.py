"""Synthetic H&E-like slides with Gleason label masks, for tests, demos and benchmarks."""

from wsi_downsample.synthetic.layout import CLASS_NAMES, Core, Layout, make_layout
from wsi_downsample.synthetic.render import render_labels, render_rgb
from wsi_downsample.synthetic.slide import (
    SyntheticSlide,
    split_for,
    write_synthetic_set,
    write_synthetic_slide,
)
from wsi_downsample.synthetic.svs import write_svs

__all__ = [
    "CLASS_NAMES",
    "Core",
    "Layout",
    "SyntheticSlide",
    "make_layout",
    "render_labels",
    "render_rgb",
    "split_for",
    "write_svs",
    "write_synthetic_set",
    "write_synthetic_slide",
]
