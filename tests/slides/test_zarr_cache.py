"""The zarr level cache: values, attributes, staleness, atomic rebuilds, bounded reads."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
from slide_testkit import reduce_area, write_pyramid_tiff

from wsi_downsample.errors import CacheError, ConfigError, LevelError, MissingMppError
from wsi_downsample.slides import (
    open_level_cache,
    open_mask,
    open_slide,
    stream_to_zarr,
    zarr_cache,
)


@pytest.fixture
def slide_path(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    return write_pyramid_tiff(tmp_path / "s.tif", img, factors=(1, 2), tile=32, mpp=0.25)


def test_stream_level_values_chunks_and_attributes(slide_path, tmp_path) -> None:
    with open_slide(slide_path) as slide:
        arr = stream_to_zarr(slide, tmp_path / "c" / "l1.zarr", level=1, chunk_hw=(48, 64))
        assert arr.shape == (100, 150, 3) and arr.chunks == (48, 64, 3)
        assert arr.metadata.zarr_format == 3
        assert np.array_equal(arr[:], slide.level_array(1)[:])
        attrs = dict(arr.attrs)
    stat = os.stat(slide_path)
    assert attrs == {
        "format": "wsi-seg-level-cache/1",
        "source_path": str(slide_path.resolve()),
        "source_bytes": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "backend": "tiffslide",
        "is_mask": False,
        "level": 1,
        "factor": 1,
        "downsample": 2.0,
        "mpp": [0.5, 0.5],
        "shape": [100, 150, 3],
    }
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]  # no temp left


def test_mpp_between_levels_area_averages_the_finer_level(slide_path, tmp_path) -> None:
    with open_slide(slide_path) as slide:
        arr = stream_to_zarr(slide, tmp_path / "m1.zarr", mpp=1.0, chunk_hw=(16, 16))
        level1 = np.asarray(slide.level_array(1)[:])
    assert dict(arr.attrs)["level"] == 1 and dict(arr.attrs)["factor"] == 2
    assert arr.shape == (50, 75, 3)
    assert np.array_equal(arr[:], reduce_area(level1, 2))
    with open_slide(slide_path) as slide:
        with pytest.raises(LevelError, match=r"cannot cache 0.7 mpp.*\[0.25, 0.5\]"):
            stream_to_zarr(slide, tmp_path / "bad.zarr", mpp=0.7)
        with pytest.raises(ConfigError, match="not both"):
            stream_to_zarr(slide, tmp_path / "bad.zarr", mpp=0.5, level=1)
    with open_slide(slide_path, backend="openslide") as slide:
        slide._file_mpp = None
        with pytest.raises(MissingMppError, match="try mpp=UM_PER_PX"):
            stream_to_zarr(slide, tmp_path / "bad.zarr", mpp=1.0)


def test_open_level_cache_reuses_then_rebuilds_when_touched(slide_path, tmp_path) -> None:
    store = tmp_path / "cache.zarr"
    with open_slide(slide_path) as slide:
        first = open_level_cache(slide, store, level=0, chunk_hw=(64, 64))
        marker = store / "zarr.json"
        built = marker.stat().st_mtime_ns
        again = open_level_cache(slide, store, level=0)
        assert marker.stat().st_mtime_ns == built  # reused, not rewritten
        assert np.array_equal(again[:], first[:])
    st = os.stat(slide_path)
    os.utime(slide_path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    with open_slide(slide_path) as slide:
        rebuilt = open_level_cache(slide, store, level=0)
        assert rebuilt.attrs["source_mtime_ns"] == st.st_mtime_ns + 5_000_000_000
        assert np.array_equal(rebuilt[:], slide.level_array(0)[:])
        # a different level is a different cache key: rebuilt in place
        other = open_level_cache(slide, store, level=1)
        assert other.shape == (100, 150, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.zarr", "s.tif"]


def test_unreadable_store_is_rebuilt_and_a_file_is_an_error(slide_path, tmp_path) -> None:
    store = tmp_path / "broken.zarr"
    store.mkdir()
    (store / "zarr.json").write_text("{not json")
    with open_slide(slide_path) as slide:
        arr = open_level_cache(slide, store, level=1)
        assert np.array_equal(arr[:], slide.level_array(1)[:])
        (tmp_path / "file.zarr").write_text("x")
        with pytest.raises(CacheError, match="is a file, not a zarr store"):
            open_level_cache(slide, tmp_path / "file.zarr", level=1)


def test_mask_cache_is_2d_and_nearest(tmp_path) -> None:
    lab = np.zeros((200, 300), np.uint8)
    lab[50:150, 100:250] = 4
    lab[::2, ::2] = 7  # averaging would invent values between 0, 4 and 7
    path = write_pyramid_tiff(tmp_path / "m.tif", lab, nearest=True, mpp=0.5)
    with open_mask(path) as mask:
        arr = stream_to_zarr(mask, tmp_path / "m.zarr", mpp=1.0, chunk_hw=(30, 40))
        assert arr.shape == (100, 150) and arr.chunks == (30, 40)
        assert np.array_equal(arr[:], lab[1::2, 1::2])  # centre pixel of each 2x2 cell
        assert set(np.unique(arr[:])) == {0, 4}


class _Recorder:
    """Wraps a reader and records the size of every window its level arrays serve."""

    def __init__(self, reader) -> None:
        self._reader, self.windows = reader, []

    def __getattr__(self, name):
        return getattr(self._reader, name)

    def level_array(self, level):
        inner, windows = self._reader.level_array(level), self.windows

        class View:
            shape, dtype, chunks, ndim = inner.shape, inner.dtype, inner.chunks, len(inner.shape)

            def __getitem__(self, key):
                block = np.asarray(inner[key])
                windows.append(block.shape[:2])
                return block

        return View()


def test_streaming_reads_chunk_sized_windows_only(slide_path, tmp_path) -> None:
    with open_slide(slide_path) as slide:
        rec = _Recorder(slide)
        # 1.0 mpp: level 1 (0.5 mpp) averaged 2x2 -> 50x75 in 24x40 chunks
        arr = stream_to_zarr(rec, tmp_path / "r.zarr", mpp=1.0, chunk_hw=(24, 40))
        assert np.array_equal(arr[:], reduce_area(np.asarray(slide.level_array(1)[:]), 2))
    real = [w for w in rec.windows if w[0] and w[1]]
    assert max(h for h, _ in real) <= 48 and max(w for _, w in real) <= 80  # chunk x factor 2
    assert sum(h * w for h, w in real) == 100 * 150  # every level-1 pixel read exactly once


def test_write_failure_leaves_no_temp_and_raises_cache_error(slide_path, tmp_path, monkeypatch):
    real_write = zarr_cache._write

    def boom(*args, **kwargs):
        real_write(*args, **kwargs)  # the store is complete in its temporary folder
        raise OSError("disk full")

    monkeypatch.setattr(zarr_cache, "_write", boom)
    with open_slide(slide_path) as slide, pytest.raises(CacheError, match="disk full"):
        stream_to_zarr(slide, tmp_path / "x.zarr", level=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]
    shutil.rmtree(tmp_path / "x.zarr", ignore_errors=True)


def test_progress_bar_counts_chunks_on_a_terminal(slide_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with open_slide(slide_path) as slide:
        stream_to_zarr(slide, tmp_path / "p.zarr", level=0, chunk_hw=(100, 100))
        err = capsys.readouterr().err
        assert "caching p.zarr" in err and "6/6" in err  # 200 x 300 in 100 x 100 chunks
        stream_to_zarr(slide, tmp_path / "q.zarr", level=0, chunk_hw=(100, 100), progress=False)
        assert capsys.readouterr().err == ""
