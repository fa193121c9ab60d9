"""Segmenters by name: a small registry with a helpful miss."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from torch import nn

from wsi_downsample.errors import ConfigError
from wsi_downsample.models.hrnet import HRNetSegmenter

__all__ = ["SEGMENTERS", "build_segmenter"]

SEGMENTERS: dict[str, Callable[..., nn.Module]] = {
    "hrnet_w18_small": partial(HRNetSegmenter, "hrnet_w18_small"),
    "hrnet_w18": partial(HRNetSegmenter, "hrnet_w18"),
    "hrnet_w48": partial(HRNetSegmenter, "hrnet_w48"),
}


def build_segmenter(
    name: str,
    num_classes: int,
    *,
    stem_stride: int = 4,
    weights: str | Path | None = None,
) -> nn.Module:
    """Build a segmenter by name, randomly initialised unless ``weights`` names a local file."""
    if name not in SEGMENTERS:
        raise ConfigError(
            f"unknown model {name!r}; available: {list(SEGMENTERS)}", hint={"arch": "hrnet_w18"}
        )
    return SEGMENTERS[name](num_classes, stem_stride=stem_stride, weights=weights)
