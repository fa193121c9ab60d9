"""Per-tile rendering of budget-preset slides: lesion labels and their class textures."""

from __future__ import annotations

import math

import numpy as np

from wsi_downsample._types import TileYXHW
from wsi_downsample.synthetic.budget_layout import BudgetLayout, Lesion
from wsi_downsample.synthetic.budget_texture import LESION_PERIOD, lesion_textures
from wsi_downsample.synthetic.render import TileLabels, _core_map, _glass, glass_and_stroma

__all__ = ["render_budget_labels", "render_budget_rgb", "lesion_inside"]


def lesion_inside(lesion: Lesion, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether level-0 points ``(x, y)`` (pixel centres at ``+0.5``) lie in ``lesion``.

    Shape: ``broadcast(x, y)`` bool.
    """
    c, s = math.cos(lesion.angle), math.sin(lesion.angle)
    dx, dy = x - lesion.cx, y - lesion.cy
    p = (dx * c + dy * s) / lesion.a
    q = (dy * c - dx * s) / lesion.b
    theta = np.arctan2(q, p)
    edge = np.ones_like(theta)
    for k, amp, phase in lesion.harmonics:
        edge += amp * np.cos(k * theta + phase)
    return np.hypot(p, q) <= edge


def _paint_lesions(labels: np.ndarray, near: list, layout: BudgetLayout, tile: TileYXHW) -> None:
    """Write the class of every lesion of the ``near`` cores into the tile's ``labels``."""
    y0, x0, h, w = tile
    for k, _ in near:
        for les in layout.lesions[k]:
            r = les.reach
            r0, r1 = max(y0, int(les.cy - r)), min(y0 + h, math.ceil(les.cy + r))
            c0, c1 = max(x0, int(les.cx - r)), min(x0 + w, math.ceil(les.cx + r))
            if r0 >= r1 or c0 >= c1:
                continue
            ys = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
            xs = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5
            window = labels[r0 - y0 : r1 - y0, c0 - x0 : c1 - x0]
            window[lesion_inside(les, xs, ys)] = les.cls


def render_budget_labels(layout: BudgetLayout, y0: int, x0: int, h: int, w: int) -> TileLabels:
    """Labels of the level-0 tile ``[y0, y0+h) x [x0, x0+w)`` of a budget-preset slide.

    Values: 0 glass and stroma (unlabelled), 1 benign, 2 Gleason 3, 3 Gleason 4,
    4 atrophy, 5 HGPIN: each lesion is a regional annotation, its whole blob one class.
    Every pixel depends only on its position, the layout and the seed.

    Shape: ``(h, w)`` arrays.
    """
    core, near = _core_map(layout, y0, x0, h, w)  # type: ignore[arg-type]
    labels = np.zeros((h, w), np.uint8)
    if near:
        _paint_lesions(labels, near, layout, (y0, x0, h, w))
        labels[core < 0] = 0
    empty = np.zeros(0, np.int64)
    ids = tuple(k for k, _ in near)
    return TileLabels(labels, core, (empty, empty), np.zeros(0, np.float32), np.zeros(0), ids)


def render_budget_rgb(
    layout: BudgetLayout, y0: int, x0: int, h: int, w: int
) -> tuple[np.ndarray, TileLabels]:
    """H&E-like RGB pixels of a level-0 tile of a budget-preset slide, and its labels.

    Glass; pink stroma with spindle nuclei inside cores; each lesion filled with its
    class's periodic gland texture (see ``lesion_textures``).

    Shape: ``(h, w, 3)`` uint8 and :class:`TileLabels` of ``(h, w)``.
    """
    lab = render_budget_labels(layout, y0, x0, h, w)
    packed = glass_and_stroma(layout.seed, layout.mpp, lab.core, y0, x0)
    if packed is None:
        return _glass(h, w), lab
    rows, cols = np.nonzero(lab.labels)
    if rows.size:
        lesions = lesion_textures(layout.seed, layout.mpp)
        ty, tx = (rows + y0) % LESION_PERIOD, (cols + x0) % LESION_PERIOD
        packed[rows, cols] = lesions[lab.labels[rows, cols], ty, tx]
    return np.ascontiguousarray(packed.view(np.uint8).reshape(h, w, 4)[..., :3]), lab
