"""Slides and label masks behind one protocol: readers, level arithmetic, tissue, zarr cache."""

from wsi_downsample.slides.base import LazyLevel, LevelInfo, SlideReader
from wsi_downsample.slides.masks import MaskReader, open_mask
from wsi_downsample.slides.open import (
    BACKENDS,
    check_decodable,
    choose_backend,
    describe_slide,
    open_slide,
    require_mpp,
)
from wsi_downsample.slides.pyramid import (
    best_level_for_downsample,
    level0_to_level,
    level_box,
    level_for_mpp,
    level_just_finer,
    level_mpps,
    level_to_level0,
)
from wsi_downsample.slides.tissue import detect_tissue, find_tissue_regions, tissue_mask
from wsi_downsample.slides.zarr_cache import open_level_cache, stream_to_zarr

__all__ = [
    "BACKENDS",
    "LazyLevel",
    "LevelInfo",
    "MaskReader",
    "SlideReader",
    "best_level_for_downsample",
    "check_decodable",
    "choose_backend",
    "describe_slide",
    "detect_tissue",
    "find_tissue_regions",
    "level0_to_level",
    "level_box",
    "level_for_mpp",
    "level_just_finer",
    "level_mpps",
    "level_to_level0",
    "open_level_cache",
    "open_mask",
    "open_slide",
    "require_mpp",
    "stream_to_zarr",
    "tissue_mask",
]
