"""An on-disk label canvas in the slide's output frame, written by regions, read row-major."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = ["LabelCanvas", "TissueOwner", "frame_shape"]


def frame_shape(size_wh: tuple[int, int], downsample: int) -> tuple[int, int]:
    """``(h, w)`` of the slide's level-0 frame at ``downsample``: ``ceil(level-0 / D)``."""
    w, h = size_wh
    return -(-int(h) // int(downsample)), -(-int(w) // int(downsample))


class TissueOwner:
    """Which tissue component owns each output pixel: the nearest component within
    ``dilate_px`` tissue-mask pixels (so two boxes that overlap share no pixel).

    Parameters
    ----------
    components : ndarray
        ``(h_m, w_m)`` int component labels of the tissue mask (0 = no tissue).
    mask_downsample : float
        Level-0 pixels per tissue-mask pixel.
    dilate_px : int
        Tissue-mask pixels each component reaches beyond its edge.
    """

    def __init__(self, components: np.ndarray, mask_downsample: float, dilate_px: int = 2):
        labels = np.asarray(components, dtype=np.int32)
        if labels.max(initial=0) == 0:
            self.owner = labels
        else:
            dist, (ii, jj) = ndi.distance_transform_edt(labels == 0, return_indices=True)
            self.owner = np.where(dist <= dilate_px, labels[ii, jj], 0).astype(np.int32)
        self.mask_downsample = float(mask_downsample)

    def tile(self, row0: int, col0: int, shape_hw: tuple[int, int], downsample: float) -> Any:
        """Owner component of every pixel of an output tile (pixel centres looked up).

        Shape: ``shape_hw`` int32.
        """
        h, w = shape_hw
        scale = downsample / self.mask_downsample
        rows = np.floor((np.arange(row0, row0 + h) + 0.5) * scale).astype(np.int64)
        cols = np.floor((np.arange(col0, col0 + w) + 0.5) * scale).astype(np.int64)
        rows = rows.clip(0, self.owner.shape[0] - 1)
        cols = cols.clip(0, self.owner.shape[1] - 1)
        return self.owner[np.ix_(rows, cols)]


class LabelCanvas:
    """A uint8 label raster on disk (zarr, ``chunk x chunk``), background 0 where unwritten.

    Regions write their tiles in any order (:meth:`write`); the mask writer reads tiles in
    row-major order (:meth:`read`, or :meth:`upsampled` for a finer frame). Memory is a few
    chunks, whatever the raster's size. Use as a context manager (removes the store).

    Parameters
    ----------
    shape_hw : tuple of int
        Raster ``(h, w)`` (the slide frame at the output downsample).
    chunk : int
        Chunk side of the store.
    tmp_dir : path, optional
        Folder for the temporary store (a hidden sub-folder is made and removed).
    num_classes : int
        Values counted by :meth:`class_counts` (0..num_classes-1).
    """

    def __init__(
        self,
        shape_hw: tuple[int, int],
        *,
        chunk: int = 512,
        tmp_dir: str | Path | None = None,
        num_classes: int = 256,
    ) -> None:
        import zarr

        self.shape_hw = (int(shape_hw[0]), int(shape_hw[1]))
        self.num_classes = num_classes
        parent = None if tmp_dir is None else str(tmp_dir)
        self._tmp = tempfile.TemporaryDirectory(prefix=".canvas-", dir=parent)
        self.array = zarr.create_array(
            store=str(Path(self._tmp.name) / "labels.zarr"),
            shape=self.shape_hw,
            chunks=(chunk, chunk),
            dtype=np.uint8,
            fill_value=0,
        )

    def write(
        self, row0: int, col0: int, labels: np.ndarray, keep: np.ndarray | None = None
    ) -> np.ndarray:
        """Write a tile at ``(row0, col0)``; only pixels where ``keep`` (all if None).

        The part outside the raster is dropped. Returns the counts per class of the
        pixels written. Shape: labels and keep ``(th, tw)``.
        """
        h, w = self.shape_hw
        r1, c1 = min(h, row0 + labels.shape[0]), min(w, col0 + labels.shape[1])
        r0, c0 = max(0, row0), max(0, col0)
        if r1 <= r0 or c1 <= c0:
            return np.zeros(self.num_classes, np.int64)
        part = labels[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0].astype(np.uint8)
        if keep is not None:
            k = keep[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0]
            if not k.any():
                return np.zeros(self.num_classes, np.int64)
            if not k.all():
                part = np.where(k, part, self.array[r0:r1, c0:c1])
            written = part[k]
        else:
            written = part
        self.array[r0:r1, c0:c1] = part
        return np.bincount(written.ravel(), minlength=self.num_classes)[: self.num_classes]

    def read(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """A tile of the raster (the mask writer's tile reader). Shape: ``(h, w)`` uint8."""
        return np.asarray(self.array[y0 : y0 + h, x0 : x0 + w])

    def upsampled(self, factor: int, shape_hw: tuple[int, int]) -> Any:
        """A tile reader of the raster upsampled ``factor`` times by nearest neighbour.

        Pixel ``(i, j)`` of the fine frame (``shape_hw``, at most ``factor x`` this one)
        takes canvas pixel ``(i // factor, j // factor)``.
        """
        if factor == 1:
            return self.read

        def read(y0: int, x0: int, h: int, w: int) -> np.ndarray:
            rows = np.arange(y0, y0 + h) // factor
            cols = np.arange(x0, x0 + w) // factor
            block = self.read(
                int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
            )
            return block[np.ix_(rows - rows[0], cols - cols[0])]

        if shape_hw[0] > self.shape_hw[0] * factor or shape_hw[1] > self.shape_hw[1] * factor:
            raise ValueError(f"{shape_hw} is larger than {self.shape_hw} x {factor}")
        return read

    def iter_blocks(self, block: int, overlap: int = 0) -> Iterator[tuple[int, int, np.ndarray]]:
        """Row-major blocks ``(row0, col0, labels)`` of ``block`` pixels, each extended by
        ``overlap`` pixels to the right and below (clipped)."""
        h, w = self.shape_hw
        for r in range(0, h, block):
            for c in range(0, w, block):
                yield (
                    r,
                    c,
                    self.read(r, c, min(block + overlap, h - r), min(block + overlap, w - c)),
                )

    def class_counts(self, block: int = 2048) -> np.ndarray:
        """Pixels per class over the whole raster, read block by block. Shape: ``(C,)``."""
        total = np.zeros(self.num_classes, np.int64)
        for _, _, data in self.iter_blocks(block):
            total += np.bincount(data.ravel(), minlength=self.num_classes)[: self.num_classes]
        return total

    def thumbnail(self, size_wh: tuple[int, int]) -> np.ndarray:
        """Nearest-neighbour view of the raster at about ``size_wh`` (aspect kept), read by
        chunk rows. Shape: ``(th, tw)`` uint8."""
        h, w = self.shape_hw
        step = max(1, math.ceil(max(h / size_wh[1], w / size_wh[0])))
        rows = np.arange(step // 2, h, step)
        cols = np.arange(step // 2, w, step)
        out = np.zeros((rows.size, cols.size), np.uint8)
        chunk = self.array.chunks[0]
        for r0 in range(0, h, chunk):
            sel = (rows >= r0) & (rows < r0 + chunk)
            if sel.any():
                strip = self.read(r0, 0, min(chunk, h - r0), w)
                out[sel] = strip[np.ix_(rows[sel] - r0, cols)]
        return out

    def close(self) -> None:
        """Remove the on-disk store."""
        self._tmp.cleanup()

    def __enter__(self) -> LabelCanvas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
