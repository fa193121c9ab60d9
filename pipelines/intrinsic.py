"""`wsi-seg intrinsic`: the paper's motivational study — how much of the label survives a sampler.

For every tissue region of every manifest row, the label is read at the source level, sampled
with the chosen sampler at the budget (nearest), mapped back by the inverse, and compared with
itself: IoU(Y', Y), the intrinsic upsampling error. Intersections and unions are summed over
the manifest; classes absent from the whole set are left out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import IGNORE, Config
from pipelines.manifest import ManifestRow, read_manifest
from wsi_downsample.errors import ConfigError

__all__ = ["IntrinsicSettings", "run_intrinsic"]


@dataclass(frozen=True)
class IntrinsicSettings:
    """What the study runs: sampler, budget (one of three forms), inverse, source mpp."""

    sampler: str = "uniform"
    budget: str = "dynamic:80x800"
    blur: float = 4.0
    floor: float = 0.25
    density_fraction: float = 0.25
    sigma: float = 4.25
    radius: int = 10
    inverse: str = "exact"
    source_mpp: float = 0.5
    slide_mpp: float | None = None
    model: str | None = None  # learned: the trained run (its density net and grid code)


def run_intrinsic(
    manifest: str | Path, config: Config, settings: IntrinsicSettings, model: Any = None
) -> dict:
    """Run the study over a manifest; return a JSON-able report (totals and per row).

    ``model`` (a ``DownsampleSegmenter``, sampler ``learned``): its density net on each
    region's X_lr and its own grid code give the grid; the segmenter is not run.
    """
    rows = read_manifest(manifest, config, require_masks=True, slide_mpp=settings.slide_mpp)
    total = np.zeros((config.num_classes, config.num_classes + 1), dtype=np.int64)
    per_row, sampled, pixels = [], 0, 0
    for row in rows:
        counts, row_sampled, row_pixels, n_regions = _row_counts(row, config, settings, model)
        total += counts
        sampled, pixels = sampled + row_sampled, pixels + row_pixels
        per_row.append(
            _summary(counts, config)
            | {
                "slide_id": row.slide_id,
                "regions": n_regions,
                "sampled_fraction": row_sampled / max(row_pixels, 1),
            }
        )
    report = {
        "manifest": str(Path(manifest).resolve()),
        "settings": settings.__dict__,
        "metric": "IoU(Y',Y): intrinsic upsampling error, label vs inverse(sample(label))",
        "absent_classes": "classes with no pixel in labels or reconstructions are left out",
        "sampled_fraction": sampled / max(pixels, 1),
        **_summary(total, config),
        "counts": total.tolist(),  # (C, C + 1): rows label, columns Y', last: no Y'
        "rows": per_row,
    }
    return report


def _summary(counts: np.ndarray, config: Config) -> dict[str, Any]:
    from wsi_downsample.metrics import iou_from_counts

    iou = iou_from_counts(counts)
    names = config.class_names
    per_class = {
        names.get(i, str(i)): (None if np.isnan(v) else float(v)) for i, v in enumerate(iou)
    }
    present = iou[~np.isnan(iou)]
    return {"miou": float(present.mean()) if present.size else None, "iou": per_class}


def _row_counts(
    row: ManifestRow, config: Config, settings: IntrinsicSettings, model: Any = None
) -> tuple[np.ndarray, int, int, int]:
    """Sum of confusion counts over the row's tissue regions, with sample and pixel totals."""
    from wsi_downsample.deformation.budget import budget_shape, parse_budget
    from wsi_downsample.intrinsic import intrinsic_counts
    from wsi_downsample.slides import find_tissue_regions, open_mask, open_slide

    budget = parse_budget(settings.budget)
    lut = config.label_lut(row.label_map, source=str(row.mask_path))
    counts = np.zeros((config.num_classes, config.num_classes + 1), dtype=np.int64)
    sampled = pixels = 0
    mpp = row.mpp if row.mpp is not None else settings.slide_mpp
    with (
        open_slide(row.slide_path, mpp=mpp) as slide,
        open_mask(row.mask_path, slide=slide) as mask,
    ):
        regions = find_tissue_regions(slide, min_area_um2=config.data.min_region_area_um2)
        level = _source_level(mask, settings.source_mpp)
        ds = mask.level_downsamples[level]
        for region in regions:
            labels = _region_labels(mask, region, level, ds, lut, row, config)
            if model is not None:
                frame = float(getattr(mask, "frame_downsample", 1.0)) * ds
                grid = _learned_grid(model, slide, region)
                _check_budget(grid.shape[:2], labels.shape, model.budget, row, region.index)
                counts += _learned_counts(grid, region, labels, frame, settings, config)
                shape = grid.shape[:2]
                sampled, pixels = sampled + shape[0] * shape[1], pixels + labels.size
                continue
            shape = budget_shape(budget, labels.shape)
            _check_budget(shape, labels.shape, budget, row, region.index)
            counts += intrinsic_counts(
                labels,
                shape,
                sampler=settings.sampler,
                blur=settings.blur,
                floor=settings.floor,
                density_fraction=settings.density_fraction,
                sigma=settings.sigma,
                radius=settings.radius,
                inverse=settings.inverse,
                num_classes=config.num_classes,
                ignore_index=IGNORE,
            )
            sampled += shape[0] * shape[1]
            pixels += labels.size
    return counts, sampled, pixels, len(regions)


