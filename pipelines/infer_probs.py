"""`infer --probabilities`: per-class probabilities in the output frame (uint8 zarr).

Each output pixel's class probabilities are interpolated bilinearly in warped space from the
four samples around it (the same ``(lam, mu)`` the exact inverse solves for), per output tile.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["iter_probability_tiles", "write_probabilities"]


def iter_probability_tiles(
    probs: Any, grid: Any, frame: Any, tile_size: int = 512
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(row0, col0, values)`` per tile of an ``OutputFrame``, row-major; ``values`` are the
    interpolated class scores at the pixel centres (nearest sample for a 1-row/column grid).

    Shape: probs ``(C, h, w)``, grid ``(h, w, 2)`` level-0 -> values ``(C, th, tw)`` float32.
    """
    from scipy.spatial import cKDTree

    from wsi_downsample.deformation._quads import build_quads, first_guess, settle, tile_owner
    from wsi_downsample.deformation._tiles import as_numpy, output_nodes

    scores = as_numpy(probs).astype(np.float32)
    n, h, w = scores.shape
    flat = scores.reshape(n, -1)
    nodes = output_nodes(grid, frame.origin_xy, frame.downsample)
    quads = build_quads(nodes) if h > 1 and w > 1 else None
    tree = cKDTree(nodes.reshape(-1, 2)) if quads is None else None
    rows, cols = frame.shape_hw
    for r0 in range(0, rows, tile_size):
        for c0 in range(0, cols, tile_size):
            r1, c1 = min(rows, r0 + tile_size), min(cols, c0 + tile_size)
            rr, cc = np.divmod(np.arange((r1 - r0) * (c1 - c0)), c1 - c0)
            x = (cc + c0 + 0.5).astype(np.float32)
            y = (rr + r0 + 0.5).astype(np.float32)
            if quads is None:
                assert tree is not None
                values = flat[:, tree.query(np.stack([x, y], 1))[1]]
            else:
                owner = tile_owner(quads, (r0, r1, c0, c1))
                i, j = np.divmod(np.maximum(owner, 0), w - 1)
                lost = owner < 0
                if lost.any():
                    i[lost], j[lost] = first_guess(quads, x[lost], y[lost])
                i, j, lam, mu = settle(quads, x, y, i, j)
                n00 = i * w + j
                v00, v01 = flat[:, n00], flat[:, n00 + 1]
                v10, v11 = flat[:, n00 + w], flat[:, n00 + w + 1]
                top = v00 + lam * (v01 - v00)
                values = top + mu * (v10 + lam * (v11 - v10) - top)
            yield r0, c0, values.reshape(n, r1 - r0, c1 - c0)


def write_probabilities(
    path: str | Path,
    results: Sequence[Any],
    owner: Any,
    downsample: int,
    shape_hw: tuple[int, int],
    classes: Sequence[tuple[int, str, Sequence[int]]],
    mpp: float,
    tile_size: int = 512,
) -> None:
    """A zarr array ``(C, H, W)`` uint8 (probability x 255) in the slide frame at
    ``downsample``; each pixel from the region owning it, 0 in every class elsewhere."""
    import zarr

    from wsi_downsample.deformation import OutputFrame

    n = max(v for v, _, _ in classes) + 1
    array = zarr.create_array(
        store=str(path),
        shape=(n, *shape_hw),
        chunks=(1, tile_size, tile_size),
        dtype=np.uint8,
        fill_value=0,
        attributes={
            "classes": [{"value": v, "name": name, "color": list(c)} for v, name, c in classes],
            "downsample": downsample,
            "mpp": mpp * downsample,
            "frame": "slide level 0 at the downsample; pixel (r, c) covers level-0 "
            "[c D, (c + 1) D) x [r D, (r + 1) D)",
            "scale": "probability x 255, rounded",
        },
    )
    h, w = shape_hw
    for r in results:
        box = (r.region.x0, r.region.y0, r.region.x1, r.region.y1)
        frame = OutputFrame.for_region(box, downsample)
        tiles = iter_probability_tiles(r.prediction.probs, r.prediction.grid, frame, tile_size)
        for t_r0, t_c0, values in tiles:
            row0, col0 = frame.row0 + t_r0, frame.col0 + t_c0
            keep = owner.tile(row0, col0, values.shape[1:], downsample) == r.component
            rs = slice(max(0, row0), min(h, row0 + values.shape[1]))
            cs = slice(max(0, col0), min(w, col0 + values.shape[2]))
            if rs.start >= rs.stop or cs.start >= cs.stop or not keep.any():
                continue
            sub = (
                slice(None),
                slice(rs.start - row0, rs.stop - row0),
                slice(cs.start - col0, cs.stop - col0),
            )
            new = np.clip(np.rint(values[sub] * 255), 0, 255).astype(np.uint8)
            k = keep[sub[1:]]
            old = np.asarray(array[:, rs, cs])
            array[:, rs, cs] = np.where(k[None], new, old)
