"""Benchmark the exact inverse against scatter + nearest, and the intrinsic study on real tiles.

Usage::

    python benchmarks/bench_inverse.py                 # 2000 x 20000 at D = 1 from 80 x 800
    python benchmarks/bench_inverse.py --quick         # segmenter-like scores, 1 worker
    python benchmarks/bench_inverse.py --gleason       # IoU(Y', Y) on the Gleason example tiles

Each timing runs in a fresh subprocess: the median wall time of ``--repeats`` runs, the CPU
time of the fastest, and the peak memory of the call, read inside that subprocess: its own
VmHWM (reset just before the call) minus its RSS before it, and tracemalloc's peak of
numpy/Python allocations. The output is assembled in
memory (40 MB of uint8 for 2000 x 20000); tiles are 512 x 512.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _memory import peak_mb, reset_peak, rss_mb  # noqa: E402

from wsi_downsample.deformation.grid import saliency_to_grid  # noqa: E402
from wsi_downsample.deformation.inverse import (  # noqa: E402
    invert_grid,
    invert_labels,
    scatter_nearest_inverse,
)

REGION_HW, TASK_HW, CLASSES = (2000, 20000), (80, 800), 6
GLEASON = REPO.parent / "shared" / "data" / "real" / "gleason-grade-ing2018-examples" / "mask"


def make_case(kind: str) -> tuple[torch.Tensor, np.ndarray]:
    """A non-uniform 80 x 800 grid on a 2000 x 20000 region, and class scores on it.

    ``regions``: softmax of smooth random logits with regions tens of samples wide (like a
    segmenter's output on tissue); ``smooth``: the same with regions ~7 samples wide (6
    balanced classes, a quarter of the quads see 3+ classes); ``random``: one-hot of
    independent random labels (every quad mixed: the worst case).
    """
    gen = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(20.0), torch.arange(200.0), indexing="ij")
    d = 0.3 + torch.zeros(20, 200)
    for cx, cy, s in torch.rand(12, 3, generator=gen).tolist():
        d += 3 * torch.exp(-((xs - 200 * cx) ** 2 + (ys - 20 * cy) ** 2) / (2 * (2 + 6 * s) ** 2))
    grid = saliency_to_grid((d / d.sum())[None, None], (0, 0, 20000, 2000), TASK_HW)[0]
    rng = np.random.default_rng(0)
    if kind == "random":
        labels = rng.integers(0, CLASSES, TASK_HW)
        return grid, (np.arange(CLASSES)[:, None, None] == labels).astype(np.float32)
    width = 31 if kind == "regions" else 7
    noise = torch.from_numpy(rng.standard_normal((1, CLASSES, *TASK_HW))).float()
    logits = torch.nn.functional.avg_pool2d(noise * width, width, 1, width // 2)
    return grid, torch.softmax(logits[0], 0).numpy()


def run_one(method: str, kind: str, workers: int, repeats: int) -> dict:
    """Time one method in this process (call through a subprocess for clean memory peaks)."""
    grid, scores = make_case(kind)
    labels = scores.argmax(0)
    calls = {
        "exact": lambda: invert_grid(scores, grid, REGION_HW, workers=workers),
        "exact-labels": lambda: invert_labels(labels, grid, REGION_HW, num_classes=CLASSES),
        "scatter": lambda: scatter_nearest_inverse(labels, grid, REGION_HW, workers=workers),
    }
    before = rss_mb()
    reset_peak()  # VmHWM from here on is this call's peak (where refused: setup's too)
    tracemalloc.start()
    out = calls[method]()
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    peak = peak_mb() - before
    # what this benchmark used to report: ru_maxrss keeps the parent's RSS at fork
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = calls[method]()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {
        "method": method,
        "kind": kind,
        "workers": workers,
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "cpu_s": cpus[walls.index(min(walls))],
        "peak_rss_mb": peak,
        "ru_maxrss_delta_mb": inherited,
        "tracemalloc_mb": traced,
        "checksum": int(np.bincount(out.ravel(), minlength=CLASSES).argmax()),
    }


def timing_table(repeats: int, quick: bool = False) -> None:
    rows = []
    kinds = ("regions",) if quick else ("regions", "smooth", "random")
    workers = (1,) if quick else (1, 2)
    runs = [(m, w) for m in ("exact", "scatter") for w in workers]
    for kind in kinds:
        for method, workers in runs:
            cmd = [sys.executable, __file__, "--one", method, kind, str(workers), str(repeats)]
            rows.append(json.loads(subprocess.check_output(cmd, text=True).splitlines()[-1]))
    grid, scores = make_case("smooth")
    spacing = (grid[:, 1:, 0] - grid[:, :-1, 0]).flatten()
    print(f"grid 80x800 on 2000x20000, column spacing {spacing.min():.1f}..{spacing.max():.1f} px")
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}\n")
    print("peak RSS: the call's own VmHWM growth; old: ru_maxrss growth (inherits the parent's)")
    print("| scores | method | workers | median s | min s | CPU s | peak RSS MB | old | traced |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['method']} | {r['workers']} | {r['median_s']:.2f} "
            f"| {r['min_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_rss_mb']:.0f} "
            f"| {r['ru_maxrss_delta_mb']:.0f} | {r['tracemalloc_mb']:.0f} |"
        )


def gleason_table() -> None:
    """IoU(Y', Y) summed over the 11 example masks (labels 0..4, every pixel labelled)."""
    from PIL import Image

    from wsi_downsample.intrinsic import intrinsic_counts
    from wsi_downsample.metrics import mean_iou

    paths = sorted(GLEASON.glob("*.png"))
    if not paths:
        sys.exit(f"Gleason example masks not found under {GLEASON}")
    masks = [np.asarray(Image.open(p)) for p in paths]
    configs = [("uniform", 0.0)] + [("edge", blur) for blur in (0.5, 1.0, 2.0, 4.0)]
    print(f"{len(masks)} masks; edge floor 0.25; eq. 3 kernel sigma 4.25, radius 10\n")
    print("| budget | density | sampler | blur | exact | scatter |")
    print("|---|---|---|---|---|---|")
    for budget in ((48, 48), (24, 24)):
        for fraction in (0.25, 1.0):
            for sampler, blur in configs:
                res = []
                for inverse in ("exact", "scatter"):
                    counts = sum(
                        intrinsic_counts(
                            m,
                            budget,
                            sampler=sampler,
                            blur=blur,
                            inverse=inverse,
                            num_classes=5,
                            density_fraction=fraction,
                        )
                        for m in masks
                    )
                    res.append(mean_iou(counts))
                d_hw = f"{round(budget[0] * fraction)}x{round(budget[1] * fraction)}"
                print(
                    f"| {budget[0]}x{budget[1]} | {d_hw} | {sampler} | {blur:g} "
                    f"| {res[0]:.4f} | {res[1]:.4f} |",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (quick: 1)")
    parser.add_argument("--quick", action="store_true", help="one score kind, one worker")
    parser.add_argument("--gleason", action="store_true", help="intrinsic IoU on real tiles")
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        method, kind, workers, repeats = args.one
        print(json.dumps(run_one(method, kind, int(workers), int(repeats))))
    elif args.gleason:
        gleason_table()
    else:
        timing_table(args.repeats or (1 if args.quick else 5), args.quick)


if __name__ == "__main__":
    main()
