"""Seconds per training step split into data wait / sampling / model, regions/s, peak RSS.

Usage::

    wsi-seg synth /tmp/bt --size 6144x8192 --count 3 --seed 0
    python benchmarks/bench_train.py --set /tmp/bt --steps 8 --out bench_train.jsonl

Each case (budget x stem stride x DataLoader workers) runs in its own process (its own
VmHWM), with ``torch.set_num_threads(--threads)``: one warm-up step, then ``--steps`` timed
steps of ``hrnet_w18_small``, ``learned`` density, batch 2. ``data_wait``: time blocked on the
DataLoader (region, X_lr, boundaries); ``sampling``: density + grid + slide/label sampling in
the training process; ``model``: segmenter forward + backward + optimiser step (the rest).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BUDGETS = {  # the demo budget (the synthetic set's settings) and the paper's
    "dynamic:40x400": {"dynamic": "40x400", "density_fraction": 1.0, "sigma": 1.5, "radius": 4},
    "dynamic:80x800": {"dynamic": "80x800", "density_fraction": 0.25, "sigma": 4.25, "radius": 10},
}


def one(case: dict) -> dict:
    """Run one case in this process and return its medians."""
    import torch

    from benchmarks._memory import peak_mb
    from pipelines.config import load_config
    from pipelines.trainer import Trainer

    torch.set_num_threads(case["threads"])
    overrides = {f"sampler.{k}": v for k, v in BUDGETS[case["budget"]].items()}
    overrides |= {
        "sampler.name": "learned",
        "model.stem_stride": case["stem"],
        "train.batch_size": 2,
        "train.num_workers": case["workers"],
        "train.threads": case["threads"],
    }
    config = load_config(None, overrides)
    manifest = Path(case["set"]) / "manifest.csv"
    trainer = Trainer.create(manifest, config, Path("/tmp"), torch.device("cpu"))
    trainer.core.train()
    rows, batches, regions, shapes, epoch = [], None, 0, set(), 0
    t_start = time.perf_counter()
    while len(rows) < case["steps"]:
        if batches is None:
            trainer.shard.set_epoch(epoch)
            batches, epoch = iter(trainer.loader), epoch + 1
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            batches = None
            continue
        t1 = time.perf_counter()
        parts = trainer.train_step(batch)
        t2 = time.perf_counter()
        if trainer.step == 1:  # warm-up (worker start, first tiles)
            t_start = time.perf_counter()
            continue
        sampling = parts["density_grid"] + parts["sample"]
        rows.append({"data_wait": t1 - t0, "sampling": sampling, "model": t2 - t1 - sampling})
        regions += len(batch)
        shapes |= {b["item"].task_hw for b in batch}
    seconds = time.perf_counter() - t_start
    trainer.close()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return case | {
        "s_per_step": sum(med.values()),
        **{f"{k}_s": v for k, v in med.items()},
        "regions_per_s": regions / seconds,
        "peak_rss_mb": peak_mb(),
        "task_hw": sorted(shapes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budgets", nargs="+", default=list(BUDGETS))
    parser.add_argument("--stems", nargs="+", type=int, default=[4, 1])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--out", default=None)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one(json.loads(args.case))))
        return
    for budget in args.budgets:
        for stem in args.stems:
            for workers in args.workers:
                case = {
                    "set": args.set,
                    "budget": budget,
                    "stem": stem,
                    "workers": workers,
                    "steps": args.steps,
                    "threads": args.threads,
                }
                done = subprocess.run(
                    [sys.executable, __file__, "--set", args.set, "--case", json.dumps(case)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                line = done.stdout.strip().splitlines()[-1]
                print(line, flush=True)
                if args.out:
                    with open(args.out, "a") as handle:
                        handle.write(line + "\n")


if __name__ == "__main__":
    main()
