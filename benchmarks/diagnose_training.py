"""Does a trained run generalise, or did it memorise its training samples?

Usage::

    python benchmarks/diagnose_training.py RUN MANIFEST [--slides SLIDE ...]

Prints warped-space IoU per class (prediction at the samples vs the labels sampled at the
same points) three ways:

1. ``train batches, train BN`` / ``eval BN``: the run's own training pipeline (its regions,
   flips, grid jitter) with BatchNorm on batch statistics and on running statistics. Equal
   numbers rule out a train/eval BatchNorm gap.
2. ``predict_region``: the inference path (infer's region boxes, no augmentation) on
   ``--slides`` (default: the manifest's train rows, then its val rows). A model that scores
   well in (1) and near zero here on its own training slides has memorised the exact sample
   points of its training grids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _line(name: str, counts: np.ndarray) -> str:
    from wsi_downsample.metrics import iou_from_counts, mean_iou

    iou = ", ".join(f"{v:.3f}" for v in iou_from_counts(counts))
    predicted = counts[:, : counts.shape[0]].sum(0).tolist()
    head = f"{name:28s} warped mIoU {mean_iou(counts):.4f}"
    return f"{head}  per class [{iou}]  predicted {predicted}"


def train_batches(run: Path, manifest: Path, scratch: Path) -> None:
    from pipelines.run_dir import config_from_dict, read_checkpoint
    from pipelines.trainer import Trainer
    from wsi_downsample.metrics import confusion_counts
    from wsi_downsample.models import image_sampler

    payload = read_checkpoint(run, checkpoint="last")
    config = config_from_dict(payload["config"], where=str(run))
    trainer = Trainer.create(manifest, config, scratch, torch.device("cpu"))
    trainer.core.load_state_dict(payload["model"])
    data, c = trainer.train_set, config.num_classes
    for mode in ("train", "eval"):
        trainer.core.train(mode == "train")
        counts = np.zeros((c, c + 1), np.int64)
        with torch.no_grad():
            for batch in trainer._pass(0, 0, 1):
                records = [data.records[b["index"]] for b in batch]
                pairs = [trainer.slides.samplers(r, data.luts, data.known) for r in records]
                out = trainer.core(
                    [b["item"] for b in batch],
                    [image_sampler(p[0]) for p in pairs],
                    [p[1] for p in pairs],
                )
                counts += confusion_counts(out.logits.argmax(1).numpy(), out.labels.numpy(), c)
        print(_line(f"train batches, {mode} BN", counts))


def predict_regions(run: Path, slides: list[Path], masks: list[Path]) -> None:
    from pipelines.infer import find_regions
    from pipelines.run_dir import load_model
    from wsi_downsample.deformation import SlideSampler
    from wsi_downsample.metrics import confusion_counts
    from wsi_downsample.models import LabelSampler
    from wsi_downsample.slides import open_mask, open_slide

    model = load_model(run, checkpoint="last").model
    c = model.num_classes
    for path, mask_path in zip(slides, masks, strict=True):
        counts = np.zeros((c, c + 1), np.int64)
        with open_slide(path) as slide, open_mask(mask_path, slide=slide) as mask:
            labels = LabelSampler(mask, source_mpp=model.source_mpp)
            for region in find_regions(slide).regions:
                with (
                    SlideSampler(
                        slide, level_choice=model.level_choice, source_mpp=model.source_mpp
                    ) as sampler,
                    torch.inference_mode(),
                ):
                    p = model.predict_region(slide, region, sampler=sampler)
                truth = labels(torch.as_tensor(np.asarray(p.grid), dtype=torch.float64)).numpy()
                counts += confusion_counts(np.asarray(p.probs).argmax(0), truth, c)
            labels.close()
        print(_line(f"predict_region {path.name}", counts))


def main() -> None:
    import csv
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--slides", nargs="*", type=Path, help="Manifest slide_path values.")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with args.manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = sorted((r for r in rows if r["split"] in ("train", "val")), key=lambda r: r["split"])
    if args.slides:
        rows = [r for r in rows if Path(r["slide_path"]) in args.slides]
    base = args.manifest.parent
    with tempfile.TemporaryDirectory() as scratch:
        train_batches(args.run, args.manifest, Path(scratch) / "run")
    predict_regions(
        args.run,
        [base / r["slide_path"] for r in rows],
        [base / r["mask_path"] for r in rows],
    )


if __name__ == "__main__":
    main()