def _learned_grid(model: Any, slide: Any, region: Any) -> Any:
    """A trained density's level-0 grid for a region (region orientation): the model's own
    ``prepare_region`` -> ``density_of`` (the net on X_lr) -> ``grid_of``.

    Shape: ``-> (h, w, 2)`` float64.
    """
    import torch

    from wsi_downsample.models import prepare_region

    with torch.inference_mode():
        item = prepare_region(
            slide, region, budget=model.budget, density_fraction=model.density_fraction
        )
        grid = model.grid_of(model.density_of(item), item)
        return item.view.grid_from_view(grid.cpu()).to(torch.float64)


def _learned_counts(
    grid: Any,
    region: Any,
    labels: np.ndarray,
    label_ds: float,
    settings: IntrinsicSettings,
    config: Config,
) -> np.ndarray:
    """IoU(Y',Y) counts of a grid: the label array (the region box at ``label_ds`` slide
    pixels per pixel) sampled at the grid (nearest) and inverted back onto itself."""
    import torch

    from wsi_downsample.deformation.inverse import invert_labels, scatter_nearest_inverse
    from wsi_downsample.deformation.sampler import sample_labels
    from wsi_downsample.metrics import confusion_counts

    origin = torch.tensor([region.x0, region.y0], dtype=torch.float64)
    local = (grid - origin) / label_ds  # label-array pixel coordinates
    lab = torch.from_numpy(np.array(labels, copy=True))
    sampled = sample_labels(lab[None], local[None])[0].numpy()
    if settings.inverse == "scatter":
        recon = scatter_nearest_inverse(sampled, local.numpy(), labels.shape)
    else:
        recon = invert_labels(
            sampled, local, labels.shape, num_classes=config.num_classes, ignore_index=IGNORE
        )
    return confusion_counts(recon, labels, config.num_classes, ignore_index=IGNORE)


def _check_budget(
    shape: tuple[int, int], region_hw: tuple[int, ...], budget: Any, row: ManifestRow, index: int
) -> None:
    """A budget must downsample: refuse one with more samples than the region has pixels."""
    from wsi_downsample.errors import BudgetError

    if shape[0] * shape[1] > region_hw[0] * region_hw[1]:
        raise BudgetError(
            f"{row.slide_path}: budget {budget} asks for {shape[0]}x{shape[1]} samples but "
            f"region #{index} has only {region_hw[0]}x{region_hw[1]} px at the source mpp; "
            "choose a smaller budget (or a finer source mpp)"
        )


def _source_level(mask: Any, source_mpp: float) -> int:
    """The mask level closest to the source mpp (finer wins ties)."""
    mpp0 = mask.mpp.x
    errors = [abs(np.log(mpp0 * ds / source_mpp)) for ds in mask.level_downsamples]
    return int(np.argmin(np.round(errors, 9)))


def _region_labels(
    mask: Any,
    region: Any,
    level: int,
    ds: float,
    lut: np.ndarray,
    row: ManifestRow,
    config: Config,
) -> np.ndarray:
    """The region's labels at ``level``, translated by the label map; unmapped values fail."""
    frame = getattr(mask, "frame_downsample", 1)  # masks may be stored at 1/N of the slide
    x0, y0 = int(region.x0 / frame), int(region.y0 / frame)
    w = max(1, int(round((region.x1 - region.x0) / frame / ds)))
    h = max(1, int(round((region.y1 - region.y0) / frame / ds)))
    raw = np.asarray(mask.read_region((x0, y0), level, (w, h)))
    values = set(np.unique(raw).tolist())
    unknown = sorted(values - config.mapped_values(row.label_map))
    if unknown:
        raise ConfigError(
            f"{row.mask_path}: mask values {unknown} are not in label map "
            f"{row.label_map or '(identity)'}; map them to a class or 'ignore' in the config"
        )
    return lut[raw]


