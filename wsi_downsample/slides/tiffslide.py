"""The tiffslide backend: SVS, generic and OME-TIFF pyramids (SubIFDs too) as zarr levels."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wsi_downsample._types import Mpp
from wsi_downsample.errors import CorruptSlideError, NotASlideError
from wsi_downsample.slides._common import LazyMapping, MppLike, ReaderBase, to_rgb
from wsi_downsample.slides._tiff import TiffTiles, check_compression, is_tiff, open_tiff
from wsi_downsample.slides.base import LazyLevel

__all__ = ["TiffSlideReader"]


class TiffSlideReader(ReaderBase):
    """A slide read with tiffslide 3.x; native tiles through tifffile pages.

    ``level_array(k)`` is tiffslide's zarr array of level ``k`` (``(h, w, 3)`` or
    ``(h, w)`` for grayscale files); ``read_tile``/``tile_nbytes`` touch one tile only.
    """

    backend = "tiffslide"

    def __init__(self, path: str | Path, *, mpp: MppLike = None) -> None:
        super().__init__(path, mpp)
        import tiffslide

        try:
            self._slide = tiffslide.TiffSlide(str(self.path))
            props = self._slide.properties
        except Exception as exc:  # noqa: BLE001 - truncated files raise struct/Index errors
            raise _open_error(self.path, exc) from exc
        series = self._slide.ts_tifffile.series[props["tiffslide.series-index"]]
        pages = [lvl.keyframe for lvl in series.levels]
        try:
            self._check_pages(pages, props["tiffslide.series-axes"])
        except NotASlideError:
            self._slide.close()
            raise
        self._tiles = TiffTiles(self.path, pages)
        self._shapes_hw = tuple((h, w) for w, h in self._slide.level_dimensions)
        self._tiles_hw = tuple(self._tiles.tile_hw(k) for k in range(len(pages)))
        self._downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        mx, my = props.get("tiffslide.mpp-x"), props.get("tiffslide.mpp-y")
        self._file_mpp = Mpp(float(mx), float(my or mx)) if mx else None

    def _check_pages(self, pages: list[Any], axes: str) -> None:
        for page in pages:
            check_compression(page, self.path)
        if axes not in ("YXS", "YX") or pages[0].dtype != np.uint8:
            raise NotASlideError(
                f"{self.path}: pixels are {axes} {pages[0].dtype}; wsi-seg reads 8-bit RGB or "
                "grayscale brightfield slides: convert the file to 8-bit RGB"
            )

    def level_array(self, level: int) -> LazyLevel:
        return self._slide.zarr_group[str(self.check_level(level))]  # type: ignore[return-value]

    @property
    def objective_power(self) -> float | None:
        value = self._slide.properties.get("tiffslide.objective-power")
        return float(value) if value else None

    @property
    def vendor(self) -> str | None:
        return self._slide.properties.get("tiffslide.vendor")  # type: ignore[no-any-return]

    @property
    def properties(self) -> Mapping[str, Any]:
        return self._slide.properties

    @property
    def associated_images(self) -> Mapping[str, np.ndarray]:
        images = self._slide.associated_images
        return LazyMapping(list(images), lambda name: to_rgb(np.asarray(images[name])))

    def close(self) -> None:
        super().close()
        self._slide.close()


def _open_error(path: Path, exc: Exception) -> NotASlideError | CorruptSlideError:
    """Why tiffslide refused a file: a damaged TIFF (CorruptSlideError, from ``open_tiff``)
    or a TIFF layout it does not read (NotASlideError: OpenSlide may read it)."""
    if is_tiff(path):
        try:
            open_tiff(path, complete=True).close()
        except CorruptSlideError as damaged:
            return damaged
    return NotASlideError(
        f"{path}: tiffslide cannot open it as a slide ({type(exc).__name__}: {exc}); check that "
        "it is a TIFF-based slide, or read it with OpenSlide",
        hint={"backend": "openslide"},
    )
