"""The slide-backed deformed sampler G_d (docs/method.md, piece 4): reads only needed tiles.

A grid holds ``(x, y)`` sample positions in level-0 pixel coordinates. Each point is read
from one pyramid level (``fixed``: the source level; ``adaptive``: mip-mapping from the
grid's Jacobian), at level coordinates ``u = x / ds - 0.5`` (pixel centres at integers),
bilinearly from its 2 x 2 neighbour pixels clamped at the level's edges — exactly
``grid_sample(mode="bilinear", padding_mode="border", align_corners=False)`` on that
level loaded whole. Pixel values are gathered from decoded native tiles; the bilinear
weights are computed in torch from the grid, so gradients flow to the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch

from wsi_downsample.deformation.tile_cache import ReadStats, TileCache, TileFetcher, TileSource
from wsi_downsample.errors import LevelError, MissingMppError
from wsi_downsample.slides.base import LevelInfo
from wsi_downsample.slides.pyramid import RTOL, level_for_mpp, level_mpps

__all__ = [
    "SampleResult",
    "SlideSampler",
    "local_spacing",
    "choose_levels",
    "footprint_tiles",
]

LevelChoice = Literal["fixed", "adaptive"]
SpacingRule = Literal["max", "geomean"]

#: decoded tiles held at once while gathering (on top of the LRU cache)
_CHUNK_TILES = 64


class SampleResult(NamedTuple):
    """What a slide-backed sample returns.

    ``values``: image ``(3, h, w)`` float in [0, 1] (``sample``) or labels ``(h, w)`` int64
    (``sample_labels``); ``levels``: ``(h, w)`` int64 level each point was read from;
    ``stats``: the reads this call made.
    """

    values: torch.Tensor
    levels: torch.Tensor
    stats: ReadStats

    @property
    def image(self) -> torch.Tensor:
        return self.values


def local_spacing(grid: torch.Tensor, rule: SpacingRule = "max") -> torch.Tensor:
    """Local sample spacing (level-0 px) of a grid from its Jacobian, per node.

    Finite differences along rows and columns (central inside, one-sided at the border)
    give the two axis spacings ``|dg/dj|`` and ``|dg/di|``; ``rule`` combines them:
    ``"max"`` (default, OpenGL's mip rule: no aliasing along the sparser axis) or
    ``"geomean"`` (the area-preserving mean: sharper, may alias on anisotropic grids).
    An axis with one node contributes nothing; a 1 x 1 grid has spacing 0.

    Shape: ``(h, w, 2)`` -> ``(h, w)``.
    """
    g = grid.detach().to(torch.float64)
    spacings = [
        torch.linalg.vector_norm(torch.gradient(g, dim=d)[0], dim=-1)
        for d in (1, 0)
        if g.shape[d] > 1
    ]
    if not spacings:
        return torch.zeros(g.shape[:2], dtype=torch.float64)
    if len(spacings) == 1 or rule == "max":
        return torch.stack(spacings).amax(0)
    if rule == "geomean":
        return torch.sqrt(spacings[0] * spacings[1])
    raise ValueError(f"unknown spacing rule {rule!r}; available: ['max', 'geomean']")


def choose_levels(
    grid: torch.Tensor,
    downsamples: Sequence[float],
    source_level: int,
    mode: LevelChoice = "fixed",
    rule: SpacingRule = "max",
) -> torch.Tensor:
    """The pyramid level each grid point is read from.

    ``fixed``: every point from ``source_level``. ``adaptive`` (mip-mapping): the coarsest
    level whose downsample is <= the local spacing, never finer than ``source_level``.

    Shape: ``(h, w, 2)`` -> ``(h, w)`` int64.
    """
    if not 0 <= source_level < len(downsamples):
        raise LevelError(f"source level {source_level} outside levels 0..{len(downsamples) - 1}")
    levels = torch.full(grid.shape[:2], source_level, dtype=torch.int64)
    if mode == "fixed":
        return levels
    if mode != "adaptive":
        raise ValueError(f"unknown level choice {mode!r}; available: ['fixed', 'adaptive']")
    spacing = local_spacing(grid, rule) * (1 + RTOL)  # Aperio levels are 4.0003x
    for k in range(source_level + 1, len(downsamples)):
        levels = torch.where(spacing >= downsamples[k], k, levels)
    return levels


def _taps(
    xy: torch.Tensor, info: LevelInfo, full: bool
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Rows, columns and bilinear weights of the 2 x 2 neighbours of level-0 points.

    Neighbours are clamped to the level (border padding). Unless ``full``, a neighbour
    with zero weight repeats the first one, so it costs no extra tile.

    Shape: ``(n, 2)`` -> rows ``(n, 4)``, cols ``(n, 4)``, weights ``(n, 4)``.
    """
    (h, w), ds = info.shape_hw, info.downsample
    xy = xy.to(torch.float64)  # in float32, x ~ 1e5 leaves u only ~4e-3 exact
    u, v = xy[:, 0] / ds - 0.5, xy[:, 1] / ds - 0.5
    j0, i0 = torch.floor(u.detach()), torch.floor(v.detach())
    a, b = u - j0, v - i0
    j1 = j0 + 1 if full else j0 + (a.detach() > 0).to(j0.dtype)
    i1 = i0 + 1 if full else i0 + (b.detach() > 0).to(i0.dtype)
    cols = torch.stack([j0, j1, j0, j1], 1).clamp_(0, w - 1).to(torch.int64).numpy()
    rows = torch.stack([i0, i0, i1, i1], 1).clamp_(0, h - 1).to(torch.int64).numpy()
    weights = torch.stack([(1 - a) * (1 - b), a * (1 - b), (1 - a) * b, a * b], 1)
    return rows, cols, weights


def _nearest(xy: torch.Tensor, info: LevelInfo) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the level pixel containing each point, clamped to the level.

    Shape: ``(n, 2)`` -> ``(n, 1)``, ``(n, 1)``.
    """
    (h, w), ds = info.shape_hw, info.downsample
    p = torch.floor(xy.detach().to(torch.float64) / ds).to(torch.int64)
    cols, rows = p[:, 0].clamp(0, w - 1), p[:, 1].clamp(0, h - 1)
    return rows[:, None].numpy(), cols[:, None].numpy()


def _tile_ids(info: LevelInfo, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Flat tile index ``tile_row * n_tile_cols + tile_col`` of level pixels."""
    th, tw = info.tile_hw
    return (rows // th) * (-(-info.shape_hw[1] // tw)) + cols // tw


def footprint_tiles(
    source: TileSource,
    grid: torch.Tensor,
    levels: torch.Tensor,
    *,
    nearest: bool = False,
    with_grad: bool = False,
) -> dict[int, np.ndarray]:
    """The minimum set of native tiles the sample footprints touch, per level.

    A bilinear footprint is the neighbour pixels with non-zero weight (all four when
    ``with_grad``: the gradient needs them); a nearest footprint the pixel holding the point.

    Shape: grid ``(h, w, 2)``, levels ``(h, w)`` -> ``{level: (t, 2) int64 (tile_row, tile_col)}``.
    """
    flat, lv = grid.detach().reshape(-1, 2), levels.reshape(-1)
    out: dict[int, np.ndarray] = {}
    for k in torch.unique(lv).tolist():
        info = source.levels[k]
        xy = flat[lv == k]
        rows, cols = _nearest(xy, info) if nearest else _taps(xy, info, with_grad)[:2]
        ids = np.unique(_tile_ids(info, rows, cols))
        n_cols = -(-info.shape_hw[1] // info.tile_hw[1])
        out[k] = np.stack([ids // n_cols, ids % n_cols], 1)
    return out


class SlideSampler:
    """Sample a slide (any backend, or an ``ArrayTileSource``) at a grid of level-0 points.

    Parameters
    ----------
    slide
        An open slide or mask (``SlideReader``) or any ``TileSource``.
    level_choice
        ``"fixed"``: every point from the source level; ``"adaptive"``: mip-mapping, each
        point from the coarsest level whose downsample is <= the grid's local spacing,
        never finer than the source level.
    source_level, source_mpp
        The source level, or the mpp whose closest level it is (default 0.5 um/px).
    cache_tiles
        Most decoded tiles kept in the LRU cache between calls.
    threads
        Tile decoder threads.
    spacing
        How the two axis spacings combine for ``adaptive`` (see ``local_spacing``).

    Memory is bounded by the cache plus a chunk of 64 tiles, whatever the slide or grid.
    """

    def __init__(
        self,
        slide: TileSource,
        *,
        level_choice: LevelChoice = "fixed",
        source_level: int | None = None,
        source_mpp: float | None = None,
        cache_tiles: int = 256,
        threads: int = 2,
        spacing: SpacingRule = "max",
    ) -> None:
        if level_choice not in ("fixed", "adaptive"):
            raise ValueError(f"unknown level choice {level_choice!r}; use 'fixed' or 'adaptive'")
        if spacing not in ("max", "geomean"):
            raise ValueError(f"unknown spacing rule {spacing!r}; use 'max' or 'geomean'")
        self.slide = slide
        self.level_choice: LevelChoice = level_choice
        self.spacing: SpacingRule = spacing
        self.source_level = self._source_level(source_level, source_mpp)
        self.fetcher = TileFetcher(slide, cache_tiles=cache_tiles, threads=threads)
        self.stats = ReadStats()

    def _source_level(self, level: int | None, mpp: float | None) -> int:
        levels = self.slide.levels
        if level is not None:
            if mpp is not None:
                raise ValueError("give source_level or source_mpp, not both")
            if not 0 <= level < len(levels):
                raise LevelError(
                    f"no source level {level}; the slide has levels 0..{len(levels) - 1}"
                )
            return int(level)
        slide_mpp = getattr(self.slide, "mpp", None)
        if slide_mpp is None:
            raise MissingMppError(
                f"{getattr(self.slide, 'path', 'slide')}: no mpp in the file, so the source level "
                "for a source mpp cannot be chosen; give source_level=, or open the slide with mpp="
            )
        mpps = level_mpps(float(np.mean(slide_mpp)), [info.downsample for info in levels])
        return level_for_mpp(mpps, 0.5 if mpp is None else mpp)

    @property
    def cache(self) -> TileCache:
        """The LRU of decoded tiles (``len(cache) <= cache.max_tiles``)."""
        return self.fetcher.cache

    def levels_for(self, grid: torch.Tensor) -> torch.Tensor:
        """The level each point is read from. Shape: ``(h, w, 2)`` -> ``(h, w)``."""
        downsamples = [info.downsample for info in self.slide.levels]
        return choose_levels(grid, downsamples, self.source_level, self.level_choice, self.spacing)

    def sample(self, grid: torch.Tensor, levels: torch.Tensor | None = None) -> SampleResult:
        """Bilinear RGB samples at the grid; differentiable w.r.t. the grid.

        ``levels`` overrides the level choice (e.g. the levels of another sample).

        Shape: ``(h, w, 2)`` -> values ``(3, h, w)`` float (the grid's dtype if floating).
        """
        values, levels, stats = self._sample(grid, levels, nearest=False)
        return SampleResult(values.T.reshape(-1, *grid.shape[:2]), levels, stats)

    def sample_labels(self, grid: torch.Tensor, levels: torch.Tensor | None = None) -> SampleResult:
        """Nearest labels (the pixel holding each point) of a mask, with the same level choice.

        Shape: ``(h, w, 2)`` -> values ``(h, w)`` int64.
        """
        values, levels, stats = self._sample(grid, levels, nearest=True)
        return SampleResult(values.reshape(grid.shape[:2]), levels, stats)

    def _sample(
        self, grid: torch.Tensor, levels: torch.Tensor | None, nearest: bool
    ) -> tuple[torch.Tensor, torch.Tensor, ReadStats]:
        if grid.ndim != 3 or grid.shape[-1] != 2 or grid.shape[0] * grid.shape[1] == 0:
            raise ValueError(f"grid must be (h, w, 2) of (x, y), got shape {tuple(grid.shape)}")
        levels = self.levels_for(grid) if levels is None else levels.to(torch.int64)
        if levels.shape != grid.shape[:2]:
            raise ValueError(f"levels {tuple(levels.shape)} do not match grid {tuple(grid.shape)}")
        flat, lv, stats = grid.reshape(-1, 2), levels.reshape(-1), ReadStats()
        order, parts = [], []
        for k in torch.unique(lv).tolist():
            idx = torch.nonzero(lv == k).squeeze(1)
            stats.level(k).points += len(idx)
            read = self._read_nearest if nearest else self._read_bilinear
            parts.append(read(flat[idx], k, stats))
            order.append(idx)
        values = torch.cat(parts)[torch.argsort(torch.cat(order))]
        self.stats += stats
        return values, levels, stats

    def _read_bilinear(self, xy: torch.Tensor, level: int, stats: ReadStats) -> torch.Tensor:
        """Shape: ``(n, 2)`` -> ``(n, c)`` float in [0, 1]."""
        info = self.slide.levels[level]
        rows, cols, weights = _taps(xy, info, full=xy.requires_grad)
        pixels = self._gather(info, rows.ravel(), cols.ravel(), stats)
        dtype = xy.dtype if xy.is_floating_point() else torch.float32
        taps = torch.from_numpy(pixels).to(dtype).reshape(len(xy), 4, -1) / 255.0
        return (taps * weights.to(dtype)[:, :, None]).sum(1)

    def _read_nearest(self, xy: torch.Tensor, level: int, stats: ReadStats) -> torch.Tensor:
        """Shape: ``(n, 2)`` -> ``(n,)`` int64 labels."""
        info = self.slide.levels[level]
        rows, cols = _nearest(xy, info)
        pixels = self._gather(info, rows.ravel(), cols.ravel(), stats)
        return torch.from_numpy(pixels.reshape(len(xy), -1)[:, 0].astype(np.int64))

    def _gather(
        self, info: LevelInfo, rows: np.ndarray, cols: np.ndarray, stats: ReadStats
    ) -> np.ndarray:
        """Pixel values at level pixels, decoding each needed tile once, in chunks.

        Shape: ``(m,)``, ``(m,)`` -> ``(m, c)`` uint8.
        """
        (th, tw), n_cols = info.tile_hw, -(-info.shape_hw[1] // info.tile_hw[1])
        ids = _tile_ids(info, rows, cols)
        order = np.argsort(ids, kind="stable")
        unique, starts = np.unique(ids[order], return_index=True)
        bounds = np.append(starts, len(ids))
        out: np.ndarray | None = None
        for c0 in range(0, len(unique), _CHUNK_TILES):
            chunk = unique[c0 : c0 + _CHUNK_TILES]
            keys = [(info.level, int(t // n_cols), int(t % n_cols)) for t in chunk]
            tiles = self.fetcher.fetch(keys, stats)
            for n, key in enumerate(keys, start=c0):
                sel = order[bounds[n] : bounds[n + 1]]
                tile = tiles[key]
                px = tile[rows[sel] - key[1] * th, cols[sel] - key[2] * tw]
                if out is None:
                    out = np.empty((len(ids), *tile.shape[2:]), tile.dtype)
                out[sel] = px
        assert out is not None, "no points to gather"
        return out.reshape(len(ids), -1)

    def close(self) -> None:
        """Stop decoder threads and drop cached tiles."""
        self.fetcher.close()

    def __enter__(self) -> SlideSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
