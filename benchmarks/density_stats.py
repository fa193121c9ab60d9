"""What did a learned density learn? Its contrast and its agreement with the edge oracle.

Usage::

    python benchmarks/density_stats.py SLIDE MASK RUN [RUN ...] [--blur 0.5 --floor 0.1]

For every tissue region of SLIDE (infer's region boxes) and every RUN's ``last`` checkpoint,
prints the density divided by its mean (``max``, ``min``), its correlation with the edge
oracle's density (``density_from_boundaries`` of the region's label boundaries with
``--blur`` / ``--floor``: what ``EdgeDensity`` samples with), the mean density on the
oracle's edge cells (oracle above its mean) and off them, and the same numbers for the
oracle itself on the first line of each region. A density that learned *where* but not
*how much* correlates well with the oracle and has a far smaller on/off ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def stats(density: np.ndarray, oracle: np.ndarray) -> str:
    d, o = density / density.mean(), oracle / oracle.mean()
    on = o > 1.0
    corr = np.corrcoef(d.ravel(), o.ravel())[0, 1] if d.std() > 0 else float("nan")
    return (
        f"max/mean {d.max():5.2f}  min/mean {d.min():4.2f}  corr with oracle {corr:5.3f}  "
        f"on edges {d[on].mean():4.2f}  off {d[~on].mean():4.2f}  "
        f"on/off {d[on].mean() / d[~on].mean():5.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slide", type=Path)
    parser.add_argument("mask", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--blur", type=float, default=0.5, help="The oracle's edge blur.")
    parser.add_argument("--floor", type=float, default=0.1, help="The oracle's edge floor.")
    args = parser.parse_args(argv)

    from pipelines.infer import find_regions
    from pipelines.run_dir import load_model
    from wsi_downsample.deformation.densities import density_from_boundaries
    from wsi_downsample.models.regions import prepare_region
    from wsi_downsample.slides import open_mask, open_slide

    torch.set_num_threads(2)
    models = {run.name: load_model(run, checkpoint="last").model for run in args.runs}
    first = next(iter(models.values()))
    with open_slide(args.slide) as slide, open_mask(args.mask, slide=slide) as mask:
        for region in find_regions(slide).regions:
            item = prepare_region(
                slide,
                region,
                budget=first.budget,
                density_fraction=first.density_fraction,
                mask=mask,
                lut=None,
            )
            assert item.boundaries is not None
            oracle = density_from_boundaries(
                item.boundaries[None], blur=args.blur, floor=args.floor
            )[0, 0].numpy()
            print(f"region {region.index} {oracle.shape}")
            print(f"  {'edge oracle':36s} {stats(oracle, oracle)}")
            for name, model in models.items():
                with torch.no_grad():
                    d = model.density_of(item)[0, 0].numpy()
                print(f"  {name:36s} {stats(d, oracle)}")


if __name__ == "__main__":
    main()
