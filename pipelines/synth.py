"""The ``synth`` pipeline: write a set of synthetic slides, masks and their manifest."""

from __future__ import annotations

import os
from pathlib import Path

from wsi_downsample.synthetic import write_synthetic_set

__all__ = ["run_synth"]


def run_synth(
    out_dir: str | os.PathLike[str],
    shape_hw: tuple[int, int] = (15360, 20480),
    count: int = 1,
    seed: int = 0,
    progress: bool | None = None,
) -> Path:
    """Write ``count`` synthetic slides of ``shape_hw`` (rows x columns) to ``out_dir``.

    Slide ``i`` is ``synthetic_{i:03d}.svs`` (seed ``seed + i``) with its label mask
    ``synthetic_{i:03d}.mask.ome.tif``; ``manifest.csv`` lists them (relative paths,
    splits ~60/20/20 train/val/test). ``progress``: tqdm bars (None: on large slides,
    when writing to a terminal). Returns the manifest's path.
    """
    h, w = (int(v) for v in shape_hw)
    if h < 64 or w < 64:
        raise ValueError(f"slide size {h}x{w} is too small; use at least 64x64 (HxW)")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    return write_synthetic_set(out_dir, (h, w), count, seed, progress=progress)
