"""QuPath annotations (GeoJSON) from a label raster, polygonised block by block."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["block_polygons", "label_features", "feature_collection"]


def _rings_to_polygons(rings: list[np.ndarray]) -> list[Any]:
    """Counter-clockwise rings are shells, clockwise ones holes of the smallest shell
    holding them (x, y coordinates, y down). Islands inside holes are shells of their own."""
    import shapely

    shells: list[tuple[float, np.ndarray]] = []
    holes: list[tuple[float, np.ndarray]] = []
    for ring in rings:
        if len(ring) < 4:
            continue
        area = shapely.area(shapely.Polygon(ring))
        signed = 0.5 * float(np.dot(ring[:-1, 0], ring[1:, 1]) - np.dot(ring[1:, 0], ring[:-1, 1]))
        if area <= 0:
            continue
        (shells if signed > 0 else holes).append((area, ring))
    shells.sort(key=lambda s: s[0])
    polys = [shapely.Polygon(ring) for _, ring in shells]
    inner: list[list[np.ndarray]] = [[] for _ in shells]
    if polys:
        tree = shapely.STRtree(polys)
        for _, ring in holes:
            point = shapely.Point(ring[0])
            hits = sorted(tree.query(shapely.Polygon(ring).representative_point()))
            for k in hits:  # smallest first (shells sorted by area)
                if polys[k].covers(point):
                    inner[k].append(ring)
                    break
    return [shapely.Polygon(ring, inner[k]) for k, (_, ring) in enumerate(shells)]


def _pixel_edges(midpoints: np.ndarray) -> np.ndarray:
    """Marching-squares points (midpoints of pixel edges) -> the pixel corners between them.

    Consecutive points lie in one marching-squares cell, whose centre is the pixel corner
    they share: per axis, the integer coordinate of either point, else their mean. The
    result runs exactly along pixel edges (closed, orientation kept).

    Shape: ``(n + 1, 2)`` closed ring -> ``(n + 1, 2)`` closed ring.
    """
    a = midpoints[:-1]
    b = np.roll(a, -1, axis=0)
    a_int = np.abs(a - np.round(a)) < 1e-6
    b_int = np.abs(b - np.round(b)) < 1e-6
    corners = np.where(a_int, a, np.where(b_int, b, (a + b) / 2))
    return np.round(np.concatenate([corners, corners[:1]]))


def block_polygons(block: np.ndarray, value: int) -> list[Any]:
    """Polygons of the pixels of ``block`` equal to ``value``, in block pixel coordinates
    (pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``), along pixel edges, holes kept.

    Shape: ``(h, w)`` labels.
    """
    from skimage.measure import find_contours

    binary = np.pad(block == value, 1).astype(np.uint8)
    if not binary.any():
        return []
    contours = find_contours(binary, 0.5, positive_orientation="high")
    # (row, col) in padded indices -> (x, y) continuous: pixel centre of index k is k - 0.5
    rings = [np.ascontiguousarray(c[:, ::-1] - 0.5) for c in contours]
    rings = [_pixel_edges(r) for r in rings if np.allclose(r[0], r[-1]) and len(r) > 2]
    # find_contours gives "high on the left" with (row, col); swapping to (x, y) mirrors it
    return _rings_to_polygons([r[::-1] for r in rings])


def _valid_parts(geom: Any) -> list[Any]:
    """Polygons of a geometry after ``make_valid`` (lines and points dropped)."""
    import shapely

    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if geom.geom_type == "Polygon":
        return [geom] if not geom.is_empty else []
    if hasattr(geom, "geoms"):
        return [p for g in geom.geoms for p in _valid_parts(g)]
    return []


def label_features(
    blocks: Iterable[tuple[int, int, np.ndarray]],
    classes: Sequence[tuple[int, str, Sequence[int]]],
    *,
    downsample: float,
    offset_xy: tuple[float, float] = (0.0, 0.0),
    mpp: float | None = None,
    min_area_px: float = 4.0,
    simplify_px: float = 0.75,
) -> Iterator[dict[str, Any]]:
    """GeoJSON features (QuPath annotations), one per connected region of each class.

    ``blocks`` are ``(row0, col0, labels)`` of a raster in the slide frame at ``downsample``
    (e.g. ``LabelCanvas.iter_blocks(block, overlap=1)``); each class's block polygons are
    unioned, repaired (``make_valid``), simplified to ``simplify_px`` raster pixels and parts
    below ``min_area_px`` raster pixels dropped. Coordinates are level-0 pixels minus
    ``offset_xy`` (OpenSlide's ``bounds-x/y``: QuPath shows such slides cropped).

    Parameters
    ----------
    classes : sequence of (value, name, (r, g, b))
        The classes to export (leave background and ignore out).
    mpp : float, optional
        Level-0 um per pixel: adds ``Area um^2`` to each feature's measurements.
    """
    import shapely
    from shapely import affinity

    pieces: dict[int, list[Any]] = {value: [] for value, _, _ in classes}
    for row0, col0, data in blocks:
        present = set(np.unique(data).tolist())
        for value in pieces:
            if value in present:
                for poly in block_polygons(data, value):
                    pieces[value].append(affinity.translate(poly, col0, row0))
    for value, name, color in classes:
        if not pieces[value]:
            continue
        merged = shapely.union_all(pieces[value])
        pieces[value] = []
        parts: list[Any] = []
        for part in _valid_parts(merged):
            part = part.simplify(simplify_px, preserve_topology=True)
            parts.extend(
                _fill_small_holes(p, min_area_px)
                for p in _valid_parts(part)
                if p.area >= min_area_px
            )
        for part in sorted(parts, key=lambda p: (p.bounds[1], p.bounds[0])):
            level0 = affinity.affine_transform(
                part, [downsample, 0, 0, downsample, -offset_xy[0], -offset_xy[1]]
            )
            yield _feature(level0, name, color, mpp)


def _fill_small_holes(poly: Any, min_area: float) -> Any:
    """The polygon without holes smaller than ``min_area`` (specks of another class)."""
    import shapely

    keep = [r for r in poly.interiors if shapely.Polygon(r).area >= min_area]
    return poly if len(keep) == len(poly.interiors) else shapely.Polygon(poly.exterior, keep)


def _feature(geom: Any, name: str, color: Sequence[int], mpp: float | None) -> dict[str, Any]:
    import shapely

    area_px = float(geom.area)
    measurements = {"Area px^2": round(area_px, 1)}
    if mpp is not None:
        measurements["Area um^2"] = round(area_px * mpp * mpp, 1)
    return {
        "type": "Feature",
        "geometry": shapely.geometry.mapping(shapely.set_precision(geom, 0.01)),
        "properties": {
            "objectType": "annotation",
            "classification": {"name": name, "color": [int(c) for c in color]},
            "isLocked": True,
            "measurements": measurements,
        },
    }


def feature_collection(features: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (QuPath: File > Import objects, or drag onto the slide)."""
    return {"type": "FeatureCollection", "features": list(features)}
