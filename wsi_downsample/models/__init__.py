"""Models: HRNet segmenters by name and the composed downsample-then-segment model."""

from wsi_downsample.models.composed import (
    DownsampleSegmenter,
    ForwardOutput,
    RegionPrediction,
    image_sampler,
)
from wsi_downsample.models.hrnet import HRNetSegmenter
from wsi_downsample.models.regions import LabelSampler, PreparedRegion, prepare_region
from wsi_downsample.models.registry import SEGMENTERS, build_segmenter
from wsi_downsample.models.view import RegionView

__all__ = [
    "DownsampleSegmenter",
    "ForwardOutput",
    "HRNetSegmenter",
    "LabelSampler",
    "PreparedRegion",
    "RegionPrediction",
    "RegionView",
    "SEGMENTERS",
    "build_segmenter",
    "image_sampler",
    "prepare_region",
]
