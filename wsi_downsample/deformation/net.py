"""Deformation network D_theta: a small CNN from the low-res view X_lr to a density d."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from wsi_downsample.errors import ConfigError

__all__ = ["ACTIVATIONS", "DeformationNet"]

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}


class DeformationNet(nn.Module):
    """Conv-BN-activation blocks, a 1x1 conv to one channel, softmax over all positions.

    The final 1x1 weight starts at zero and has no bias (a constant cancels in the softmax),
    so training starts from exactly the uniform density.

    Parameters
    ----------
    in_channels : int
        Channels of ``X_lr`` (3 for RGB).
    widths : sequence of int
        Output channels of each conv block: the paper's text uses ``(24, 24, 3)``, the
        authors' code ``(192, 192, 24)`` with ReLU6.
    kernel_size : int
        Size of the block convolutions (odd; "same" padding).
    activation : {"relu", "relu6"}
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (24, 24, 3),
        kernel_size: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {activation!r}; available: {', '.join(ACTIVATIONS)}"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm2d(width),
                ACTIVATIONS[activation](),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 1, kernel_size=1, bias=False)
        nn.init.zeros_(self.head.weight)

    def forward(self, x_lr: Tensor) -> Tensor:
        """Density ``d > 0`` summing to 1 over each image.

        Shape: ``(N, C, h_d, w_d)`` -> ``(N, 1, h_d, w_d)``.
        """
        logits = self.head(self.features(x_lr))
        n, _, h, w = logits.shape
        return torch.softmax(logits.reshape(n, -1), dim=1).reshape(n, 1, h, w)
