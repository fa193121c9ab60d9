"""Exact native-tile access to TIFF pages (compressed bytes, one-tile decode) and TIFF metadata."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsi_downsample._types import Mpp
from wsi_downsample.errors import NotASlideError, UnsupportedCompressionError
from wsi_downsample.slides._checks import corrupt_error

__all__ = [
    "TiffTiles",
    "is_tiff",
    "open_tiff",
    "check_data_inside",
    "check_compression",
    "page_mpp",
]

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def is_tiff(path: str | Path) -> bool:
    """Whether the file starts with a (Big)TIFF header."""
    with open(path, "rb") as fh:
        return fh.read(4) in _TIFF_MAGICS


def open_tiff(path: str | Path, *, complete: bool = False) -> Any:
    """Open a TIFF with tifffile and check that its first page can be read.

    Any failure of a file that starts like a TIFF (a header or directory cut off, an
    offset past the end) is a CorruptSlideError; a file that is no TIFF at all is a
    NotASlideError. With ``complete``, every page's image data must also lie inside the
    file. Returns an open ``tifffile.TiffFile`` (close it).
    """
    import tifffile

    try:
        tf = tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001 - truncated headers raise struct/Index/TiffFile errors
        if is_tiff(path):
            raise corrupt_error(path, "its TIFF structure cannot be read", exc) from exc
        raise NotASlideError(f"{path}: not a TIFF file ({exc}); give a TIFF-based slide") from exc
    try:
        tf.pages.first  # noqa: B018 - IndexError when the first directory lies past the end
    except Exception as exc:  # noqa: BLE001
        tf.close()
        raise corrupt_error(path, "its first TIFF directory cannot be read", exc) from exc
    if complete:
        try:
            check_data_inside(path, list(tf.pages))
        except BaseException:
            tf.close()
            raise
    return tf


def check_data_inside(path: str | Path, pages: Sequence[Any], unit: str = "page") -> None:
    """CorruptSlideError when a page's image data runs past the end of the file (truncated)."""
    size = os.path.getsize(path)
    for index, page in enumerate(pages):
        offsets, counts = getattr(page, "dataoffsets", ()), getattr(page, "databytecounts", ())
        end = max((int(o) + int(n) for o, n in zip(offsets, counts, strict=True)), default=0)
        if end > size:
            what = f"{unit} {index}'s image data ends at byte {end} but the file has {size} bytes"
            raise corrupt_error(path, what)


def check_compression(page: Any, path: str | Path) -> None:
    """Raise UnsupportedCompressionError when no installed codec decodes ``page``."""
    from tifffile import TIFF

    if page.compression in TIFF.DECOMPRESSORS:
        return
    raise UnsupportedCompressionError(
        f"{path}: TIFF compression {int(page.compression)} ({_compression_name(page)}) has no "
        "decoder here; install/upgrade imagecodecs (`pip install -U imagecodecs`) or convert the "
        "file (e.g. to a JPEG or Deflate tiled TIFF with vips or bfconvert)"
    )


def _compression_name(page: Any) -> str:
    return getattr(page.compression, "name", "unknown")


def page_mpp(tiff: Any, page: Any) -> Mpp | None:
    """Micrometres per pixel from OME-XML ``PhysicalSizeX/Y`` or the resolution tags."""
    ome = tiff.ome_metadata if tiff.is_ome else None
    if ome:
        sizes = [_ome_attr(ome, f"PhysicalSize{a}") for a in "XY"]
        units = [_ome_attr(ome, f"PhysicalSize{a}Unit") or "µm" for a in "XY"]
        if all(s is not None for s in sizes) and all(u in ("µm", "um") for u in units):
            return Mpp(float(sizes[0]), float(sizes[1]))  # type: ignore[arg-type]
    tags = page.tags
    unit = tags.get("ResolutionUnit")
    per_um = {2: 25400.0, 3: 10000.0}.get(int(unit.value) if unit is not None else 2)
    res = [tags.get(n) for n in ("XResolution", "YResolution")]
    if per_um is None or any(r is None for r in res):
        return None
    vals = [r.value[0] / r.value[1] if isinstance(r.value, tuple) else r.value for r in res]
    if any(v <= 0 for v in vals):
        return None
    return Mpp(per_um / vals[0], per_um / vals[1])


