"""Label-map geometry shared by the edge targets and the metrics: class boundaries."""

from __future__ import annotations

import numpy as np

__all__ = ["boundary_map"]


def boundary_map(labels: np.ndarray, *, ignore_index: int | None = None) -> np.ndarray:
    """Pixels with a 4-neighbour of another class (both sides of every change), no frame.

    Depends only on label equality, so relabelling classes gives the same map. With
    ``ignore_index``, a change to or from that value is no boundary (unlabelled areas do not
    make their neighbours boundary pixels).

    Shape: ``(..., H, W)`` -> ``(..., H, W)`` bool.
    """
    edges = np.zeros(labels.shape, dtype=bool)
    dx = labels[..., :, 1:] != labels[..., :, :-1]
    dy = labels[..., 1:, :] != labels[..., :-1, :]
    if ignore_index is not None:
        known = labels != ignore_index
        dx &= known[..., :, 1:] & known[..., :, :-1]
        dy &= known[..., 1:, :] & known[..., :-1, :]
    edges[..., :, 1:] |= dx
    edges[..., :, :-1] |= dx
    edges[..., 1:, :] |= dy
    edges[..., :-1, :] |= dy
    return edges
