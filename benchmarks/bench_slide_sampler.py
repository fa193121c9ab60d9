"""Benchmark the slide-backed deformed sampler against "read the region whole, then grid_sample".

On a synthetic 100k x 100k, 0.25 um/px, JPEG-tiled Aperio-style slide (written once into
``--workdir``), for one ~40k x 40k region and for all tissue regions, with budgets 80x800
(dynamic), 256x256 and 512x512, a uniform and a concentrated density, fixed and adaptive
levels, it measures side by side: tiles decoded vs the minimum the footprints touch, wall time
(median of ``--repeats`` runs, each with a cold tile cache), peak RSS, bytes decoded, and the
intrinsic error IoU(Y', Y) on the slide's mask. Every measurement runs in its own process and
reads its own peak RSS there (VmHWM from /proc/self/status: ``ru_maxrss`` would keep this
parent's RSS at fork), so the peak belongs to that measurement alone (the OS page cache stays
warm: no root to drop it).

    python benchmarks/bench_slide_sampler.py --quick            # ~1 min smoke check
    python benchmarks/bench_slide_sampler.py --workdir /tmp/wsi-bench
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsi_downsample.deformation.budget import budget_shape, density_shape
from wsi_downsample.deformation.grid import saliency_to_grid, uniform_grid
from wsi_downsample.deformation.inverse import OutputFrame, auto_output_downsample, invert_labels
from wsi_downsample.deformation.sampler import sample_image
from wsi_downsample.deformation.slide_sampler import SlideSampler, footprint_tiles
from wsi_downsample.slides.masks import open_mask
from wsi_downsample.slides.open import open_slide
from wsi_downsample.slides.pyramid import best_level_for_downsample

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import peak_mb  # noqa: E402

Box = tuple[int, int, int, int]
N_CLASSES = 6
#: the baseline is measured whole when its float32 copy stays below this; else extrapolated
BASELINE_MAX_BYTES = 3 << 30


# -- the slide ----------------------------------------------------------------------------
def ensure_slide(workdir: Path, side: int) -> dict[str, Any]:
    """Write the synthetic slide once (JPEG, 0.25 um/px) and remember its regions."""
    folder = workdir / f"synthetic_{side}"
    meta_path = folder / "meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    from wsi_downsample.synthetic import write_synthetic_slide

    print(f"writing a {side} x {side} synthetic slide into {folder} (once) ...", flush=True)
    t0 = time.perf_counter()
    s = write_synthetic_slide(
        folder,
        (side, side),
        seed=0,
        name=f"bench{side}",
        mpp=0.25,
        compression="jpeg",
        progress=False,
    )
    meta = {
        "slide_path": str(s.slide_path),
        "mask_path": str(s.mask_path),
        "shape_hw": list(s.shape_hw),
        "mpp": s.mpp,
        "regions": [asdict(r) for r in s.regions],
        "seconds": time.perf_counter() - t0,
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def region_boxes(meta: dict[str, Any]) -> list[Box]:
    return [(r["x0"], r["y0"], r["x1"], r["y1"]) for r in meta["regions"]]


def big_box(meta: dict[str, Any], side: int) -> Box:
    """A ``side`` x ``side`` box centred on the largest region, inside the slide."""
    largest = max(meta["regions"], key=lambda r: r["area"])
    h, w = meta["shape_hw"]
    cx, cy = (largest["x0"] + largest["x1"]) // 2, (largest["y0"] + largest["y1"]) // 2
    x0 = min(max(cx - side // 2, 0), w - side)
    y0 = min(max(cy - side // 2, 0), h - side)
    return (x0, y0, x0 + side, y0 + side)


# -- budgets, densities, grids ---------------------------------------------------------------
def task_shape(budget: str, box: Box) -> tuple[int, int]:
    """``HxW`` fixed or ``dynamic:SHORTxLONG`` (the paper's rule) for a level-0 box."""
    return budget_shape(budget, (box[3] - box[1], box[2] - box[0]))


def make_grid(box: Box, shape_hw: tuple[int, int], density: str) -> torch.Tensor:
    """Uniform grid, or eq. 3 on a density with 90% of its mass on a central 10% of the region.

    Shape: ``-> (h, w, 2)``.
    """
    if density == "uniform":
        return uniform_grid(box, shape_hw)
    hd, wd = density_shape(shape_hw)  # d at 1/4 of the task size
    d = torch.ones(1, 1, hd, wd)
    bh, bw = max(1, round(hd * math.sqrt(0.1))), max(1, round(wd * math.sqrt(0.1)))
    r0, c0 = (hd - bh) // 2, (wd - bw) // 2
    d[..., r0 : r0 + bh, c0 : c0 + bw] = 0.9 * (hd * wd - bh * bw) / (0.1 * bh * bw)
    return saliency_to_grid(d / d.sum(), box, shape_hw)[0]


# -- workers (one process per measurement) ----------------------------------------------------
def _rss_mb() -> float:
    """This process's own peak RSS (VmHWM), MiB."""
    return peak_mb()


def _inherited_mb() -> float:
    """What this benchmark used to report: ``ru_maxrss``, which keeps the parent's RSS at fork."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sampler_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Time the slide-backed sampler over ``cfg['boxes']``; count tiles; IoU on the mask."""
    torch.set_num_threads(1)  # OpenMP spin-waits wreck timings on a busy 2-core machine
    boxes = [tuple(b) for b in cfg["boxes"]]
    grids = [make_grid(b, task_shape(cfg["budget"], b), cfg["density"]) for b in boxes]
    rss0 = _rss_mb()
    times, first = [], None
    with open_slide(cfg["slide"]) as slide:
        for _ in range(cfg["repeats"]):
            sampler = SlideSampler(
                slide,
                level_choice=cfg["choice"],
                source_mpp=0.5,
                cache_tiles=cfg["cache_tiles"],
                threads=cfg["threads"],
            )
            t0 = time.perf_counter()
            outs = [sampler.sample(g) for g in grids]
            times.append(time.perf_counter() - t0)
            sampler.close()
            first = first or (sampler.stats, [o.levels for o in outs])
        assert first is not None
        stats, levels = first
        footprints = [footprint_tiles(slide, g, lv) for g, lv in zip(grids, levels, strict=True)]
        union = {(k, r, c) for fp in footprints for k, t in fp.items() for r, c in t.tolist()}
        minimum = len(union)
        per_region = sum(len(t) for fp in footprints for t in fp.values())
        downsamples = slide.level_downsamples
    rss = _rss_mb()
    iou, iou_ds = mask_iou(cfg["mask"], boxes, grids, levels, downsamples, cfg["iou_min_ds"])
    return {
        "seconds": statistics.median(times),
        "all_seconds": times,
        "tiles": stats.tiles_decoded,
        "minimum": minimum,
        "minimum_per_region_sum": per_region,
        "bytes": stats.bytes_read,
        "pixels": stats.pixels_decoded,
        "per_level": stats.as_dict()["per_level"],
        "rss_mb": rss,
        "rss_import_mb": rss0,
        "ru_maxrss_mb": _inherited_mb(),
        "iou": iou,
        "iou_downsamples": iou_ds,
    }


def mask_iou(
    mask_path: str,
    boxes: list[Box],
    grids: list[torch.Tensor],
    levels: list[torch.Tensor],
    downsamples: tuple[float, ...],
    min_ds: int,
) -> tuple[float, list[int]]:
    """IoU(Y', Y), classes summed over regions, and the output downsamples used.

    Y: labels sampled nearest at the same points from the mask level of the same downsample
    as each image sample; Y': their exact inverse at the output downsample
    ``max(auto, min_ds)``; compared with the mask at that downsample.
    """
    inter, union, used = np.zeros(N_CLASSES), np.zeros(N_CLASSES), set()
    with open_mask(mask_path) as mask:
        to_mask = torch.tensor(
            [best_level_for_downsample(mask.level_downsamples, d) for d in downsamples]
        )
        sampler = SlideSampler(mask, source_level=0)
        for box, grid, lv in zip(boxes, grids, levels, strict=True):
            labels = sampler.sample_labels(grid, levels=to_mask[lv]).values
            ds = max(auto_output_downsample(grid), min_ds)
            used.add(ds)
            pred, ref = _inverse_and_reference(mask, box, grid, labels, ds)
            for c in range(N_CLASSES):
                inter[c] += np.sum((pred == c) & (ref == c))
                union[c] += np.sum((pred == c) | (ref == c))
    present = union > 0
    return float(np.mean(inter[present] / union[present])), sorted(used)


def _inverse_and_reference(
    mask: Any, box: Box, grid: torch.Tensor, labels: torch.Tensor, ds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Y' (exact inverse of sampled labels) and Y (mask pixels) on the output frame at ``ds``."""
    frame = OutputFrame.for_region(box, ds)
    x0, y0 = frame.origin_xy
    pred = invert_labels(labels, grid, frame.shape_hw, num_classes=N_CLASSES,
                         origin_xy=(x0, y0), downsample=ds)  # fmt: skip
    fh, fw = frame.shape_hw
    centres = uniform_grid((x0, y0, x0 + fw * ds, y0 + fh * ds), frame.shape_hw)
    ref_level = best_level_for_downsample(mask.level_downsamples, ds)
    ref = SlideSampler(mask, source_level=ref_level).sample_labels(centres).values.numpy()
    return pred, ref


def baseline_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Read the box at the source level whole, convert to float, grid_sample; time and RSS."""
    torch.set_num_threads(1)
    box = tuple(cfg["box"])
    grid = make_grid(box, tuple(cfg["shape"]), cfg["density"])
    rss0, times = _rss_mb(), []
    with open_slide(cfg["slide"]) as slide:
        level = SlideSampler(slide, source_mpp=0.5).source_level
        ds = slide.level_downsamples[level]
        size = (math.ceil((box[2] - box[0]) / ds), math.ceil((box[3] - box[1]) / ds))
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            pixels = slide.read_region(box[:2], level, size)
            image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255.0
            sample_image(image, grid[None], origin_xy=box[:2], downsample=ds)
            times.append(time.perf_counter() - t0)
            del pixels, image
    return {
        "seconds": statistics.median(times),
        "rss_mb": _rss_mb(),
        "rss_import_mb": rss0,
        "ru_maxrss_mb": _inherited_mb(),
    }


def run_worker(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh process (in this one with ``inprocess``: no RSS)."""
    if cfg.get("inprocess"):
        worker = {"sampler": sampler_worker, "baseline": baseline_worker}[kind]
        return {**worker(json.loads(json.dumps(cfg))), "rss_mb": float("nan")}
    cmd = [sys.executable, __file__, "--worker", kind, json.dumps(cfg)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the baseline, measured or extrapolated by area -------------------------------------------
def baseline(cfg: dict[str, Any], box: Box, shape: tuple[int, int], ds: float) -> dict[str, Any]:
    """Measure the baseline on ``box`` when it fits, else on two centred sub-boxes and
    extrapolate in proportion to area (flagged ``extrapolated``): time at the sub-boxes'
    pixel rate, RSS as the import footprint plus their largest RSS growth per pixel."""
    area = (box[2] - box[0]) * (box[3] - box[1]) / ds**2
    if area * 3 * 5 <= BASELINE_MAX_BYTES:  # uint8 read + float32 copy
        return {
            **run_worker("baseline", {**cfg, "box": box, "shape": shape}),
            "extrapolated": False,
        }
    subs = []
    for frac in (0.25, 0.5):
        side = math.sqrt(BASELINE_MAX_BYTES / 15 * frac) * ds
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        sub = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
        res = run_worker("baseline", {**cfg, "box": sub, "shape": shape})
        subs.append({**res, "area": (sub[2] - sub[0]) * (sub[3] - sub[1]) / ds**2})
    rate = sum(r["seconds"] for r in subs) / sum(r["area"] for r in subs)
    growth = max((r["rss_mb"] - r["rss_import_mb"]) / r["area"] for r in subs)
    rss0 = subs[0]["rss_import_mb"]
    return {"seconds": rate * area, "rss_mb": rss0 + growth * area, "rss_import_mb": rss0,
            "extrapolated": True, "sub_boxes": subs}  # fmt: skip


# -- the table -------------------------------------------------------------------------------
def main() -> None:
    args = parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.worker:
        worker = {"sampler": sampler_worker, "baseline": baseline_worker}[args.worker[0]]
        print(json.dumps(worker(json.loads(args.worker[1]))))
        return
    side, region_side = (8192, 4096) if args.quick else (100_000, 40_000)
    budgets = ["256x256"] if args.quick else ["dynamic:80x800", "256x256", "512x512"]
    meta = ensure_slide(Path(args.workdir), side)
    scopes = {"big": [big_box(meta, region_side)], "all": region_boxes(meta)}
    if args.quick:
        scopes.pop("all")
    base = {
        "slide": meta["slide_path"],
        "mask": meta["mask_path"],
        "repeats": args.repeats,
        "threads": args.threads,
        "cache_tiles": args.cache_tiles,
        "inprocess": False,
        "iou_min_ds": args.iou_min_downsample,
    }
    with open_slide(meta["slide_path"]) as slide:
        src = SlideSampler(slide, source_mpp=0.5).source_level
        ds_src = slide.level_downsamples[src]
        print(
            f"slide {meta['slide_path']}: {side}x{side} px, 0.25 um/px, level downsamples "
            f"{[round(d, 3) for d in slide.level_downsamples]}; source level {src} "
            f"(mpp {0.25 * ds_src:g}); {len(meta['regions'])} regions; big box "
            f"{scopes['big'][0]}; repeats {args.repeats}, threads {args.threads}; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
            flush=True,
        )
    rows = []
    for scope, boxes in scopes.items():
        for budget in budgets:
            # the baseline reads the same pixels whatever the density: measured once per budget
            base_row = baseline_scope(base, boxes, budget, ds_src)
            for density in ("uniform", "concentrated"):
                cfg = {**base, "boxes": boxes, "budget": budget, "density": density}
                fixed = run_worker("sampler", {**cfg, "choice": "fixed"})
                adaptive = run_worker("sampler", {**cfg, "choice": "adaptive"})
                rows.append(
                    {
                        "scope": scope,
                        "budget": budget,
                        "density": density,
                        "fixed": fixed,
                        "adaptive": adaptive,
                        "baseline": base_row,
                    }
                )
                print_row(rows[-1], header=len(rows) == 1)
                old = [
                    rows[-1][k].get("ru_maxrss_mb", math.nan)
                    for k in ("baseline", "fixed", "adaptive")
                ]
                print(
                    f"{'':29}| old figure, ru_maxrss MB (keeps the parent's RSS at fork): "
                    f"base {old[0]:.0f} fixed {old[1]:.0f} adap {old[2]:.0f}"
                )
    print_legend(rows)
    Path(args.workdir, "bench_slide_sampler.json").write_text(json.dumps(rows, indent=1))


def baseline_scope(base: dict[str, Any], boxes: list[Box], budget: str, ds: float) -> dict:
    """The baseline over every box of a scope: summed time, largest peak RSS."""
    cfg = {**base, "density": "uniform"}
    runs = [baseline(cfg, b, task_shape(budget, b), ds) for b in boxes]
    return {
        "seconds": sum(r["seconds"] for r in runs),
        "rss_mb": max(r["rss_mb"] for r in runs),
        "ru_maxrss_mb": max(r.get("ru_maxrss_mb", math.nan) for r in runs),
        "extrapolated": sum(r["extrapolated"] for r in runs),
        "boxes": len(runs),
    }


HEADER = (
    "scope budget    density      | tiles decoded/minimum | MB read      | wall s (median)      |"
    " speedup      | peak RSS MB         | adaptive | IoU(Y',Y)     D\n"
    "                             |   fixed      adaptive |  fixed  adap | base    fixed  adap  |"
    "  fixed  adap | base   fixed  adap  | levels   |  fixed   adap"
)


def print_row(row: dict[str, Any], header: bool) -> None:
    """One table line; ``*`` marks a baseline extrapolated by area (see the legend)."""
    if header:
        print(HEADER)
    f, a, b = row["fixed"], row["adaptive"], row["baseline"]
    star = "*" if b["extrapolated"] else " "
    levels = ",".join(sorted(a["per_level"], key=int))
    print(
        f"{row['scope']:5} {row['budget'].replace('dynamic:', 'dyn'):9} {row['density']:12} | "
        f"{f['tiles']:6}/{f['minimum']:<6} {a['tiles']:4}/{a['minimum']:<4} | "
        f"{f['bytes'] / 2**20:6.1f} {a['bytes'] / 2**20:5.2f} | "
        f"{b['seconds']:6.2f}{star} {f['seconds']:6.2f} {a['seconds']:5.2f} | "
        f"{b['seconds'] / f['seconds']:5.1f}x {b['seconds'] / a['seconds']:5.0f}x | "
        f"{b['rss_mb']:5.0f}{star} {f['rss_mb']:6.0f} {a['rss_mb']:5.0f} | {levels:8} | "
        f"{f['iou']:.4f} {a['iou']:.4f} {','.join(map(str, a['iou_downsamples']))}",
        flush=True,
    )


def print_legend(rows: list[dict[str, Any]]) -> None:
    extrapolated = {(r["scope"], r["budget"]): r["baseline"] for r in rows}
    notes = [f"{s}/{b}: {v['extrapolated']} of {v['boxes']} boxes" for (s, b), v in
             extrapolated.items() if v["extrapolated"]]  # fmt: skip
    print(
        "baseline = read the box at the source level whole (read_region), to float, grid_sample;"
        " measured once per scope and budget (same pixels for both densities).\n"
        "* = baseline extrapolated in proportion to area from two measured centred sub-boxes"
        " (time at their pixel rate; RSS = import footprint + their RSS growth per pixel),"
        f" because its float32 copy would exceed {BASELINE_MAX_BYTES >> 30} GiB: "
        + ("; ".join(notes) or "none")
        + "\nminimum = distinct tiles holding a pixel with non-zero bilinear weight at the chosen"
        " levels, over all boxes of the scope (a tile shared by two neighbouring region boxes"
        " counts once, though the LRU may have evicted it before the next region);\npeak RSS"
        " includes the interpreter and torch; IoU at output downsample D ="
        " max(auto, --iou-min-downsample)."
    )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", default="/tmp/wsi-bench", help="where the slide is cached")
    p.add_argument(
        "--quick",
        action="store_true",
        help="an 8192^2 slide, 256x256 only (~1 min once written)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per measurement, median reported (default 3; quick 1)",
    )
    p.add_argument("--threads", type=int, default=2, help="decoder threads (and torch threads)")
    p.add_argument("--cache-tiles", type=int, default=256, help="sampler LRU cache size")
    p.add_argument(
        "--iou-min-downsample",
        type=int,
        default=8,
        help="IoU(Y', Y) output downsample: max(auto, this); keeps the inverse fast",
    )
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    main()
