"""Label masks as single-channel uint8 ``SlideReader``s, checked against their slide's frame.

Sources: single-channel (pyramidal) TIFFs incl. OME-TIFF with SubIFDs, PANDA-style RGB TIFFs
(label = red channel), and plain images (PNG: palette index or gray value; RGB: red).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from wsi_downsample._types import Mpp
from wsi_downsample.errors import ConfigError, MaskMismatchError, NotASlideError
from wsi_downsample.slides._checks import check_path
from wsi_downsample.slides._common import ArrayLevel, ReaderBase, WindowLevel
from wsi_downsample.slides._tiff import TiffTiles, check_compression, is_tiff, open_tiff, page_mpp
from wsi_downsample.slides.base import LazyLevel

__all__ = ["MASK_BACKENDS", "MaskReader", "open_mask", "to_labels"]

MASK_BACKENDS = ("auto", "tifffile", "tiffslide", "image")


def to_labels(block: np.ndarray, path: Path | str = "") -> np.ndarray:
    """Labels from mask pixels: the array itself, or the red channel of RGB(A).

    Shape: ``(h, w)`` or ``(h, w, c)`` -> ``(h, w)`` uint8.
    """
    if block.ndim == 3:
        block = block[..., 0]
    if block.dtype == np.uint8:
        return block
    if block.dtype == bool:
        return block.astype(np.uint8)
    if np.issubdtype(block.dtype, np.integer):
        if block.size and (block.min() < 0 or block.max() > 255):
            raise NotASlideError(
                f"{path}: mask values span {block.min()}..{block.max()}; labels must be 0..255: "
                "remap the classes (e.g. with the config's label map) and re-export the mask"
            )
        return block.astype(np.uint8)
    raise NotASlideError(
        f"{path}: mask pixels are {block.dtype}; label masks must hold integer class values "
        "(uint8): convert the mask"
    )


class MaskReader(ReaderBase):
    """A label mask: ``read_region``/``level_array`` give ``(h, w)`` uint8 labels per level.

    ``frame_downsample`` is the mask's pixel size in its slide's level-0 pixels (1 when
    the mask has the slide's size); ``mpp`` is the slide's mpp times it when a slide was
    given, else the mask file's own.
    """

    is_mask = True

    def __init__(
        self,
        path: Path,
        backend: str,
        arrays: list[LazyLevel],
        tiles: TiffTiles | None = None,
        file_mpp: Mpp | None = None,
        closer: Any = None,
    ) -> None:
        super().__init__(path)
        self.backend = backend
        self._arrays, self._tiles, self._closer = arrays, tiles, closer
        self._shapes_hw = tuple((int(a.shape[0]), int(a.shape[1])) for a in arrays)
        self._tiles_hw = tuple(
            tiles.tile_hw(k) if tiles else (int(a.chunks[0]), int(a.chunks[1]))
            for k, a in enumerate(arrays)
        )
        self._file_mpp = file_mpp
        self.frame_downsample = 1.0

    def level_array(self, level: int) -> LazyLevel:
        return self._arrays[self.check_level(level)]

    def _pixels(self, block: np.ndarray) -> np.ndarray:
        return to_labels(block, self.path)

    def close(self) -> None:
        super().close()
        if self._closer is not None:
            self._closer.close()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as "reopen this mask" with its frame and mpp (see ReaderBase)."""
        return _reopen_mask, (str(self.path), self.backend, self.frame_downsample, self.mpp)


def _reopen_mask(path: str, backend: str, frame_downsample: float, mpp: Mpp | None) -> MaskReader:
    mask = open_mask(path, backend=backend)
    mask.frame_downsample, mask._mpp_override = frame_downsample, mpp
    return mask


def _label_level(array: Any, path: Path) -> LazyLevel:
    """A 2-D uint8 label view of one zarr level (red channel of RGB, cast of wider ints)."""
    if array.ndim == 2 and array.dtype == np.uint8:
        return array  # type: ignore[no-any-return]

    def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        sel = (slice(y0, y1), slice(x0, x1)) + ((0,) if array.ndim == 3 else ())
        return to_labels(np.asarray(array[sel]), path)

    return WindowLevel(tuple(array.shape[:2]), tuple(array.chunks[:2]), read)


def _open_tiff_mask(path: Path) -> MaskReader:
    import zarr

    tf = open_tiff(path)
    try:
        series = tf.series[0]
        if series.axes not in ("YX", "YXS"):
            raise NotASlideError(
                f"{path}: mask axes are {series.axes!r}; a label mask must be one 2-D plane "
                "(YX) or RGB (YXS, label in red): export a single-plane mask"
            )
        if not (series.dtype == bool or np.issubdtype(series.dtype, np.integer)):
            to_labels(np.zeros(0, series.dtype), path)  # raises the dtype error now, not later
        pages = [lvl.keyframe for lvl in series.levels]
        for page in pages:
            check_compression(page, path)
        arrays = [
            _label_level(zarr.open_array(series.aszarr(level=k), mode="r"), path)
            for k in range(len(pages))
        ]
        tiles = TiffTiles(path, pages)
        return MaskReader(path, "tifffile", arrays, tiles, page_mpp(tf, pages[0]), closer=tf)
    except BaseException:
        tf.close()
        raise


def _open_image_mask(path: Path) -> MaskReader:
    from wsi_downsample.slides.image import VIRTUAL_TILE_HW, load_image

    pixels, mpp = load_image(path, labels=True)
    return MaskReader(
        path, "image", [ArrayLevel(to_labels(pixels, path), VIRTUAL_TILE_HW)], None, mpp
    )


def open_mask(
    path: str | Path,
    *,
    slide: Any = None,
    downsample: float | None = None,
    backend: str = "auto",
) -> MaskReader:
    """Open a label mask; with ``slide``, check it is in the slide's frame.

    Parameters
    ----------
    path : str or Path
        A (pyramidal) TIFF / OME-TIFF, a PANDA-style RGB TIFF, or a plain image (PNG).
    slide : SlideReader, optional
        The slide the mask labels. Its level-0 size must equal the mask's exactly, or,
        with ``downsample`` > 1, the mask's times ``downsample`` up to one mask pixel of
        rounding (floor, ceil or one more); else MaskMismatchError.
    downsample : float, optional
        Slide level-0 pixels per mask pixel (default 1).
    backend : {"auto", "tifffile", "tiffslide", "image"}
        ``auto``: TIFFs through tifffile (``tiffslide`` is an alias), others as images.
    """
    if backend not in MASK_BACKENDS:
        raise ConfigError(f"unknown mask backend {backend!r}; available: {list(MASK_BACKENDS)}")
    path = check_path(path)
    use_tiff = backend in ("tifffile", "tiffslide") or (backend == "auto" and is_tiff(path))
    mask = _open_tiff_mask(path) if use_tiff else _open_image_mask(path)
    if slide is not None:
        try:
            _fit_to_slide(mask, slide, downsample)
        except MaskMismatchError:
            mask.close()
            raise
    elif downsample is not None:
        mask.frame_downsample = float(downsample)
    return mask


def _fit_to_slide(mask: MaskReader, slide: Any, downsample: float | None) -> None:
    """Check the mask's frame against the slide's; set ``frame_downsample`` and ``mpp``."""
    (mw, mh), (sw, sh) = mask.dimensions, slide.dimensions
    ds = 1.0 if downsample is None else float(downsample)
    slack = 0.0 if ds == 1.0 else 1.0  # same size: exact; downsampled: one pixel of rounding
    fits = all(
        math.floor(s / ds - slack) <= m <= math.ceil(s / ds + slack)
        for m, s in ((mw, sw), (mh, sh))
    )
    if not fits:
        raise _mismatch_error(mask, slide, ds, downsample is None)
    mask.frame_downsample = ds
    if slide.mpp is not None:
        mask._mpp_override = Mpp(slide.mpp.x * ds, slide.mpp.y * ds)


def _mismatch_error(mask: MaskReader, slide: Any, ds: float, default: bool) -> MaskMismatchError:
    """The frame mismatch, with ``hint={"downsample": k}`` when the slide is k x the mask."""
    (mw, mh), (sw, sh) = mask.dimensions, slide.dimensions
    ratio = (sw / mw + sh / mh) / 2
    k = round(ratio)
    integer = abs(ratio - k) < 0.01 and k > 1 and k != ds
    fix = (
        f"the slide is {ratio:.4g}x the mask: if the mask is a downsampled label map, give "
        "that downsample"
        if integer
        else "check that the mask belongs to this slide (manifest row) and was exported at "
        "the slide's level-0 size or an integer fraction of it"
    )
    expected = f"{sw}x{sh}" if default else f"{sw}x{sh} / {ds:g} = {sw / ds:g}x{sh / ds:g}"
    return MaskMismatchError(
        f"mask {mask.path} is {mw}x{mh} (width x height) but slide {slide.path} is {sw}x{sh}; "
        f"expected {expected}; {fix}",
        hint={"downsample": k} if integer else None,
    )
