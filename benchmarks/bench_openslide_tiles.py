"""OpenSlide vs tiffslide backend on the same tiles: the slide sampler and raw ``read_tile``.

On a synthetic JPEG-tiled Aperio-style slide (written once into ``--workdir``), samples the
largest tissue region with a uniform dynamic 80x800 grid at the fixed source level (cold tile
cache, one decoder thread), and decodes a block of level-0 tiles one by one, with each
backend in turn; prints medians and the OpenSlide / tiffslide ratio.

    python benchmarks/bench_openslide_tiles.py --side 20480 --workdir /tmp/wsi-bench
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wsi_downsample.deformation.budget import budget_shape  # noqa: E402
from wsi_downsample.deformation.grid import uniform_grid  # noqa: E402
from wsi_downsample.deformation.slide_sampler import SlideSampler  # noqa: E402
from wsi_downsample.slides import open_slide  # noqa: E402


def ensure_slide(workdir: Path, side: int) -> tuple[Path, tuple[int, int, int, int]]:
    """The synthetic slide (written once) and its largest region's level-0 box."""
    from wsi_downsample.synthetic import write_synthetic_slide

    folder = workdir / f"openslide_tiles_{side}"
    box_file = folder / "box.txt"
    if not box_file.exists():
        s = write_synthetic_slide(
            folder, (side, side), seed=0, name=f"tiles{side}", mpp=0.25, compression="jpeg"
        )
        r = max(s.regions, key=lambda r: r.area)
        box_file.write_text(f"{s.slide_path}\n{r.x0} {r.y0} {r.x1} {r.y1}\n")
    path, box = box_file.read_text().splitlines()
    x0, y0, x1, y1 = (int(v) for v in box.split())
    return Path(path), (x0, y0, x1, y1)


def time_sampler(path: Path, backend: str, box: tuple[int, int, int, int], repeats: int) -> dict:
    grid = uniform_grid(box, budget_shape("dynamic:80x800", (box[3] - box[1], box[2] - box[0])))
    times = []
    with open_slide(path, backend=backend) as slide:
        for _ in range(repeats):
            sampler = SlideSampler(slide, level_choice="fixed", source_mpp=0.5, threads=1)
            t0 = time.perf_counter()
            sampler.sample(grid)
            times.append(time.perf_counter() - t0)
            tiles = sampler.stats.tiles_decoded
            sampler.close()
    return {"seconds": statistics.median(times), "tiles": tiles}


def time_tiles(path: Path, backend: str, n: int, repeats: int) -> float:
    with open_slide(path, backend=backend) as slide:
        rows, cols = slide.tile_grid_hw(0)
        keys = [(0, r, c) for r in range(min(rows, n)) for c in range(min(cols, n))]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for key in keys:
                slide.read_tile(*key)
            times.append((time.perf_counter() - t0) / len(keys))
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", default="/tmp/wsi-bench")
    p.add_argument("--side", type=int, default=20480, help="slide side in level-0 pixels")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiles", type=int, default=16, help="read_tile: an N x N block of tiles")
    p.add_argument(
        "--read-region",
        action="store_true",
        help="OpenSlide through read_region only (the path of formats without native tiles)",
    )
    args = p.parse_args()
    if args.read_region:
        from wsi_downsample.slides.openslide import OpenSlideReader

        OpenSlideReader.NATIVE_VENDORS = frozenset()
    torch.set_num_threads(1)
    path, box = ensure_slide(Path(args.workdir), args.side)
    print(f"{path} ({args.side}^2, JPEG 256^2 tiles); region box {box}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    res = {}
    for backend in ("tiffslide", "openslide"):
        with open_slide(path, backend=backend) as slide:
            native = slide._tiles is not None  # noqa: SLF001 - reported, not used
        res[backend] = {
            **time_sampler(path, backend, box, args.repeats),
            "tile_ms": 1e3 * time_tiles(path, backend, args.tiles, args.repeats),
            "native": native,
        }
    print("| backend | native TIFF tiles | sampler 80x800 fixed, s | tiles | read_tile ms |")
    print("|---|---|---|---|---|")
    for backend, r in res.items():
        print(f"| {backend} | {r['native']} | {r['seconds']:.2f} | {r['tiles']} "
              f"| {r['tile_ms']:.2f} |")  # fmt: skip
    ts, os_ = res["tiffslide"], res["openslide"]
    print(f"ratio openslide / tiffslide: sampler {os_['seconds'] / ts['seconds']:.1f}x, "
          f"read_tile {os_['tile_ms'] / ts['tile_ms']:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
