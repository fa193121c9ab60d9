"""Draw the docs' figures into docs/figures/ (generated, not committed).

- ``sampling_grid.png``: the sampling points of a uniform and an edge density on one tissue
  region of a synthetic slide, over the region (like the paper's Fig. 1);
- ``mask_preview.png``: the preview ``wsi-seg infer`` writes (slide, sampling points, mask,
  legend) for the held-out slide of ``wsi-seg demo``; skipped with a note when there is no
  trained model yet.

Run ``.venv/bin/python docs/make_figures.py`` (after ``wsi-seg demo`` for the preview, or
with ``--model RUN_DIR --slide SLIDE``).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
DEMO = ROOT / "out" / "demo"


def _region_images(slide_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Region 0 of a slide: its RGB at level 0, its labels, its level-0 box."""
    import wsi_downsample as wd

    with wd.open_slide(slide_path) as slide, wd.open_mask(mask_path) as mask:
        region = wd.find_tissue_regions(slide)[0]
        box = (region.x0, region.y0, region.x1, region.y1)
        rgb = slide.read_region((region.x0, region.y0), 0, region.size_wh)[..., :3]
        labels = np.asarray(mask.level_array(0)[region.y0 : region.y1, region.x0 : region.x1])
    return np.asarray(rgb), labels, box


def _grids(labels: np.ndarray, box: tuple, task_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Level-0 sample points of the uniform and the edge density at ``task_hw``."""
    import torch

    from wsi_downsample.deformation import (
        density_edge,
        density_shape,
        saliency_to_grid,
        uniform_grid,
    )

    density = density_edge(torch.from_numpy(labels.astype(np.int64))[None], density_shape(task_hw))
    return {
        "uniform": uniform_grid(box, task_hw).numpy(),
        "edge (oracle) density": saliency_to_grid(density, box, task_hw)[0].numpy(),
    }


def sampling_grid_figure(out: Path, task_hw: tuple[int, int] = (32, 100)) -> Path:
    """Sampling points of a uniform and an edge density over a synthetic region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wsi_downsample.synthetic import write_synthetic_slide

    with tempfile.TemporaryDirectory() as tmp:
        synthetic = write_synthetic_slide(tmp, (1536, 2048), seed=0, progress=False)
        rgb, labels, box = _region_images(synthetic.slide_path, synthetic.mask_path)
    grids = _grids(labels, box, task_hw)
    fig, axes = plt.subplots(len(grids), 1, figsize=(10, 3.2 * len(grids)), dpi=120)
    extent = (box[0], box[2], box[3], box[1])
    for ax, (name, grid) in zip(axes, grids.items(), strict=True):
        ax.imshow(rgb, extent=extent)
        ax.scatter(grid[..., 0].ravel(), grid[..., 1].ravel(), s=3, c="#00e5ff", linewidths=0)
        ax.set_title(f"{name}: {task_hw[0]} x {task_hw[1]} samples")
        ax.set_xlabel("level-0 x (px)")
        ax.set_ylabel("level-0 y (px)")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _demo_slide() -> Path | None:
    """The held-out (test) slide of ``wsi-seg demo``'s set, if the demo has run."""
    manifest = DEMO / "slides" / "manifest.csv"
    if not manifest.is_file():
        return None
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("split") == "test"]
    return manifest.parent / rows[0]["slide_path"] if rows else None


def mask_preview_figure(out: Path, model: Path, slide: Path | None) -> Path | None:
    """``wsi-seg infer --preview``'s PNG for ``slide`` with ``model``; None without them."""
    slide = slide or _demo_slide()
    if slide is None or not model.exists():
        print(f"skipped {out.name}: no model at {model} (run `wsi-seg demo` first)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pipelines.cli", "infer", str(slide)]
        command += ["-o", str(Path(tmp) / "figure.mask.ome.tif"), "--model", str(model)]
        command += ["--no-geojson", "--preview", str(out), "--overwrite"]
        subprocess.run(command, cwd=ROOT, check=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEMO / "runs" / "learned")
    parser.add_argument("--slide", type=Path, default=None)
    args = parser.parse_args(argv)
    FIGURES.mkdir(parents=True, exist_ok=True)
    print(sampling_grid_figure(FIGURES / "sampling_grid.png"))
    made = mask_preview_figure(FIGURES / "mask_preview.png", args.model, args.slide)
    if made is not None:
        print(made)


if __name__ == "__main__":
    main()
