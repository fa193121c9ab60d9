"""Native-tile fetching for slide-backed sampling: a bounded LRU cache, threads, read stats."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from wsi_downsample.slides.base import LevelInfo

__all__ = ["TileSource", "ArrayTileSource", "TileCache", "LevelStats", "ReadStats", "TileFetcher"]

TileKey = tuple[int, int, int]  # (level, tile_row, tile_col)


class TileSource(Protocol):
    """What slide-backed sampling needs from a slide: levels and one-tile access.

    Every ``SlideReader`` satisfies it; ``ArrayTileSource`` adapts in-memory or zarr levels.
    """

    @property
    def levels(self) -> tuple[LevelInfo, ...]: ...

    def read_tile(self, level: int, tile_row: int, tile_col: int) -> np.ndarray: ...

    def tile_nbytes(self, level: int, tile_row: int, tile_col: int) -> int: ...


class ArrayTileSource:
    """Levels held as arrays (numpy, zarr, a zarr level cache) served tile by tile.

    Parameters
    ----------
    arrays
        One ``(h, w[, c])`` array-like per level, finest first, sliceable like numpy.
    downsamples
        Level-0 pixels per level pixel, one per array.
    tiles_hw
        Tile shape per level; default the arrays' ``chunks`` (zarr) or 256 x 256.
    mpp
        Level-0 micrometres per pixel ``(x, y)``, or None.
    """

    def __init__(
        self,
        arrays: Sequence[Any],
        downsamples: Sequence[float],
        *,
        tiles_hw: Sequence[tuple[int, int]] | None = None,
        mpp: Any = None,
    ) -> None:
        if len(arrays) != len(downsamples) or not arrays:
            raise ValueError("give one downsample per level array (and at least one level)")
        self.arrays = list(arrays)
        self.mpp = mpp
        tiles = tiles_hw or [tuple(getattr(a, "chunks", (256, 256))[:2]) for a in arrays]
        self._levels = tuple(
            LevelInfo(k, (int(a.shape[0]), int(a.shape[1])), float(d), (int(t[0]), int(t[1])))
            for k, (a, d, t) in enumerate(zip(arrays, downsamples, tiles, strict=True))
        )

    @classmethod
    def from_level_cache(cls, array: Any) -> ArrayTileSource:
        """One level from a zarr level cache (``slides.zarr_cache``): its chunks are the tiles.

        The cache's ``downsample`` attribute places it in the level-0 frame; its ``mpp``
        attribute (at the cache's resolution) gives the level-0 mpp.
        """
        attrs = dict(array.attrs)
        ds = float(attrs.get("downsample", 1.0))
        mpp = attrs.get("mpp")
        level0_mpp = None if mpp is None else tuple(float(m) / ds for m in mpp)
        return cls([array], [ds], mpp=level0_mpp)

    @property
    def levels(self) -> tuple[LevelInfo, ...]:
        return self._levels

    def read_tile(self, level: int, tile_row: int, tile_col: int) -> np.ndarray:
        """One tile, clipped at the level's edge.

        Shape: ``(th, tw[, c])``, smaller at the right and bottom edges.
        """
        th, tw = self._levels[level].tile_hw
        y, x = tile_row * th, tile_col * tw
        return np.asarray(self.arrays[level][y : y + th, x : x + tw])

    def tile_nbytes(self, level: int, tile_row: int, tile_col: int) -> int:
        """Bytes of the decoded tile (in-memory levels hold no compressed bytes)."""
        return int(self.read_tile(level, tile_row, tile_col).nbytes)


class TileCache:
    """A thread-safe LRU of decoded tiles holding at most ``max_tiles`` of them."""

    def __init__(self, max_tiles: int) -> None:
        if max_tiles < 0:
            raise ValueError(f"cache size must be >= 0 tiles, got {max_tiles}")
        self.max_tiles = int(max_tiles)
        self._tiles: OrderedDict[TileKey, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tiles)

    def __contains__(self, key: object) -> bool:
        return key in self._tiles

    def get(self, key: TileKey) -> np.ndarray | None:
        """The cached tile (now most recently used) or None."""
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key: TileKey, tile: np.ndarray) -> None:
        """Insert a tile, evicting the least recently used beyond ``max_tiles``."""
        if self.max_tiles == 0:
            return
        with self._lock:
            self._tiles[key] = tile
            self._tiles.move_to_end(key)
            while len(self._tiles) > self.max_tiles:
                self._tiles.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._tiles.clear()

    @property
    def nbytes(self) -> int:
        """Bytes of decoded pixels held."""
        return sum(t.nbytes for t in list(self._tiles.values()))


@dataclass
class LevelStats:
    """Reads at one pyramid level: points sampled, tiles decoded, bytes, pixels, cache hits."""

    points: int = 0
    tiles_decoded: int = 0
    bytes_read: int = 0
    pixels_decoded: int = 0
    cache_hits: int = 0

    def __iadd__(self, other: LevelStats) -> LevelStats:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


@dataclass
class ReadStats:
    """Read accounting per level, accumulable across calls with ``+=``.

    ``bytes_read`` counts compressed bytes of decoded tiles (``tile_nbytes``; 0 when a
    backend cannot tell), ``pixels_decoded`` the pixels of decoded tiles, cache hits not
    included.
    """

    levels: dict[int, LevelStats] = field(default_factory=dict)

    def level(self, level: int) -> LevelStats:
        """The (created on demand) stats of one level."""
        return self.levels.setdefault(int(level), LevelStats())

    def __iadd__(self, other: ReadStats) -> ReadStats:
        for k, s in other.levels.items():
            self.level(k).__iadd__(s)
        return self

    def __add__(self, other: ReadStats) -> ReadStats:
        out = ReadStats()
        out += self
        out += other
        return out

    def total(self, name: str) -> int:
        """Sum of one counter (e.g. ``"tiles_decoded"``) over levels."""
        return sum(int(getattr(s, name)) for s in self.levels.values())

    @property
    def tiles_decoded(self) -> int:
        return self.total("tiles_decoded")

    @property
    def bytes_read(self) -> int:
        return self.total("bytes_read")

    @property
    def pixels_decoded(self) -> int:
        return self.total("pixels_decoded")

    @property
    def cache_hits(self) -> int:
        return self.total("cache_hits")

    def as_dict(self) -> dict[str, Any]:
        """Totals plus per-level counters, JSON-ready."""
        names = list(LevelStats.__dataclass_fields__)
        out: dict[str, Any] = {n: self.total(n) for n in names}
        out["per_level"] = {
            str(k): {n: getattr(s, n) for n in names} for k, s in self.levels.items()
        }
        return out


class TileFetcher:
    """Decode native tiles in parallel threads through a bounded LRU cache.

    Parameters
    ----------
    source
        A slide (any backend) or an ``ArrayTileSource``.
    cache_tiles
        Most decoded tiles kept between calls (LRU).
    threads
        Decoder threads (``slide.read_tile`` in a ``ThreadPoolExecutor``).
    """

    def __init__(self, source: TileSource, *, cache_tiles: int = 256, threads: int = 2) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.source = source
        self.cache = TileCache(cache_tiles)
        self.threads = int(threads)
        self._pool: ThreadPoolExecutor | None = None

    def fetch(self, keys: Iterable[TileKey], stats: ReadStats) -> dict[TileKey, np.ndarray]:
        """Tiles for ``keys`` (distinct), from the cache or decoded; counts into ``stats``."""
        out: dict[TileKey, np.ndarray] = {}
        missing: list[TileKey] = []
        for key in keys:
            tile = self.cache.get(key)
            if tile is None:
                missing.append(key)
            else:
                out[key] = tile
                stats.level(key[0]).cache_hits += 1
        for key, tile in zip(missing, self._decode(missing), strict=True):
            out[key] = tile
            self.cache.put(key, tile)
            level = stats.level(key[0])
            level.tiles_decoded += 1
            level.pixels_decoded += tile.shape[0] * tile.shape[1]
            level.bytes_read += int(self.source.tile_nbytes(*key))
        return out

    def _decode(self, keys: list[TileKey]) -> list[np.ndarray]:
        if self.threads == 1 or len(keys) <= 1:
            return [self.source.read_tile(*k) for k in keys]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="wsi-tiles")
        return list(self._pool.map(lambda k: self.source.read_tile(*k), keys))

    def close(self) -> None:
        """Stop the decoder threads and drop the cache."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.cache.clear()
