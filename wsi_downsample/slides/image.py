"""The plain-image backend: a JPEG/PNG/single-page TIFF tile as a one-level "slide"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wsi_downsample._types import Mpp
from wsi_downsample.errors import NotASlideError
from wsi_downsample.slides._checks import corrupt_error
from wsi_downsample.slides._common import ArrayLevel, MppLike, ReaderBase, to_rgb
from wsi_downsample.slides._tiff import check_compression, is_tiff, open_tiff, page_mpp
from wsi_downsample.slides.base import LazyLevel

__all__ = ["ImageReader", "load_image"]

#: virtual tile size of plain images (they have no native tiles)
VIRTUAL_TILE_HW = (256, 256)


def load_image(path: Path, *, labels: bool = False) -> tuple[np.ndarray, Mpp | None]:
    """Decode a whole plain image; return its pixels and the TIFF's mpp (None for JPEG/PNG).

    Images come back as stored (gray, RGB or RGBA; palettes expanded); with ``labels``
    palette images give their indices and 1-bit images 0/1 (``masks`` takes it from there).

    Shape: ``(h, w)`` or ``(h, w, c)``.
    """
    if is_tiff(path):
        return _load_tiff(path)
    from PIL import UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return _pil_to_array(img, labels), None
    except UnidentifiedImageError as exc:
        raise NotASlideError(
            f"{path}: not an image file PIL can read ({exc}); give a JPEG, PNG or TIFF"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise NotASlideError(
            f"{path}: too large to decode whole as a plain image ({exc}); convert it to a "
            "tiled pyramidal TIFF (e.g. with vips tiffsave --tile --pyramid)"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise corrupt_error(path, "the image cannot be decoded", exc) from exc


def _pil_to_array(img: Image.Image, labels: bool) -> np.ndarray:
    if labels or img.mode in ("L", "RGB", "RGBA"):
        arr = np.asarray(img)
        return arr.astype(np.uint8) if arr.dtype == bool else arr
    alpha = img.mode in ("LA", "PA", "RGBa", "La") or "transparency" in img.info
    return np.asarray(img.convert("RGBA" if alpha else "RGB"))


def _load_tiff(path: Path) -> tuple[np.ndarray, Mpp | None]:
    with open_tiff(path) as tf:
        page = tf.pages.first
        check_compression(page, path)
        try:
            return page.asarray(), page_mpp(tf, page)
        except Exception as exc:  # noqa: BLE001 - codec errors
            raise corrupt_error(path, "the TIFF cannot be decoded", exc) from exc


class ImageReader(ReaderBase):
    """A plain image held in memory: one level, virtual 256x256 tiles, mpp from the caller
    (or a TIFF's resolution tags)."""

    backend = "image"

    def __init__(self, path: str | Path, *, mpp: MppLike = None) -> None:
        super().__init__(path, mpp)
        pixels, self._file_mpp = load_image(self.path)
        if pixels.dtype != np.uint8:
            raise NotASlideError(
                f"{self.path}: pixels are {pixels.dtype}; wsi-seg reads 8-bit images: convert it"
            )
        self._array = ArrayLevel(to_rgb(pixels), VIRTUAL_TILE_HW)
        self._shapes_hw = ((int(pixels.shape[0]), int(pixels.shape[1])),)
        self._tiles_hw = ((int(self._array.chunks[0]), int(self._array.chunks[1])),)

    def level_array(self, level: int) -> LazyLevel:
        self.check_level(level)
        return self._array

    def close(self) -> None:
        """Nothing to release: the pixels were decoded at open time."""
