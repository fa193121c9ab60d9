"""Peak memory and wall time of writing one synthetic slide + mask at a given size.

Peak memory is this process's own VmHWM (/proc/self/status), not ``ru_maxrss``, which would
also hold the RSS of whatever started it (at fork). Runs in one process, spawns none.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import peak_mb  # noqa: E402


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="100000x100000", help="level-0 HxW (rows x cols)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--compression", default="jpeg", choices=["jpeg", "zlib"])
    parser.add_argument("--out", type=Path, default=None, help="keep the files here")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    from wsi_downsample.synthetic import write_synthetic_slide

    shape_hw = _size(args.size)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-synth-"))
    rss_before = peak_mb()
    start = time.perf_counter()
    slide = write_synthetic_slide(
        out,
        shape_hw,
        seed=args.seed,
        tile_size=args.tile_size,
        compression=args.compression,
        progress=args.progress or None,
    )
    wall = time.perf_counter() - start
    result = {
        "size_hw": list(shape_hw),
        "wall_s": round(wall, 2),
        "slide_mb": round(slide.slide_path.stat().st_size / 2**20, 1),
        "mask_mb": round(slide.mask_path.stat().st_size / 2**20, 1),
        "regions": len(slide.regions),
        "tissue_fraction": round(1 - slide.class_counts[0] / (shape_hw[0] * shape_hw[1]), 4),
        "peak_rss_mb_before": round(rss_before, 1),
        "peak_rss_mb": round(peak_mb(), 1),
    }
    print(json.dumps(result))
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
