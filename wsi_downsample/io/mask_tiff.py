"""Streamed, atomic writer of tiled pyramidal OME-TIFF label masks (SubIFD pyramid)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from wsi_downsample._arrays import as_pair
from wsi_downsample.io._pyramid import (
    PyramidCascade,
    feed_level0,
    iter_tiles,
    level_shapes,
    reduce_mode2,
    reduce_nearest2,
)
from wsi_downsample.io.atomic import atomic_path

__all__ = ["LabelTiffResult", "TileReader", "write_label_tiff", "atomic_path", "count_levels"]

TileReader = Callable[[int, int, int, int], np.ndarray]
"""``read_tile(y0, x0, h, w) -> (h, w) uint8``: level-0 label pixels of one tile."""

_COMPRESSION = {"deflate": "zlib", "zlib": "zlib", "lzw": "lzw"}
_CLASSIC_LIMIT = 2**31  # estimated bytes above which BigTIFF is used
_BUFFERSIZE = 16 * 2**20
_DISABLE = {True: False, False: True, None: None}  # progress -> tqdm's disable


@dataclass(frozen=True)
class LabelTiffResult:
    """What :func:`write_label_tiff` wrote: the file and the ``(h, w)`` of every level."""

    path: Path
    level_shapes: tuple[tuple[int, int], ...]
    mpp: tuple[float, float]
    bigtiff: bool


def count_levels(
    shape_hw: tuple[int, int], tile_size: int, min_level_size: int, factor: int = 2
) -> int:
    """Number of levels, level 0 included: divide by ``factor`` until a level fits in one
    tile, never making a level whose shorter side is below ``min_level_size``."""
    n = 1
    h, w = shape_hw
    while max(h, w) > tile_size:
        h, w = -(-h // factor), -(-w // factor)
        if min(h, w) < min_level_size:
            break
        n += 1
    return n


def _as_reader(source: TileReader | Any, shape_hw: tuple[int, int]) -> TileReader:
    """Wrap a 2-D numpy/zarr array as a tile reader; pass functions through."""
    if callable(source):
        return source
    if tuple(source.shape) != tuple(shape_hw):
        raise ValueError(f"label array has shape {tuple(source.shape)}, expected {shape_hw}")

    def read(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        return np.asarray(source[y0 : y0 + h, x0 : x0 + w])

    return read


def _ome_metadata(mpp: tuple[float, float], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "axes": "YX",
        "PhysicalSizeX": mpp[0],
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": mpp[1],
        "PhysicalSizeYUnit": "µm",
    }
    meta.update(extra or {})
    return meta


def _use_bigtiff(bigtiff: bool | Literal["auto"], shapes: list[tuple[int, int]]) -> bool:
    if bigtiff == "auto":
        return sum(h * w for h, w in shapes) > _CLASSIC_LIMIT
    return bool(bigtiff)


def write_label_tiff(
    path: str | os.PathLike[str],
    shape_hw: tuple[int, int],
    read_tile: TileReader | Any,
    *,
    mpp: float | tuple[float, float],
    tile_size: int = 512,
    compression: Literal["deflate", "lzw"] = "deflate",
    pyramid: Literal["nearest", "mode"] = "nearest",
    min_level_size: int = 32,
    bigtiff: bool | Literal["auto"] = "auto",
    metadata: Mapping[str, Any] | None = None,
    progress: bool | None = False,
    maxworkers: int = 2,
) -> LabelTiffResult:
    """Write a uint8 label mask as a tiled pyramidal OME-TIFF, streaming tiles.

    Level 0 is read once, tile by tile; lower levels halve each side (``ceil``) until a
    level fits in one tile (or its shorter side would drop below ``min_level_size``) and
    go to SubIFDs. ``pyramid="nearest"``: level-k pixel ``(i, j)`` is the level-0 pixel
    containing its centre, ``(2**k i + 2**(k-1), 2**k j + 2**(k-1))``;
    ``"mode"``: the most frequent value of each 2x2 block of level k-1, ties to the larger
    value. Pixel size goes to OME ``PhysicalSizeX/Y`` (µm) and to the TIFF
    X/YResolution tags (``1e4 / mpp`` per centimetre) of every level. Every tile is
    written. The file appears atomically: a temporary sibling is renamed at the end and
    removed on error. Peak memory is about ``tile_size x width`` bytes plus a few tiles.

    Parameters
    ----------
    path : path-like
        Output file, e.g. ``slide.mask.ome.tif``.
    shape_hw : tuple of int
        Level-0 ``(height, width)``.
    read_tile : callable or array
        ``read_tile(y0, x0, h, w) -> (h, w) uint8`` or a 2-D numpy/zarr array.
    mpp : float or (float, float)
        Level-0 micrometres per pixel (x, y).
    tile_size : int
        Tile side, a multiple of 16.
    compression : {"deflate", "lzw"}
        Lossless codec (never JPEG).
    pyramid : {"nearest", "mode"}
        How lower levels are made.
    min_level_size : int
        No level with a shorter side below this is made.
    bigtiff : bool or "auto"
        ``"auto"``: BigTIFF when all levels hold more than 2 GiB uncompressed.
    metadata : mapping, optional
        Extra OME metadata for tifffile (e.g. ``{"MapAnnotation": {...}, "Name": ...}``).
    progress : bool or None
        Show a tqdm bar over level-0 tiles (None: only when writing to a terminal).
    maxworkers : int
        Compression threads.

    Returns
    -------
    LabelTiffResult
    """
    path = Path(path)
    shape_hw = (int(shape_hw[0]), int(shape_hw[1]))
    mpp_xy = as_pair(mpp, "mpp")
    _check_args(shape_hw, tile_size, compression, pyramid, mpp_xy)
    n_levels = count_levels(shape_hw, tile_size, min_level_size)
    shapes = level_shapes(shape_hw, 2, n_levels)
    big = _use_bigtiff(bigtiff, shapes)
    reduce = reduce_nearest2 if pyramid == "nearest" else reduce_mode2
    read = _as_reader(read_tile, shape_hw)
    with (
        atomic_path(path) as tmp,
        PyramidCascade(shape_hw, n_levels - 1, 2, reduce, tile_size, np.uint8, path.parent) as cas,
    ):
        _write(
            tmp,
            read,
            cas,
            shapes,
            mpp_xy,
            tile_size,
            compression,
            big,
            metadata,
            progress,
            maxworkers,
        )
    return LabelTiffResult(path, tuple(shapes), mpp_xy, big)


def _check_args(
    shape_hw: tuple[int, int], tile: int, compression: str, pyramid: str, mpp: tuple[float, ...]
) -> None:
    if min(shape_hw) < 1:
        raise ValueError(f"mask shape must be positive, got {shape_hw}")
    if tile < 16 or tile % 16:
        raise ValueError(f"tile_size must be a positive multiple of 16 (TIFF), got {tile}")
    if compression not in _COMPRESSION:
        raise ValueError(f"compression {compression!r} not supported; use 'deflate' or 'lzw'")
    if pyramid not in ("nearest", "mode"):
        raise ValueError(f"pyramid {pyramid!r} not supported; use 'nearest' or 'mode'")
    if len(mpp) != 2 or min(mpp) <= 0:
        raise ValueError(f"mpp must be positive, got {mpp}")


def _write(
    tmp: Path,
    read: TileReader,
    cascade: PyramidCascade,
    shapes: list[tuple[int, int]],
    mpp: tuple[float, float],
    tile: int,
    compression: str,
    bigtiff: bool,
    metadata: Mapping[str, Any] | None,
    progress: bool | None,
    maxworkers: int,
) -> None:
    import tifffile
    from tqdm.auto import tqdm

    n_tiles = -(-shapes[0][0] // tile) * -(-shapes[0][1] // tile)
    options: dict[str, Any] = {
        "tile": (tile, tile),
        "dtype": np.uint8,
        "photometric": "minisblack",
        "compression": _COMPRESSION[compression],
        "resolutionunit": "CENTIMETER",
        "maxworkers": maxworkers,
        "buffersize": _BUFFERSIZE,
    }
    with (
        tifffile.TiffWriter(tmp, bigtiff=bigtiff, ome=True) as tif,
        tqdm(
            total=n_tiles, disable=_DISABLE[progress], desc=f"mask {tmp.name}", unit="tile"
        ) as bar,
    ):
        tif.write(
            feed_level0(read, shapes[0], tile, cascade, bar),
            shape=shapes[0],
            subifds=len(shapes) - 1,
            resolution=(1e4 / mpp[0], 1e4 / mpp[1]),
            metadata=_ome_metadata(mpp, metadata),
            **options,
        )
        for k in range(1, len(shapes)):
            ds = 2**k
            tif.write(
                iter_tiles(cascade.level(k), tile),
                shape=shapes[k],
                subfiletype=1,
                resolution=(1e4 / (mpp[0] * ds), 1e4 / (mpp[1] * ds)),
                **options,
            )
