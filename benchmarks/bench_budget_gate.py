"""The budget set's gate and density sweep: IoU(Y', Y) of uniform vs the edge oracle (issue 8).

Usage::

    python benchmarks/bench_budget_gate.py sweep --set DIR --dynamic 40x400 --out sweep40.jsonl
    python benchmarks/bench_budget_gate.py gate --set DIR --dynamic 40x400 --fraction 1 \\
        --sigma 1.5 --radius 4 --blur 0.5 --out gate40.jsonl

``DIR`` holds ``wsi-seg synth DIR --preset budget --size 8192x12288 --count 6 --seed 0``.
``sweep`` runs on the manifest's train split: uniform, the edge oracle at the config defaults
(1/4, sigma 4.25, radius 10, blur 4, floor 0.25) and at 1/4, sigma 1.5, radius 4, blur 0.5,
floor 0.25, then the edge oracle (floor 0.1) for every density fraction in {1, 1/2, 1/4},
kernel (sigma, radius; radius at most half the short side SHORT x fraction of the density
lattice) and blur in {0.5, 1}. ``gate`` runs uniform and
the given edge settings on the whole set. One JSON line per run (mIoU, per-class IoU,
wall time) goes to ``--out`` as soon as it is done.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.config import load_config  # noqa: E402
from pipelines.intrinsic import IntrinsicSettings, run_intrinsic  # noqa: E402

FRACTIONS = (1.0, 0.5, 0.25)
KERNELS = ((1.5, 4), (3.0, 7))  # (sigma, radius) in density cells
FLOORS = (0.1,)  # the edge oracle's uniform floor (relative to its peak); see --floor
BLURS = (0.5, 1.0)


def _train_manifest(set_dir: Path) -> Path:
    """A manifest of the set's train rows (written next to the set's manifest)."""
    src = set_dir / "manifest.csv"
    with src.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = set_dir / "manifest.train.csv"
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["split"] == "train")
    return out


def _run(manifest: Path, config, settings: IntrinsicSettings, out: Path) -> None:
    start = time.perf_counter()
    report = run_intrinsic(manifest, config, settings)
    line = {
        "budget": settings.budget,
        "sampler": settings.sampler,
        "density_fraction": settings.density_fraction,
        "sigma": settings.sigma,
        "radius": settings.radius,
        "blur": settings.blur,
        "floor": settings.floor,
        "miou": report["miou"],
        "iou": report["iou"],
        "sampled_fraction": report["sampled_fraction"],
        "regions": sum(r["regions"] for r in report["rows"]),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    with out.open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("sweep", "gate"))
    parser.add_argument("--set", type=Path, required=True)
    parser.add_argument("--dynamic", required=True, help="SHORTxLONG budget, e.g. 40x400")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--sigma", type=float, default=1.5)
    parser.add_argument("--radius", type=int, default=4)
    parser.add_argument("--blur", type=float, default=0.5)
    parser.add_argument("--floor", type=float, default=0.25)
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(None)
    budget = f"dynamic:{args.dynamic}"
    short = int(args.dynamic.split("x")[0])
    if args.mode == "gate":
        manifest = args.set / "manifest.csv"
        base = IntrinsicSettings(budget=budget, floor=args.floor)
        _run(manifest, config, base, args.out)
        edge = IntrinsicSettings(
            sampler="edge",
            budget=budget,
            blur=args.blur,
            floor=args.floor,
            density_fraction=args.fraction,
            sigma=args.sigma,
            radius=args.radius,
        )
        _run(manifest, config, edge, args.out)
        return
    manifest = _train_manifest(args.set)
    if not args.skip_baselines:
        _run(manifest, config, IntrinsicSettings(budget=budget), args.out)
        defaults = IntrinsicSettings(sampler="edge", budget=budget, blur=4.0)  # config defaults
        _run(manifest, config, defaults, args.out)
        best = IntrinsicSettings(sampler="edge", budget=budget, blur=0.5, sigma=1.5, radius=4)
        _run(manifest, config, best, args.out)  # floor 0.25 at the smallest kernel
    for fraction, (sigma, radius), blur, floor in itertools.product(
        FRACTIONS, KERNELS, BLURS, FLOORS
    ):
        if radius > max(1, round(short * fraction)) // 2:
            continue
        settings = IntrinsicSettings(
            sampler="edge",
            budget=budget,
            blur=blur,
            floor=floor,
            density_fraction=fraction,
            sigma=sigma,
            radius=radius,
        )
        _run(manifest, config, settings, args.out)


if __name__ == "__main__":
    main()