def _ome_attr(xml: str, name: str) -> str | None:
    match = re.search(rf'\b{name}="([^"]+)"', xml)
    return match.group(1) if match else None


class TiffTiles:
    """The native tiles (or strips) of one TIFF page per level: exact bytes and decode.

    Reads each segment with ``os.pread`` on a private descriptor, so it never moves a
    shared file position and is safe to call from several threads.
    """

    def __init__(self, path: str | Path, pages: Sequence[Any]) -> None:
        self.path = Path(path)
        self.pages = list(pages)
        self._fd: int | None = os.open(self.path, os.O_RDONLY)

    def tile_hw(self, level: int) -> tuple[int, int]:
        """Native tile (or strip) height and width of a level."""
        chunks = self.pages[level].chunks  # (th, tw[, samples]) for tiles and strips alike
        return int(chunks[0]), int(chunks[1])

    def grid_hw(self, level: int) -> tuple[int, int]:
        page = self.pages[level]
        (th, tw), (h, w) = self.tile_hw(level), (page.imagelength, page.imagewidth)
        return -(-h // th), -(-w // tw)

    def _index(self, level: int, tile_row: int, tile_col: int) -> int:
        rows, cols = self.grid_hw(level)
        if not (0 <= tile_row < rows and 0 <= tile_col < cols):
            raise IndexError(
                f"{self.path}: tile ({tile_row}, {tile_col}) outside level {level}'s "
                f"{rows}x{cols} tile grid"
            )
        return tile_row * cols + tile_col

    def nbytes(self, level: int, tile_row: int, tile_col: int) -> int:
        """Compressed size in bytes of one tile as stored in the file."""
        return int(self.pages[level].databytecounts[self._index(level, tile_row, tile_col)])

    def decode(self, level: int, tile_row: int, tile_col: int) -> np.ndarray:
        """Decode one tile, cropped to the level's edge.

        Shape: ``(th, tw, samples)`` or ``(th, tw)`` for single-sample pages.
        """
        page = self.pages[level]
        index = self._index(level, tile_row, tile_col)
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        (th, tw), h, w = self.tile_hw(level), page.imagelength, page.imagewidth
        vh, vw = min(th, h - tile_row * th), min(tw, w - tile_col * tw)
        if count == 0:  # a sparse tile: TIFF readers fill it with 0
            return np.zeros((vh, vw, *page.shape[2:]), page.dtype)
        assert self._fd is not None, "TiffTiles used after close()"
        try:
            data = os.pread(self._fd, count, offset)
            tile, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
        except Exception as exc:  # noqa: BLE001 - codecs raise many types
            what = f"tile ({tile_row}, {tile_col}) of level {level} cannot be decoded"
            raise corrupt_error(self.path, what, exc) from exc
        tile = tile.reshape(tile.shape[-3:])[:vh, :vw]
        return tile[..., 0] if tile.shape[-1] == 1 and len(page.shape) == 2 else tile

    def read_window(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Assemble rows ``y0:y1`` and columns ``x0:x1`` of a level from its tiles.

        Shape: ``(y1 - y0, x1 - x0[, samples])``.
        """
        (th, tw), page = self.tile_hw(level), self.pages[level]
        out = np.empty((y1 - y0, x1 - x0, *page.shape[2:]), page.dtype)
        for row in range(y0 // th, (y1 - 1) // th + 1):
            for col in range(x0 // tw, (x1 - 1) // tw + 1):
                tile, ty, tx = self.decode(level, row, col), row * th, col * tw
                a0, a1 = max(y0, ty), min(y1, ty + tile.shape[0])
                b0, b1 = max(x0, tx), min(x1, tx + tile.shape[1])
                out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = tile[
                    a0 - ty : a1 - ty, b0 - tx : b1 - tx
                ]
        return out

    def check_complete(self) -> None:
        """CorruptSlideError when a level's tile data runs past the end of the file."""
        check_data_inside(self.path, self.pages, "level")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
