"""`wsi-seg infer` on a large synthetic slide vs a uniform full-resolution sliding window.

Usage::

    wsi-seg demo -o out/demo                     # a cpu_demo-trained model and its data
    python benchmarks/bench_infer.py --model out/demo/runs/learned \\
        --train-manifest out/demo/slides/manifest.csv --work /tmp/bench_infer \\
        --size 100000x100000 --mpp 0.25 --threads 2 --out bench_infer.json

Each case runs in its own process (its own peak RSS, VmHWM): ``infer`` at
``--output-downsample auto`` and at ``1`` (wall time split as in the summary, GeoJSON
feature count), then the peer: the same architecture and stem trained at full resolution
(the source mpp) on the same slides for the same number of steps, run with MONAI's
``sliding_window_inference`` (roi 512) on a sub-region of the slide and extrapolated to the
slide's tissue area. Both methods' full-resolution mIoU are scored on that sub-region against
the synthetic mask (classes absent from both left out).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _miou(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    ious = []
    for c in range(num_classes):
        union = np.count_nonzero((pred == c) | (truth == c))
        if union:
            ious.append(np.count_nonzero((pred == c) & (truth == c)) / union)
    return float(np.mean(ious)) if ious else float("nan")


def _truth(mask_path: Path, box: list[int]) -> np.ndarray:
    """Level-0 labels of the synthetic mask in ``box`` (x0, y0, x1, y1)."""
    import tifffile
    import zarr

    x0, y0, x1, y1 = box
    with tifffile.TiffFile(mask_path) as tif:
        store = tif.series[0].aszarr(level=0)
        return np.asarray(zarr.open(store, mode="r")[y0:y1, x0:x1])


def _sub_box(summary: dict, side: int) -> list[int]:
    """A ``side`` square around the centre of the region with the most tissue."""
    region = max(summary["regions"], key=lambda r: r["tissue_area_um2"])
    x0, y0, x1, y1 = region["box_xyxy"]
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    return [cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2]


def case_infer(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``wsi-seg infer`` on the bench slide; its wall time, peak RSS and sub-region mIoU."""
    import torch
    from _memory import peak_mb, reset_peak

    from pipelines.infer import InferSettings, run_infer

    torch.set_num_threads(args.threads)
    work, d = Path(args.work), args.output_downsample
    out = work / f"bench_{d}.mask.ome.tif"
    from pipelines.run_dir import load_model

    reset_peak()
    t0 = time.perf_counter()
    loaded = load_model(args.model, checkpoint=args.checkpoint)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    settings = InferSettings(output_downsample=d, overwrite=True, device="cpu", progress=False)
    summary = run_infer(
        work / "bench.svs", out, args.model, settings, checkpoint=args.checkpoint, loaded=loaded
    )
    wall = time.perf_counter() - t0
    peak = peak_mb()
    box = _sub_box(summary, args.sub)
    scale = summary["output_downsample"]
    import tifffile
    import zarr

    with tifffile.TiffFile(out) as tif:
        arr = zarr.open(tif.series[0].aszarr(level=0), mode="r")
        x0, y0, x1, y1 = (v // scale for v in box)
        ours = np.asarray(arr[y0:y1, x0:x1])
    ours = np.repeat(np.repeat(ours, scale, 0), scale, 1)
    truth = _truth(work / "bench.mask.ome.tif", box)
    return {
        "case": f"infer D={d}",
        "wall_s": wall,
        "model_load_s": load_s,
        "peak_rss_mb": peak,
        "output_downsample": summary["output_downsample"],
        "inverse_downsample": summary["inverse_downsample"],
        "regions": len(summary["regions"]),
        "flagged_regions": summary["flagged_regions"],
        "tissue_area_um2": summary["tissue_area_um2"],
        "timings": summary["timings"],
        "bytes_decoded": summary["bytes_decoded"],
        "geojson_features": summary["geojson_features"],
        "sub_box_xyxy": box,
        "miou_full_resolution_sub": _miou(ours[: truth.shape[0], : truth.shape[1]], truth, 6),
    }


def _train_peer(args: argparse.Namespace, config: Any, steps: int) -> Any:
    """The same segmenter trained on random full-resolution crops of the training slides."""
    import torch

    from pipelines.manifest import read_manifest
    from wsi_downsample.models import build_segmenter
    from wsi_downsample.slides import find_tissue_regions, open_mask, open_slide

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net = build_segmenter(
        config.model.arch, config.num_classes, stem_stride=config.model.stem_stride
    )
    opt = torch.optim.AdamW(net.parameters(), lr=config.train.lr, weight_decay=1e-4)
    rows = read_manifest(args.train_manifest, config, require_masks=True, splits=["train"])
    opened = [(open_slide(r.slide_path), r) for r in rows]
    pools = [(s, open_mask(r.mask_path, slide=s), find_tissue_regions(s)) for s, r in opened]
    roi, batch = 512, config.train.batch_size
    net.train()
    for _ in range(steps):
        images, labels = [], []
        for _ in range(batch):
            slide, mask, regions = pools[rng.integers(len(pools))]
            reg = regions[rng.integers(len(regions))]
            x = int(rng.integers(reg.x0, max(reg.x0 + 1, reg.x1 - roi)))
            y = int(rng.integers(reg.y0, max(reg.y0 + 1, reg.y1 - roi)))
            images.append(np.asarray(slide.read_region((x, y), 0, (roi, roi)))[..., :3])
            labels.append(np.asarray(mask.read_region((x, y), 0, (roi, roi))))
        xb = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
        yb = torch.from_numpy(np.stack(labels).astype(np.int64))
        loss = torch.nn.functional.cross_entropy(net(xb), yb, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def case_peer(args: argparse.Namespace) -> dict[str, Any]:
    """Train the full-resolution peer, run a sliding window on the sub-region, extrapolate."""
    import torch
    from _memory import peak_mb, reset_peak
    from monai.inferers import sliding_window_inference

    from pipelines.run_dir import load_model
    from wsi_downsample.slides import open_slide
    from wsi_downsample.slides.tissue import tissue_mask

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, checkpoint=args.checkpoint)
    config = loaded.config
    steps = args.peer_steps or _model_steps(Path(args.model))
    t0 = time.perf_counter()
    net = _train_peer(args, config, steps)
    train_s = time.perf_counter() - t0
    infer_summary = json.loads(args.infer_summary)
    box = infer_summary["sub_box_xyxy"]
    work = Path(args.work)
    reset_peak()
    with open_slide(work / "bench.svs") as slide:
        factor = max(1, round(config.data.source_mpp / slide.mpp.x))  # level 0 -> source
        t0 = time.perf_counter()
        x0, y0, x1, y1 = box
        rgb = np.asarray(slide.read_region((x0, y0), 0, (x1 - x0, y1 - y0)))[..., :3]
        h, w = rgb.shape[0] // factor, rgb.shape[1] // factor
        small = rgb[: h * factor, : w * factor].reshape(h, factor, w, factor, 3).mean((1, 3))
        read_s = time.perf_counter() - t0
        x = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = sliding_window_inference(x, (512, 512), 2, net, overlap=0.25)
        model_s = time.perf_counter() - t0
        tissue, ds = tissue_mask(slide)
        sub = tissue[int(y0 / ds) : int(y1 / ds), int(x0 / ds) : int(x1 / ds)]
        fraction = float(sub.mean()) if sub.size else 1.0
        sub_um2 = (x1 - x0) * (y1 - y0) * slide.mpp.x * slide.mpp.y * max(fraction, 1e-6)
    pred = logits[0].argmax(0).numpy().astype(np.uint8)
    pred = np.repeat(np.repeat(pred, factor, 0), factor, 1)
    truth = _truth(work / "bench.mask.ome.tif", box)
    scale = infer_summary["tissue_area_um2"] / sub_um2
    return {
        "case": "peer sliding window",
        "train_steps": steps,
        "train_s": train_s,
        "sub_box_xyxy": box,
        "sub_tissue_fraction": fraction,
        "read_s_sub": read_s,
        "model_s_sub": model_s,
        "extrapolation_factor": scale,
        "wall_s_extrapolated": (read_s + model_s) * scale,
        "peak_rss_mb_sub": peak_mb(),
        "miou_full_resolution_sub": _miou(
            pred[: truth.shape[0], : truth.shape[1]], truth[: pred.shape[0], : pred.shape[1]], 6
        ),
    }


def _model_steps(run_dir: Path) -> int:
    """Optimiser steps of the model's training run (its metrics.csv), for the peer."""
    import csv

    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return int(rows[-1]["step"]) if rows else 1


def _subprocess(args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, *sys.argv[1:], *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _write_slide(args: argparse.Namespace) -> float:
    from wsi_downsample.synthetic import write_synthetic_slide

    work = Path(args.work)
    if (work / "bench.svs").is_file() and (work / "bench.mask.ome.tif").is_file():
        return 0.0
    work.mkdir(parents=True, exist_ok=True)
    h, w = (int(v) for v in args.size.lower().split("x"))
    t0 = time.perf_counter()
    write_synthetic_slide(work, (h, w), seed=100, name="bench", mpp=args.mpp, preset="budget")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="cpu_demo-trained run directory")
    parser.add_argument("--checkpoint", default="last", choices=["best", "last"])
    parser.add_argument("--train-manifest", required=True, help="the model's training set")
    parser.add_argument("--work", default="/tmp/bench_infer")
    parser.add_argument("--size", default="100000x100000", help="HxW of the bench slide")
    parser.add_argument("--mpp", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sub", type=int, default=4096, help="peer sub-region side (level 0)")
    parser.add_argument("--peer-steps", type=int, default=None, help="default: the model's")
    parser.add_argument("--out", default=None, help="append the JSON results here")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output-downsample", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--infer-summary", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case == "infer":
        args.output_downsample = (
            args.output_downsample
            if args.output_downsample == "auto"
            else int(args.output_downsample)
        )
        print(json.dumps(case_infer(args)))
        return
    if args.case == "peer":
        print(json.dumps(case_peer(args)))
        return
    synth_s = _write_slide(args)
    print(f"bench slide {args.size} at {args.mpp} um/px (written in {synth_s:.0f} s)", flush=True)
    auto = _subprocess(args, "--case", "infer", "--output-downsample", "auto")
    print(json.dumps(auto), flush=True)
    full = _subprocess(args, "--case", "infer", "--output-downsample", "1")
    print(json.dumps(full), flush=True)
    peer = _subprocess(args, "--case", "peer", "--infer-summary", json.dumps(auto))
    print(json.dumps(peer), flush=True)
    ratio = peer["wall_s_extrapolated"] / auto["wall_s"]
    print(
        f"infer auto: {auto['wall_s']:.1f} s, {auto['peak_rss_mb']:.0f} MB, D = "
        f"{auto['output_downsample']}, mIoU(sub) {auto['miou_full_resolution_sub']:.3f}, "
        f"{auto['geojson_features']} features; infer D=1: {full['wall_s']:.1f} s, "
        f"{full['peak_rss_mb']:.0f} MB; peer (extrapolated): {peer['wall_s_extrapolated']:.0f} s, "
        f"mIoU(sub) {peer['miou_full_resolution_sub']:.3f}; speed ratio {ratio:.1f}x"
    )
    if args.out:
        record = {
            "size": args.size,
            "mpp": args.mpp,
            "threads": args.threads,
            "synth_s": synth_s,
            "auto": auto,
            "one": full,
            "peer": peer,
            "ratio": ratio,
        }
        with open(args.out, "a") as handle:
            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