def intrinsic_from_options(
    manifest: Path,
    config_path: Path | None,
    *,
    size_hw: str | tuple[int, int] | None,
    dynamic: str | None,
    downsample: float | None,
    sampler: str | None,
    blur: float | None,
    density_fraction: float | None,
    inverse: str,
    source_mpp: float | None,
    slide_mpp: float | None,
    output: Path | None,
    overwrite: bool = False,
    model: Path | None = None,
) -> dict:
    """Resolve CLI options over the config (flags win), run the study, write the report."""
    from pipelines.config import load_config
    from wsi_downsample.io.atomic import check_outputs, write_json_atomic

    if output is not None:
        check_outputs([output], overwrite)
    given = [b for b in (size_hw, dynamic, downsample) if b is not None]
    if model is not None or sampler == "learned":
        learned = _learned_settings(model, config_path, sampler, bool(given), inverse)
        config, settings, loaded = learned
        settings = replace(settings, source_mpp=source_mpp or settings.source_mpp)
        settings = replace(settings, slide_mpp=slide_mpp)
        report = run_intrinsic(manifest, config, settings, model=loaded.model)
        if output is not None:
            write_json_atomic(output, report, overwrite=overwrite)
        return report
    config = load_config(config_path)
    if len(given) > 1:
        raise ConfigError("give one budget: --size HxW, --dynamic SHORTxLONG or --downsample K")
    settings = IntrinsicSettings(
        sampler=sampler or config.sampler.name,
        budget=_budget_text(size_hw, dynamic, downsample) if given else _config_budget(config),
        blur=config.sampler.edge_blur if blur is None else blur,
        floor=config.sampler.edge_floor,
        density_fraction=density_fraction or config.sampler.density_fraction,
        sigma=config.sampler.sigma,
        radius=config.sampler.radius,
        inverse=inverse,
        source_mpp=source_mpp or config.data.source_mpp,
        slide_mpp=slide_mpp,
    )
    if settings.sampler not in ("uniform", "edge"):
        raise ConfigError(
            f"sampler {settings.sampler!r} needs a trained model; intrinsic takes uniform or edge"
        )
    report = run_intrinsic(manifest, config, settings)
    if output is not None:
        write_json_atomic(output, report, overwrite=overwrite)
    return report


def _learned_settings(
    model: Path | None, config_path: Path | None, sampler: str | None, budget: bool, inverse: str
) -> tuple[Config, IntrinsicSettings, Any]:
    """The trained run's config (unless one is given), settings and loaded model: its
    budget, density size and kernel are the model's."""
    from pipelines.config import load_config
    from pipelines.run_dir import load_model

    if model is None:
        raise ConfigError(
            "the learned sampler needs a trained model (its density network)",
            hint={"model": "RUN_DIR"},
        )
    if sampler not in (None, "learned"):
        raise ConfigError(
            f"a trained model gives the learned sampler, not {sampler!r}; drop the model or "
            "choose the learned sampler",
            hint={"sampler": "learned"},
        )
    if budget:
        raise ConfigError("the learned sampler uses the model's own budget; give no budget")
    loaded = load_model(model)
    net = loaded.model
    config = load_config(config_path) if config_path is not None else loaded.config
    settings = IntrinsicSettings(
        sampler="learned",
        budget=str(net.budget),
        density_fraction=net.density_fraction,
        sigma=net.sigma,
        radius=net.radius,
        inverse=inverse,
        source_mpp=net.source_mpp,
        model=str(model),
    )
    return config, settings, loaded


def _budget_text(
    size_hw: str | tuple[int, int] | None, dynamic: str | None, downsample: float | None
) -> str:
    if isinstance(size_hw, tuple):
        return f"fixed:{size_hw[0]}x{size_hw[1]}"
    if size_hw is not None:
        return f"fixed:{size_hw}"
    if dynamic is not None:
        return f"dynamic:{dynamic}"
    return f"downsample:{downsample:g}"


def _config_budget(config: Config) -> str:
    s = config.sampler
    return _budget_text(s.size, s.dynamic, s.downsample)


def format_intrinsic(report: dict) -> str:
    """Short human-readable summary of an intrinsic report."""
    st = report["settings"]
    miou = "n/a (no tissue region found)" if report["miou"] is None else f"{report['miou']:.4f}"
    lines = [
        f"IoU(Y',Y) — sampler {st['sampler']}, budget {st['budget']}, inverse {st['inverse']}, "
        f"source mpp {st['source_mpp']:g}",
        f"  mIoU {miou} over present classes; sampled fraction {report['sampled_fraction']:.5f}",
    ]
    for name, iou in report["iou"].items():
        lines.append(f"  {name:>12}: {'absent' if iou is None else f'{iou:.4f}'}")
    for row in report["rows"]:
        miou = "n/a" if row["miou"] is None else f"{row['miou']:.4f}"
        lines.append(f"  {row['slide_id']}: mIoU {miou} ({row['regions']} region(s))")
    return "\n".join(lines)
