"""Checks shared by every reader: the path, damaged files, plausible mpp, and their errors."""

from __future__ import annotations

import math
from pathlib import Path

from wsi_downsample._types import Mpp
from wsi_downsample.errors import CorruptSlideError, SlideNotFoundError

__all__ = [
    "MPP_RANGE",
    "Placeholder",
    "check_path",
    "corrupt_error",
    "plausible_mpp",
]

#: level-0 micrometres per pixel a brightfield slide can have; metadata outside is ignored
MPP_RANGE = (0.05, 20.0)


class Placeholder(str):
    """A hint value that stands for something the user fills in (shown without quotes)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def check_path(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise SlideNotFoundError when it is missing or a folder."""
    path = Path(path)
    if path.is_dir():
        raise SlideNotFoundError(
            f"{path} is a directory, not a slide file; give the slide file itself "
            "(for MIRAX give the .mrxs file next to its data folder)"
        )
    if not path.exists():
        raise SlideNotFoundError(
            f"{path}: no such file; check the path (relative paths in a manifest resolve "
            "against the CSV's folder)"
        )
    if path.stat().st_size == 0:
        raise corrupt_error(path, "the file is empty (0 bytes)")
    return path


def corrupt_error(
    path: str | Path, what: str, exc: BaseException | None = None
) -> CorruptSlideError:
    """The one "truncated or corrupt" error: ``{path}: {what} ({cause}); ... re-copy ...``.

    ``what`` says what failed (``"cannot decode level 0 rows 0:256 cols 0:256"``).
    """
    cause = "" if exc is None else f" ({type(exc).__name__}: {exc})"
    return CorruptSlideError(
        f"{path}: {what}{cause}; the file is truncated or corrupt: re-copy or re-export it"
    )


def plausible_mpp(mpp: Mpp | None) -> Mpp | None:
    """``mpp`` when both axes lie in ``MPP_RANGE``, else None (unknown).

    Writers that know no pixel size often store the 72 or 96 dpi screen defaults
    (353 or 265 um/px) or 1 px per unit; such values are metadata noise, not a pixel size,
    and a caller must then give the mpp explicitly.
    """
    if mpp is None:
        return None
    lo, hi = MPP_RANGE
    if all(math.isfinite(v) and lo <= v <= hi for v in mpp):
        return Mpp(float(mpp[0]), float(mpp[1]))
    return None
