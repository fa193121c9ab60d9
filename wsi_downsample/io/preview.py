"""A preview PNG: slide thumbnail, its sampling points, the coloured mask and a legend."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["colour_labels", "render_preview", "write_preview"]

_MAX_POINTS = 40_000  # drawn sampling points (evenly thinned above this)


def colour_labels(labels: np.ndarray, colours: dict[int, Sequence[int]]) -> np.ndarray:
    """RGB image of a label raster; values without a colour are black.

    Shape: ``(h, w)`` -> ``(h, w, 3)`` uint8.
    """
    lut = np.zeros((256, 3), np.uint8)
    for value, rgb in colours.items():
        lut[int(value)] = rgb
    return lut[labels]


def _overlay(rgb: np.ndarray, labels: np.ndarray, colours: dict[int, Sequence[int]], alpha: float):
    """The thumbnail with non-background labels blended in. Shape: ``(h, w, 3)`` uint8."""
    from PIL import Image

    lab = np.asarray(
        Image.fromarray(labels).resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.NEAREST)
    )
    colour = colour_labels(lab, colours).astype(np.float32)
    out = rgb.astype(np.float32)
    fg = (lab != 0) & (lab != 255)
    out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg]
    return out.round().astype(np.uint8)


def _points_panel(rgb: np.ndarray, points_xy: Sequence[np.ndarray], scale: float) -> np.ndarray:
    """The thumbnail with the sampling points (level-0 ``(n, 2)`` arrays) as dark dots."""
    out = rgb.copy()
    pts = np.concatenate(
        [np.asarray(p, np.float64).reshape(-1, 2) for p in points_xy] or [np.zeros((0, 2))]
    )
    if len(pts) > _MAX_POINTS:
        pts = pts[:: -(-len(pts) // _MAX_POINTS)]
    cols = np.clip((pts[:, 0] * scale).astype(np.int64), 0, out.shape[1] - 1)
    rows = np.clip((pts[:, 1] * scale).astype(np.int64), 0, out.shape[0] - 1)
    out[rows, cols] = (20, 20, 120)
    return out


def render_preview(
    thumbnail: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[tuple[int, str, Sequence[int]]],
    *,
    slide_size_wh: tuple[int, int],
    points_xy: Sequence[np.ndarray] = (),
    title: str = "",
    alpha: float = 0.5,
) -> np.ndarray:
    """Three panels (slide, sampling points, mask overlay) above a class legend.

    ``thumbnail``: the slide's RGB thumbnail; ``labels``: the mask at any size (resized by
    nearest); ``classes``: ``(value, name, colour)`` to show in the legend;
    ``points_xy``: sampling grids in level-0 pixels.

    Shape: thumbnail ``(h, w, 3)``, labels ``(h', w')`` -> ``(H, W, 3)`` uint8.
    """
    from PIL import Image, ImageDraw

    rgb = np.ascontiguousarray(thumbnail[..., :3]).astype(np.uint8)
    colours = {v: c for v, _, c in classes}
    scale = rgb.shape[1] / slide_size_wh[0]
    panels = [rgb, _points_panel(rgb, points_xy, scale), _overlay(rgb, labels, colours, alpha)]
    gap, h, w = 8, rgb.shape[0], rgb.shape[1]
    legend_h, head = 22 * (1 + (len(classes) - 1) // 4), 18 if title else 0
    canvas = Image.new("RGB", (3 * w + 4 * gap, h + legend_h + 2 * gap + head), "white")
    for k, panel in enumerate(panels):
        canvas.paste(Image.fromarray(panel), (gap + k * (w + gap), gap + head))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 4), title, fill=(0, 0, 0))
    y0 = h + 2 * gap + head
    for k, (_, name, colour) in enumerate(classes):
        x, y = gap + (k % 4) * 160, y0 + 22 * (k // 4)
        draw.rectangle(
            [x, y + 2, x + 14, y + 16], fill=tuple(int(c) for c in colour), outline=(0, 0, 0)
        )
        draw.text((x + 20, y + 3), name, fill=(0, 0, 0))
    return np.asarray(canvas)


def write_preview(path: str | os.PathLike[str], image: np.ndarray, **kw: Any) -> None:
    """Save a preview image as PNG at ``path`` (give the staging path of an output set)."""
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG", **kw)
