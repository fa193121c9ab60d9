"""Small synthetic slide sets and tiny configs for the training tests (CPU, seconds)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

#: tiny but complete: learned density, small budget and kernel, hrnet_w18_small at stride 4
TINY = {
    "sampler": {"name": "learned", "dynamic": "32x256", "sigma": 2.0, "radius": 4},
    "model": {"arch": "hrnet_w18_small", "stem_stride": 4},
    "train": {
        "epochs": 1,
        "steps": 1,
        "batch_size": 2,
        "threads": 1,
        "val_output_downsample": 8.0,
    },
}


def make_slides(out_dir: Path, count: int = 2, seed: int = 0) -> Path:
    """``count`` synthetic 1536 x 2048 slides (default preset) and their manifest."""
    from pipelines.synth import run_synth

    return run_synth(out_dir, (1536, 2048), count=count, seed=seed, progress=False)


def write_config(path: Path, **sections: dict[str, Any]) -> Path:
    """TINY with ``sections`` merged in (section by section, key by key)."""
    data = {k: dict(v) for k, v in TINY.items()}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(data))
    return path


def rewrite_manifest(manifest: Path, out: Path, **columns: list[Any]) -> Path:
    """A copy of a manifest (paths made absolute) with columns replaced or added per row."""
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("slide_path", "mask_path"):
            row[key] = str((manifest.parent / row[key]).resolve())
    for name, values in columns.items():
        for row, value in zip(rows, values, strict=True):
            row[name] = value
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out
