"""Lazy, zarr-like views of one level (window readers, in-memory arrays) and a lazy mapping."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["WindowLevel", "ArrayLevel", "LazyMapping"]


class WindowLevel:
    """A zarr-like lazy view of one level backed by a window reader ``read(y0, y1, x0, x1)``.

    Supports slicing with unit-step slices or integers on the first two axes and any
    numpy index on the channel axis.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        read: Callable[[int, int, int, int], np.ndarray],
        dtype: np.dtype[Any] | type = np.uint8,
    ) -> None:
        self._shape, self._chunks, self._read = tuple(shape), tuple(chunks), read
        self._dtype = np.dtype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return self._chunks

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def __len__(self) -> int:
        return self._shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        (y0, y1, ys), (x0, x1, xs) = (
            _span(k, n) for k, n in zip(key[:2], self._shape[:2], strict=True)
        )
        block = self._read(y0, y1, x0, x1) if y1 > y0 and x1 > x0 else self._empty(y1 - y0, x1 - x0)
        return block[(ys, xs) + tuple(key[2:])]

    def _empty(self, h: int, w: int) -> np.ndarray:
        return np.zeros((max(h, 0), max(w, 0), *self._shape[2:]), self._dtype)


def _span(key: Any, n: int) -> tuple[int, int, Any]:
    """A first/second-axis index as a window ``[a, b)`` plus the index into that window."""
    if isinstance(key, slice):
        a, b, step = key.indices(n)
        if step != 1:
            raise IndexError("lazy level views support unit-step slices only")
        return a, max(a, b), slice(None)
    i = int(key)
    i = i + n if i < 0 else i
    if not 0 <= i < n:
        raise IndexError(f"index {key} out of range for an axis of length {n}")
    return i, i + 1, 0


class ArrayLevel(WindowLevel):
    """An in-memory level (plain images) exposed like a lazy level with virtual chunks."""

    def __init__(self, array: np.ndarray, chunks_hw: tuple[int, int] = (256, 256)) -> None:
        self.array = array
        chunks = (
            tuple(min(c, s) for c, s in zip(chunks_hw, array.shape[:2], strict=True))
            + array.shape[2:]
        )
        super().__init__(array.shape, chunks, self._window, array.dtype)

    def _window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.array[y0:y1, x0:x1]


class LazyMapping(Mapping[str, np.ndarray]):
    """A read-only mapping that loads each value on access (associated images)."""

    def __init__(self, names: list[str], load: Callable[[str], np.ndarray]) -> None:
        self._names, self._load = list(names), load

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._names:
            raise KeyError(f"no associated image {key!r}; available: {self._names}")
        return self._load(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)
