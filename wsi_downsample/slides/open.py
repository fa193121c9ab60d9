"""The one place a backend is chosen: ``open_slide``, plus checks and a JSON description.

Auto rule (``backend="auto"``):

1. A missing path or a directory -> SlideNotFoundError.
2. ``.jpg .jpeg .png .bmp .gif .webp`` -> ``image``.
3. Formats only OpenSlide reads (``.mrxs .ndpi .scn .vms .vmu .bif .svslide .dcm``) ->
   ``openslide``.
4. A TIFF (by its header): a single-page, untiled TIFF of at most 64 Mpx with no SubIFDs
   -> ``image``; otherwise ``tiffslide`` (SVS, generic and OME-TIFF pyramids, SubIFDs
   included), falling back to ``openslide`` when tiffslide cannot parse it.
5. Anything else: ``image`` when PIL recognises it, else ``openslide`` when OpenSlide
   recognises it, else NotASlideError.

Compression and codec errors are never retried on another backend: they are the answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wsi_downsample._types import Mpp
from wsi_downsample.errors import (
    ConfigError,
    CorruptSlideError,
    MissingMppError,
    NotASlideError,
    UnsupportedCompressionError,
)
from wsi_downsample.slides._checks import MPP_RANGE, Placeholder, check_path, corrupt_error
from wsi_downsample.slides._common import MppLike, ReaderBase
from wsi_downsample.slides._tiff import is_tiff, open_tiff

__all__ = [
    "BACKENDS",
    "open_slide",
    "choose_backend",
    "check_path",
    "check_decodable",
    "require_mpp",
    "describe_slide",
]

BACKENDS = ("auto", "tiffslide", "openslide", "image")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
OPENSLIDE_SUFFIXES = frozenset(
    {".mrxs", ".ndpi", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm"}
)
#: single-page untiled TIFFs up to this many pixels are decoded whole as plain images
MAX_PLAIN_TIFF_PIXELS = 1 << 26


def choose_backend(path: str | Path) -> str:
    """The backend ``open_slide(path, backend="auto")`` tries first (see module docstring)."""
    path = check_path(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in OPENSLIDE_SUFFIXES:
        return "openslide"
    if is_tiff(path):
        return "image" if _is_plain_tiff(path) else "tiffslide"
    if _pil_recognises(path):
        return "image"
    return "openslide"


def _is_plain_tiff(path: Path) -> bool:
    """Whether a TIFF is one small untiled page; CorruptSlideError when it cannot be parsed."""
    with open_tiff(path) as tf:
        page = tf.pages.first
        small = page.imagelength * page.imagewidth <= MAX_PLAIN_TIFF_PIXELS
        return len(tf.pages) == 1 and not page.is_tiled and not page.subifds and small


def _pil_recognises(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return True
    except Image.DecompressionBombError:
        return True  # an image, too large: the image backend says so
    except (UnidentifiedImageError, OSError):
        return False


def open_slide(path: str | Path, backend: str = "auto", mpp: MppLike = None) -> ReaderBase:
    """Open a slide (or plain image) as a ``SlideReader``.

    Parameters
    ----------
    path : str or Path
        The slide file.
    backend : {"auto", "tiffslide", "openslide", "image"}
        Which library reads it; ``auto`` follows the module docstring's rule.
    mpp : float or (float, float), optional
        Level-0 micrometres per pixel; overrides (or supplies) the file's.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown slide backend {backend!r}; available: {list(BACKENDS)}")
    path = check_path(path)
    first = choose_backend(path) if backend == "auto" else backend
    try:
        return _open_with(first, path, mpp)
    except (UnsupportedCompressionError, CorruptSlideError):
        raise
    except NotASlideError as exc:
        if backend != "auto" or first != "tiffslide":
            raise
        try:
            return _open_with("openslide", path, mpp)
        except NotASlideError:
            raise NotASlideError(f"{exc}; OpenSlide cannot open it either") from exc


def _open_with(backend: str, path: Path, mpp: MppLike) -> ReaderBase:
    if backend == "tiffslide":
        from wsi_downsample.slides.tiffslide import TiffSlideReader

        return TiffSlideReader(path, mpp=mpp)
    if backend == "openslide":
        from wsi_downsample.slides.openslide import OpenSlideReader

        return OpenSlideReader(path, mpp=mpp)
    from wsi_downsample.slides.image import ImageReader

    return ImageReader(path, mpp=mpp)


def check_decodable(reader: Any) -> None:
    """Decode one tile of the coarsest level (and level 0's first); CorruptSlideError if not.

    Cheap (two tiles, plus a check that every TIFF tile lies inside the file) and catches
    truncated files and broken codecs at open time.
    """
    check_complete = getattr(reader, "check_complete", None)
    if check_complete is not None:
        check_complete()
    last = reader.level_count - 1
    for level in sorted({last, 0}):
        try:
            reader.read_tile(level, 0, 0)
        except CorruptSlideError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decode failure means a corrupt file
            what = f"the first tile of level {level} cannot be decoded"
            raise corrupt_error(reader.path, what, exc) from exc


def require_mpp(reader: Any) -> Mpp:
    """The reader's level-0 mpp, or MissingMppError saying how to supply it."""
    if reader.mpp is None:
        raise MissingMppError(
            f"{reader.path} has no plausible mpp in its metadata (none, or outside "
            f"{MPP_RANGE[0]:g}-{MPP_RANGE[1]:g} um/px such as a 72/96 dpi default); give the "
            "slide's level-0 micrometres per pixel (a manifest: its mpp column)",
            hint={"mpp": Placeholder("UM_PER_PX")},
        )
    return Mpp(*reader.mpp)


def describe_slide(reader: Any) -> dict[str, Any]:
    """A JSON-able summary: path, backend, vendor, mpp, objective, levels, associated images."""
    mpp = reader.mpp
    levels = [
        {
            "level": info.level,
            "width": info.shape_hw[1],
            "height": info.shape_hw[0],
            "downsample": info.downsample,
            "mpp": None if mpp is None else [mpp.x * info.downsample, mpp.y * info.downsample],
            "tile_width": info.tile_hw[1],
            "tile_height": info.tile_hw[0],
        }
        for info in reader.levels
    ]
    return {
        "path": str(reader.path),
        "file_bytes": os.path.getsize(reader.path),
        "backend": reader.backend,
        "is_mask": reader.is_mask,
        "vendor": reader.vendor,
        "width": reader.dimensions[0],
        "height": reader.dimensions[1],
        "mpp": None if mpp is None else [mpp.x, mpp.y],
        "objective_power": reader.objective_power,
        "levels": levels,
        "associated_images": sorted(reader.associated_images),
    }
