"""Stream one pyramid level into a local zarr (v3) store, chunk by chunk, and reuse it.

The store's attributes record the source (path, size, mtime), level, reduction factor, mpp,
downsample, backend and shape; ``open_level_cache`` rebuilds a store whose attributes no
longer match its source. Stores are written to a temporary sibling folder and renamed.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsi_downsample.errors import CacheError, ConfigError, LevelError, OutputError
from wsi_downsample.io.atomic import atomic_dir
from wsi_downsample.slides._common import area_downsample, nearest_downsample, to_rgb
from wsi_downsample.slides.open import require_mpp
from wsi_downsample.slides.pyramid import level_just_finer, level_mpps

__all__ = ["CACHE_FORMAT", "stream_to_zarr", "open_level_cache", "cache_attributes"]

CACHE_FORMAT = "wsi-seg-level-cache/1"
#: how far a requested mpp may be from ``level mpp x integer`` (relative)
MPP_RTOL = 0.02
#: attributes that must match for a cache to be reused (chunking does not change values)
_KEY = (
    "format",
    "source_path",
    "source_bytes",
    "source_mtime_ns",
    "backend",
    "is_mask",
    "level",
    "factor",
    "shape",
)


@dataclass(frozen=True)
class _Plan:
    level: int
    factor: int
    shape: tuple[int, ...]


def _plan(reader: Any, level: int | None, mpp: float | None) -> _Plan:
    """Which level to read and by which integer factor to area-average it."""
    if level is not None and mpp is not None:
        raise ConfigError("give either level or mpp for the level cache, not both")
    factor = 1
    if mpp is not None:
        mpps = level_mpps(require_mpp(reader).x, reader.level_downsamples)
        level = level_just_finer(mpps, mpp)
        ratio = mpp / mpps[level]
        factor = max(1, round(ratio))
        if abs(ratio / factor - 1) > MPP_RTOL:
            choices = ", ".join(f"{m:.4g}" for m in mpps)
            raise LevelError(
                f"{reader.path}: cannot cache {mpp} mpp exactly: level mpps are [{choices}] and "
                f"the cache averages a level by an integer factor; ask for a level's mpp times "
                f"an integer (e.g. {mpps[level] * max(1, math.floor(ratio)):.4g})"
            )
    level = reader.check_level(0 if level is None else level)
    h, w = reader.levels[level].shape_hw
    tail = () if reader.is_mask else (3,)
    return _Plan(level, factor, (-(-h // factor), -(-w // factor), *tail))


def cache_attributes(reader: Any, *, level: int | None = None, mpp: float | None = None) -> dict:
    """The attributes a cache of this reader's level (or mpp) records and is checked by."""
    plan = _plan(reader, level, mpp)
    stat = os.stat(reader.path)
    downsample = reader.level_downsamples[plan.level] * plan.factor
    src_mpp = reader.mpp
    return {
        "format": CACHE_FORMAT,
        "source_path": str(Path(reader.path).resolve()),
        "source_bytes": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "backend": reader.backend,
        "is_mask": bool(reader.is_mask),
        "level": plan.level,
        "factor": plan.factor,
        "downsample": downsample,
        "mpp": None if src_mpp is None else [src_mpp.x * downsample, src_mpp.y * downsample],
        "shape": list(plan.shape),
    }


