"""The one slide protocol every backend implements, and the small value types it returns.

All locations are level-0 pixel coordinates ``(x, y)``; sizes are ``(w, h)`` at the level
being read; arrays are numpy ``(h, w, 3)`` uint8 RGB for slides and ``(h, w)`` uint8 labels
for masks. See ``wsi_downsample._types`` for the conventions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from wsi_downsample._types import Mpp

__all__ = ["LevelInfo", "SlideReader", "LazyLevel"]


@dataclass(frozen=True)
class LevelInfo:
    """One pyramid level: its index, shape, downsample from level 0 and native tile shape."""

    level: int
    shape_hw: tuple[int, int]
    downsample: float
    tile_hw: tuple[int, int]


@runtime_checkable
class LazyLevel(Protocol):
    """A zarr-compatible lazy array of one level: ``shape``, ``dtype``, ``chunks``, slicing."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...

    @property
    def chunks(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


@runtime_checkable
class SlideReader(Protocol):
    """What the rest of wsi-seg needs from a slide or a label mask, whatever the backend.

    Slides return RGB ``(h, w, 3)`` uint8; masks (``is_mask``) return labels ``(h, w)`` uint8.
    """

    path: Path
    backend: str
    is_mask: bool

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 size ``(w, h)``."""
        ...

    @property
    def level_count(self) -> int: ...

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(w, h)`` of every level, finest first."""
        ...

    @property
    def level_downsamples(self) -> tuple[float, ...]: ...

    @property
    def levels(self) -> tuple[LevelInfo, ...]: ...

    @property
    def mpp(self) -> Mpp | None:
        """Level-0 micrometres per pixel, or None when neither file nor caller gives it."""
        ...

    @property
    def objective_power(self) -> float | None: ...

    @property
    def vendor(self) -> str | None: ...

    @property
    def properties(self) -> Mapping[str, Any]: ...

    @property
    def associated_images(self) -> Mapping[str, np.ndarray]: ...

    def read_region(
        self, location_xy: tuple[int, int], level: int, size_wh: tuple[int, int]
    ) -> np.ndarray:
        """Pixels of ``size_wh`` at ``level`` whose top-left is ``location_xy`` (level 0).

        Areas outside the slide read as white (slides) or 0 (masks).
        """
        ...

    def read_tile(self, level: int, tile_row: int, tile_col: int) -> np.ndarray:
        """Decode one native tile (clipped at the level's edge)."""
        ...

    def tile_nbytes(self, level: int, tile_row: int, tile_col: int) -> int:
        """Compressed bytes of one native tile in the file (0 if unknown)."""
        ...

    def level_array(self, level: int) -> LazyLevel:
        """A lazy, zarr-compatible array of a whole level (decodes on slicing)."""
        ...

    def get_thumbnail(self, max_size_wh: tuple[int, int]) -> np.ndarray: ...

    def close(self) -> None: ...

    def __enter__(self) -> SlideReader: ...

    def __exit__(self, *exc: object) -> None: ...
