"""Models: HRNet segmenters by name and the composed downsample-then-segment model."""

from wsi_downsample.models.composed import (
    DownsampleSegmenter,
    ForwardOutput,
    RegionPrediction,
    image_sampler,
)
from wsi_downsample.models.hrnet import HRNetSegmenter
from wsi_downsample.models.regions import (
    LabelSampler,
    PreparedRegion,
    boundary_level,
    prepare_region,
    read_boundaries,
)
from wsi_downsample.models.registry import SEGMENTERS, build_segmenter
from wsi_downsample.models.view import RegionView

__all__ = [
    "SEGMENTERS",
    "build_segmenter",
    "HRNetSegmenter",
    "DownsampleSegmenter",
    "ForwardOutput",
    "RegionPrediction",
    "image_sampler",
    "LabelSampler",
    "PreparedRegion",
    "prepare_region",
    "boundary_level",
    "read_boundaries",
    "RegionView",
]