def _source(reader: Any, plan: _Plan, chunk_hw: tuple[int, int]) -> Any:
    """A dask array of the (reduced) level whose blocks are exactly the store's chunks."""
    import dask.array as da

    level = reader.level_array(plan.level)
    f = plan.factor
    read_chunks = (chunk_hw[0] * f, chunk_hw[1] * f, *level.shape[2:])
    src = da.from_array(level, chunks=read_chunks, lock=False, asarray=True)
    out_chunks = tuple(tuple(-(-c // f) for c in axis) for axis in src.chunks[:2])
    if reader.is_mask:
        if f > 1:
            src = src.map_blocks(nearest_downsample, f, chunks=out_chunks, dtype=np.uint8)
        return src
    if src.ndim != 3 or src.shape[2] != 3:
        src = src.map_blocks(to_rgb, chunks=src.chunks[:2] + ((3,),), dtype=np.uint8)
    if f > 1:
        src = src.map_blocks(area_downsample, f, chunks=out_chunks + ((3,),), dtype=np.uint8)
    return src


def stream_to_zarr(
    reader: Any,
    store_path: str | Path,
    *,
    level: int | None = None,
    mpp: float | None = None,
    chunk_hw: tuple[int, int] = (1024, 1024),
    progress: bool = True,
    num_workers: int = 2,
) -> Any:
    """Write one level (or the level for ``mpp``) of a slide or mask to a zarr v3 store.

    Reads ``chunk_hw`` blocks (times the reduction factor) with dask threads, so memory
    stays at a few chunks; with ``mpp`` the just-finer level is area-averaged by the
    integer factor that reaches it (masks: nearest). Replaces ``store_path`` atomically.

    Returns
    -------
    zarr.Array
        The written array, opened read-only: ``(h, w, 3)`` uint8 or ``(h, w)`` for masks.
    """
    import zarr

    store_path = Path(store_path)
    attrs = cache_attributes(reader, level=level, mpp=mpp)
    if store_path.is_file():
        raise CacheError(f"{store_path} exists and is a file, not a zarr store: remove it")
    try:
        with atomic_dir(store_path, overwrite=True) as tmp:
            _write(reader, attrs, tmp, chunk_hw, progress and store_path.name, num_workers)
    except OutputError as exc:
        raise CacheError(
            f"cannot write the level cache {store_path} ({exc}); check free space and "
            "permissions, or choose another cache folder"
        ) from None
    except OSError as exc:
        raise CacheError(
            f"cannot write the level cache {store_path} ({exc}); check free space and "
            "permissions, or choose another cache folder"
        ) from exc
    return zarr.open_array(str(store_path), mode="r")


def _write(
    reader: Any, attrs: dict, tmp: Path, chunk_hw: tuple[int, int], bar: str | bool, workers: int
) -> None:
    """Create the zarr v3 array at ``tmp`` and fill it chunk by chunk with dask threads."""
    import dask.array as da
    import zarr

    plan = _Plan(attrs["level"], attrs["factor"], tuple(attrs["shape"]))
    ch, cw = min(chunk_hw[0], plan.shape[0]), min(chunk_hw[1], plan.shape[1])
    target = zarr.create_array(
        store=str(tmp),
        shape=plan.shape,
        chunks=(ch, cw, *plan.shape[2:]),
        dtype="uint8",
        fill_value=0 if reader.is_mask else 255,
        zarr_format=3,
        attributes=attrs,
    )
    src = _source(reader, plan, (ch, cw))
    with _progress_bar(src.npartitions, bool(bar), str(bar)):
        store: Any = da.store  # dask's stubs do not accept a zarr array as a target
        store(src, target, lock=False, scheduler="threads", num_workers=workers)


@contextmanager
def _progress_bar(total: int, enabled: bool, name: str) -> Iterator[None]:
    """A tqdm bar over stored chunks (dask's store tasks); off when stderr is not a tty."""
    from dask.callbacks import Callback
    from tqdm import tqdm

    show = enabled and sys.stderr.isatty()
    with tqdm(total=total, desc=f"caching {name}", unit="chunk", disable=not show) as bar:

        def posttask(key: Any, *_: Any) -> None:
            if isinstance(key, tuple) and str(key[0]).startswith("store"):
                bar.update(1)

        with Callback(posttask=posttask):
            yield


def open_level_cache(
    reader: Any,
    store_path: str | Path,
    *,
    level: int | None = None,
    mpp: float | None = None,
    chunk_hw: tuple[int, int] = (1024, 1024),
    progress: bool = True,
) -> Any:
    """The cached zarr array of a level, (re)built when absent or stale.

    Stale: any of source path, size, mtime, backend, level, factor or shape differs from
    the store's attributes (or the store cannot be read).
    """
    import zarr

    store_path = Path(store_path)
    expected = cache_attributes(reader, level=level, mpp=mpp)
    if store_path.is_file():
        raise CacheError(f"{store_path} exists and is a file, not a zarr store: remove it")
    if store_path.exists():
        try:
            cached = zarr.open_array(str(store_path), mode="r")
            if all(cached.attrs.get(k) == expected[k] for k in _KEY):
                return cached
        except Exception:  # noqa: BLE001, S110 - an unreadable cache is rebuilt
            pass
    return stream_to_zarr(
        reader, store_path, level=level, mpp=mpp, chunk_hw=chunk_hw, progress=progress
    )
