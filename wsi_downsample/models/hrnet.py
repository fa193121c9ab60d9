"""HRNetV2 segmenter on timm's HRNet backbones (docs/method.md, piece 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsi_downsample.errors import ConfigError

__all__ = ["STEM_STRIDES", "HRNetSegmenter", "load_backbone_weights"]

STEM_STRIDES = (1, 4)
_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, so local timm weights files fit
_STD = (0.229, 0.224, 0.225)


class HRNetSegmenter(nn.Module):
    """HRNetV2: all four branches upsampled to the highest, concatenated, conv3x3-BN-ReLU, 1x1.

    Parameters
    ----------
    arch : str
        A timm HRNet name (``hrnet_w18_small``, ``hrnet_w18``, ``hrnet_w48``).
    num_classes : int
    stem_stride : {1, 4}
        4: timm's stem (branch 1 at 1/4, inputs padded to multiples of 32, logits upsampled);
        1: the paper's variant, both stem convolutions at stride 1 (branch 1 at the task
        resolution, inputs padded to multiples of 8).
    weights : path, optional
        A local ``state_dict`` file (of this segmenter or of a timm HRNet backbone).

    Inputs are RGB in [0, 1]; any size (padded inside, logits cropped back).
    """

    def __init__(
        self,
        arch: str = "hrnet_w18_small",
        num_classes: int = 6,
        *,
        stem_stride: int = 4,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        import timm

        if stem_stride not in STEM_STRIDES:
            raise ConfigError(f"stem stride must be 1 or 4, got {stem_stride}")
        backbone: Any = timm.create_model(
            arch,
            pretrained=False,
            features_only=True,
            feature_location="",
            out_indices=(1, 2, 3, 4),  # the four branches (0 is the stride-2 stem)
        )
        if stem_stride == 1:  # the paper's variant: branch 1 at the task resolution
            backbone.conv1.stride = backbone.conv2.stride = (1, 1)
        self.backbone = backbone
        channels = int(sum(backbone.feature_info.channels()))
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_classes, 1),
        )
        self.arch, self.num_classes, self.stem_stride = arch, num_classes, stem_stride
        self.multiple = 32 if stem_stride == 4 else 8
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        if weights is not None:
            load_backbone_weights(self, weights)

    def forward(self, image: Tensor) -> Tensor:
        """Class logits at the input's size.

        Shape: ``(N, 3, H, W)`` -> ``(N, C, H, W)``.
        """
        h, w = image.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        x = F.pad((image - self.mean) / self.std, (0, pad_w, 0, pad_h))
        feats = self.backbone(x)
        size = feats[0].shape[-2:]
        ups = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
        logits = self.head(torch.cat([feats[0], *ups], dim=1))
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


def load_backbone_weights(model: HRNetSegmenter, path: str | Path) -> int:
    """Load a local weights file into the segmenter (its own keys) or its backbone (timm keys).

    Returns the number of tensors loaded; raises ``ConfigError`` when none match.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file not found: {path}; give a local .pt/.pth state dict")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = model.state_dict()
    whole = any(k in own for k in state)  # our own checkpoint, else timm backbone keys
    target: nn.Module = model if whole else model.backbone
    prefix = "" if whole else "backbone."
    shapes = {k: v.shape for k, v in target.state_dict().items()}
    usable = {k: v for k, v in state.items() if k in shapes and shapes[k] == v.shape}
    if not usable:
        raise ConfigError(
            f"{path}: no tensor matches the {model.arch} segmenter or its backbone "
            f"(e.g. {prefix}{next(iter(shapes))}); give weights of the same architecture"
        )
    target.load_state_dict(usable, strict=False)
    return len(usable)
