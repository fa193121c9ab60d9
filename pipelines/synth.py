"""The ``synth`` pipeline: write a set of synthetic slides, masks and their manifest."""

from __future__ import annotations

import os
from pathlib import Path

from wsi_downsample.errors import BudgetError
from wsi_downsample.io.atomic import OutputSet
from wsi_downsample.synthetic import write_synthetic_set

__all__ = ["run_synth", "PRESETS", "MIN_SIDE", "MAX_ASPECT"]

PRESETS = ("default", "budget")
MIN_SIDE = 64  # pixels: the smallest slide side that holds a (tiny) core
MAX_ASPECT = 32  # longer / shorter side: thinner slides hold no core worth the name


def _check_shape(shape_hw: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in shape_hw)
    if min(h, w) < MIN_SIDE:
        raise BudgetError(f"slide size {h}x{w} is too small; use at least {MIN_SIDE} px per side")
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise BudgetError(
            f"slide size {h}x{w} is too thin (aspect {max(h, w) / min(h, w):.0f}:1, at most "
            f"{MAX_ASPECT}:1); make the shorter side at least {-(-max(h, w) // MAX_ASPECT)} px"
        )
    return h, w


def _check_budget_shape(shape_hw: tuple[int, int]) -> None:
    """The budget preset's cores are 1 mm x >= 1.5 mm: refuse slides that cannot hold one."""
    from wsi_downsample.synthetic.budget_layout import min_budget_shape

    h, w = (int(v) for v in shape_hw)
    short, long = min_budget_shape(0.5)
    if min(h, w) < short or max(h, w) < long:
        fix = f"{short}x{long}" if h <= w else f"{long}x{short}"
        raise BudgetError(
            f"slide size {h}x{w} (HxW) cannot hold a biopsy core of the budget preset (1 mm "
            f"thick, at least 1.5 mm long at 0.5 um/px: {short} px on the short side, {long} "
            f"on the long side)",
            hint={"shape_hw": fix},
        )


def run_synth(
    out_dir: str | os.PathLike[str],
    shape_hw: tuple[int, int] = (15360, 20480),
    count: int = 1,
    seed: int = 0,
    *,
    preset: str = "default",
    overwrite: bool = False,
    progress: bool | None = None,
) -> Path:
    """Write ``count`` synthetic slides of ``shape_hw`` (rows x columns) to ``out_dir``.

    Slide ``i`` is ``synthetic_{i:03d}.svs`` (seed ``seed + i``) with its label mask
    ``synthetic_{i:03d}.mask.ome.tif``; ``manifest.csv`` lists them (relative paths,
    splits ~60/20/20 train/val/test). ``preset``: ``default`` (small glands in class
    zones) or ``budget`` (PCa-Histo-like: 1 mm cores, lesion blobs of classes 1-5 in
    class-0 stroma; at least 3200 x 6000 px). The whole set appears at once or not at all
    (an interrupted run leaves nothing); existing files are refused unless ``overwrite``.
    ``progress``: tqdm bars (None: on large slides, when writing to a terminal).
    Returns the manifest's path.
    """
    if preset == "budget":  # before the generic checks: name the core's own needs
        _check_budget_shape(shape_hw)
    shape_hw = _check_shape(shape_hw)
    if not 1 <= count <= 1000:
        raise BudgetError(f"count must be 1..1000, got {count}")
    if preset not in PRESETS:
        raise BudgetError(f"unknown preset {preset!r}; available: {list(PRESETS)}")
    out = Path(out_dir)
    names = [f"synthetic_{i:03d}" for i in range(count)]
    paths = [out / "manifest.csv"]
    paths += [out / f"{n}{suffix}" for n in names for suffix in (".svs", ".mask.ome.tif")]
    extra = {} if preset == "default" else {"preset": preset}
    with OutputSet(paths, overwrite=overwrite) as staged:
        write_synthetic_set(
            staged.path(paths[0]).parent, shape_hw, count, seed, progress=progress, **extra
        )
    return paths[0]
