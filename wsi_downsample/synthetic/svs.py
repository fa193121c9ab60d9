"""Streamed writer of Aperio-style SVS files (tiled RGB pyramid, thumbnail, label, macro)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from wsi_downsample.io._pyramid import (
    PyramidCascade,
    feed_level0,
    iter_tiles,
    level_shapes,
    make_reduce_mean,
)
from wsi_downsample.io.mask_tiff import atomic_path, count_levels

__all__ = ["write_svs", "aperio_description", "RgbTileReader"]

RgbTileReader = Callable[[int, int, int, int], np.ndarray]
"""``read_tile(y0, x0, h, w) -> (h, w, 3) uint8``: level-0 RGB pixels of one tile."""

_APERIO = "Aperio Image Library v12.0.15"
_FACTOR = 4  # downsample between consecutive levels, as Aperio scanners write
_BUFFERSIZE = 16 * 2**20
_THUMB_MAX = 1024
_CODEC = {"jpeg": ("jpeg", "JPEG/RGB Q={q}"), "zlib": ("zlib", "ZLIB/RGB")}


def aperio_description(
    shape_hw: tuple[int, int],
    tile: int,
    mpp: float,
    codec: str = "JPEG/RGB Q=80",
    level_hw: tuple[int, int] | None = None,
    app_mag: int = 20,
) -> str:
    """The ImageDescription of an Aperio level (``level_hw``: size of a reduced level)."""
    h, w = shape_hw
    size = f"{w}x{h} [0,0 {w}x{h}] ({tile}x{tile})"
    if level_hw is not None:
        size += f" -> {level_hw[1]}x{level_hw[0]}"
    return f"{_APERIO} \n{size} {codec}|AppMag = {app_mag}|MPP = {mpp:g}"


def _level0_tiles(
    read: RgbTileReader, shape_hw: tuple[int, int], tile: int, cascade: PyramidCascade, bar: Any
) -> Iterator[np.ndarray]:
    """Level-0 tiles in row-major order, fed to the cascade; edges padded by replication."""
    for data in feed_level0(read, shape_hw, tile, cascade, bar, channels=3):
        th, tw = data.shape[:2]
        if (th, tw) != (tile, tile):  # avoid black JPEG padding bleeding into edges
            data = np.pad(data, ((0, tile - th), (0, tile - tw), (0, 0)), mode="edge")
        yield data


def _thumbnail(cascade: PyramidCascade, shapes: list[tuple[int, int]]) -> np.ndarray:
    """A thumbnail (longer side <= 1024) from the coarsest level at least that large."""
    from PIL import Image

    target = min(_THUMB_MAX, max(shapes[1])) if len(shapes) > 1 else _THUMB_MAX
    k = max([i for i in range(1, len(shapes)) if max(shapes[i]) >= target], default=1)
    if len(shapes) == 1:
        raise ValueError("a thumbnail needs at least one reduced level")
    img = Image.fromarray(np.asarray(cascade.level(k)[:]))
    img.thumbnail((target, target), Image.Resampling.BOX)
    return np.asarray(img.convert("RGB"))


def _write_pages(
    tif: Any,
    level0: Iterator[np.ndarray],
    cascade: PyramidCascade,
    shapes: list[tuple[int, int]],
    tile: int,
    mpp: float,
    compression: str,
    quality: int,
    label: np.ndarray,
    macro: np.ndarray,
) -> None:
    codec, text = _CODEC[compression]
    text = text.format(q=quality)
    args = {"level": quality} if codec == "jpeg" else None
    options: dict[str, Any] = {
        "photometric": "rgb",
        "compression": codec,
        "compressionargs": args,
        "resolutionunit": "CENTIMETER",
        "metadata": None,
    }
    tiled = {
        **options,
        "tile": (tile, tile),
        "dtype": np.uint8,
        "maxworkers": 2,
        "buffersize": _BUFFERSIZE,
    }
    res = 1e4 / mpp
    desc0 = aperio_description(shapes[0], tile, mpp, text)
    tif.write(level0, shape=(*shapes[0], 3), description=desc0, resolution=(res, res), **tiled)
    thumb = _thumbnail(cascade, shapes)
    desc = aperio_description(shapes[0], tile, mpp, text, level_hw=thumb.shape[:2])
    tif.write(thumb, description=desc, rowsperstrip=16, **options)
    for k in range(1, len(shapes)):
        ds = _FACTOR**k
        desc = aperio_description(shapes[0], tile, mpp, text, level_hw=shapes[k])
        tif.write(
            iter_tiles(cascade.level(k), tile),
            shape=(*shapes[k], 3),
            description=desc,
            resolution=(res / ds, res / ds),
            subfiletype=0,
            **tiled,
        )
    lh, lw = label.shape[:2]
    tif.write(
        label,
        description=f"{_APERIO}\nlabel {lw}x{lh}",
        subfiletype=1,
        **{**options, "compression": "lzw", "compressionargs": None},
    )
    mh, mw = macro.shape[:2]
    tif.write(macro, description=f"{_APERIO}\nmacro {mw}x{mh}", subfiletype=9, **options)


def write_svs(
    path: str | os.PathLike[str],
    shape_hw: tuple[int, int],
    read_tile: RgbTileReader,
    *,
    mpp: float,
    tile_size: int = 256,
    compression: Literal["jpeg", "zlib"] = "jpeg",
    quality: int = 80,
    label: np.ndarray | None = None,
    macro: np.ndarray | None = None,
    min_level_size: int = 64,
    progress: bool | None = False,
) -> list[tuple[int, int]]:
    """Write an Aperio-style SVS from a level-0 RGB tile reader; return the level shapes.

    Layout (what OpenSlide and tiffslide both read): IFD0 level 0 (tiled, Aperio
    description with ``MPP`` and ``AppMag``, X/YResolution = 1e4/mpp per cm); IFD1 a
    stripped thumbnail; IFD2.. levels downsampled by 4, 16, 64, ... (area-averaged from
    the streamed tiles) until a level fits in one tile or its shorter side would drop
    below ``min_level_size``; then the label (NewSubfileType 1) and macro (9) images.
    Written to a temporary sibling and renamed at the end (removed on error). Memory is
    bounded by about ``tile_size x width`` pixels, whatever the height.

    Shape: ``read_tile(y0, x0, h, w)`` returns ``(h, w, 3)`` uint8.
    """
    import tifffile
    from tqdm.auto import tqdm

    path = Path(path)
    if tile_size % 16 or tile_size < 16:
        raise ValueError(f"tile_size must be a positive multiple of 16, got {tile_size}")
    if compression not in _CODEC:
        raise ValueError(f"compression {compression!r} not supported; use 'jpeg' or 'zlib'")
    n = max(2, count_levels(shape_hw, tile_size, min_level_size, _FACTOR))
    shapes = level_shapes(shape_hw, _FACTOR, n)
    label = label if label is not None else np.full((64, 64, 3), 255, np.uint8)
    macro = macro if macro is not None else np.full((64, 128, 3), 255, np.uint8)
    big = 3 * sum(h * w for h, w in shapes) > 2**31 * (8 if compression == "jpeg" else 2)
    n_tiles = -(-shape_hw[0] // tile_size) * -(-shape_hw[1] // tile_size)
    mean4 = make_reduce_mean(_FACTOR)
    disable = {True: False, False: True, None: None}[progress]
    with (
        atomic_path(path) as tmp,
        PyramidCascade(
            (*shape_hw, 3), n - 1, _FACTOR, mean4, tile_size, np.uint8, path.parent
        ) as cascade,
        tifffile.TiffWriter(tmp, bigtiff=big, ome=False) as tif,
        tqdm(total=n_tiles, disable=disable, desc=f"slide {path.name}", unit="tile") as bar,
    ):
        level0 = _level0_tiles(read_tile, shape_hw, tile_size, cascade, bar)
        _write_pages(
            tif, level0, cascade, shapes, tile_size, mpp, compression, quality, label, macro
        )
    return shapes
