"""`wsi-seg infer SLIDE -o mask.tif`: tissue regions -> model -> exact inverse -> slide outputs.

Each tissue region is predicted in warped space (``predict_region``), then inverted exactly
onto an on-disk canvas in the slide frame at one output downsample D; the outputs (mask,
sidecars, GeoJSON, preview) are written from the canvas and appear together.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from wsi_downsample._types import Region
from wsi_downsample.errors import ConfigError

__all__ = [
    "InferSettings",
    "RegionResult",
    "TissueRegions",
    "find_regions",
    "infer_slide",
    "predict_regions",
    "slide_downsample",
]

log = logging.getLogger("wsi_seg.infer")

#: a region whose mean sample spacing exceeds this cannot resolve glands: flagged
MAX_SPACING_UM = 16.0
#: tissue components own output pixels up to this many tissue-mask pixels beyond their edge;
#: region boxes are padded by as much
OWNER_DILATE_PX = 2
Predictor = Callable[[Any, Region], Any]
"""``predict(slide, region) -> RegionPrediction`` (probs, grid, density, task_hw, stats,
timings)."""


@dataclass(frozen=True)
class InferSettings:
    """How one slide is inferred and what is written (the CLI's options)."""

    output_downsample: int | str = "auto"
    geojson: bool | Path = True
    preview: bool | Path = True
    probabilities: Path | None = None
    sampler: str | None = None
    device: str = "auto"
    slide_mpp: float | None = None
    backend: str = "auto"
    overwrite: bool = False
    tile_size: int = 512
    min_region_area_um2: float = 50_000.0
    progress: bool | None = None
    model_info: dict[str, Any] = field(default_factory=dict)


class TissueRegions(NamedTuple):
    """Regions (boxes padded to cover their tissue), their component ids and the owner map."""

    regions: list[Region]
    components: list[int]
    owner: Any  # io.canvas.TissueOwner


class RegionResult(NamedTuple):
    """One predicted region: the prediction, its auto D and its mean sample spacing (um)."""

    region: Region
    component: int
    prediction: Any
    auto_downsample: int
    spacing_um: float


def find_regions(slide: Any, *, min_area_um2: float = 50_000.0) -> TissueRegions:
    """Tissue components as level-0 boxes padded by ``OWNER_DILATE_PX`` tissue-mask pixels
    (at least one mask pixel, so a box covers its tissue), with the owner map of
    overlapping boxes. A plain image is one region covering it; no tissue gives none."""
    from scipy import ndimage as ndi

    from wsi_downsample.io.canvas import TissueOwner
    from wsi_downsample.slides.tissue import tissue_mask

    w, h = slide.dimensions
    if slide.backend == "image":
        owner = TissueOwner(np.ones((1, 1), np.int32), float(max(w, h)), 0)
        return TissueRegions([Region(0, 0, 0, w, h, float(w * h))], [1], owner)
    mask, ds = tissue_mask(slide, min_area_um2=min_area_um2)
    labels, _ = ndi.label(mask, structure=np.ones((3, 3)))
    counts = np.bincount(labels.ravel())
    pad = OWNER_DILATE_PX * ds
    boxes = []
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        x0, y0 = (
            max(0, math.floor(sl[1].start * ds - pad)),
            max(0, math.floor(sl[0].start * ds - pad)),
        )
        x1, y1 = min(w, math.ceil(sl[1].stop * ds + pad)), min(h, math.ceil(sl[0].stop * ds + pad))
        boxes.append((y0, x0, x1, y1, float(counts[k]) * ds * ds, k))
    boxes.sort()
    regions = [Region(i, b[1], b[0], b[2], b[3], b[4]) for i, b in enumerate(boxes)]
    owner = TissueOwner(labels, ds, OWNER_DILATE_PX)
    return TissueRegions(regions, [b[5] for b in boxes], owner)


def predict_regions(
    slide: Any, tissue: TissueRegions, predict: Predictor, mpp: float
) -> list[RegionResult]:
    """Run the model on every region; flag regions whose spacing exceeds the limit."""
    from wsi_downsample.deformation import auto_output_downsample, local_spacing

    out = []
    for region, component in zip(tissue.regions, tissue.components, strict=True):
        pred = predict(slide, region)
        grid = _as_numpy(pred.grid)
        spacing = float(local_spacing(_torch(grid)).mean()) * mpp if grid.size > 2 else math.inf
        if spacing > MAX_SPACING_UM:
            log.warning(
                "%s: region %d (%dx%d px): mean sample spacing %.1f um exceeds %.0f um; the "
                "budget cannot resolve it, do not trust its mask",
                Path(getattr(slide, "path", "slide")).name,
                region.index,
                region.size_wh[0],
                region.size_wh[1],
                spacing,
                MAX_SPACING_UM,
            )
        auto = auto_output_downsample(grid)
        out.append(RegionResult(region, component, pred, auto, spacing))
    return out


def slide_downsample(results: Sequence[RegionResult], fallback: int) -> int:
    """Area-weighted median of the regions' auto D (``fallback`` without regions)."""
    if not results:
        return fallback
    values = np.array([r.auto_downsample for r in results], np.float64)
    weights = np.array([max(r.region.area, 1.0) for r in results], np.float64)
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return int(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _as_numpy(value: Any) -> np.ndarray:
    from wsi_downsample.deformation._tiles import as_numpy

    return as_numpy(value)


def _torch(array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))


def infer_slide(
    slide_path: str | Path,
    output: str | Path,
    predict: Predictor,
    classes: Sequence[tuple[int, str, Sequence[int]]],
    settings: InferSettings,
) -> dict[str, Any]:
    """Infer one slide and write its output set; returns the summary record.

    ``predict(slide, region)`` gives a ``RegionPrediction``; ``classes`` are
    ``(value, name, colour)`` (value 0 = background). Outputs are named by the STEM rule
    (see ``io.sidecars.output_paths``) and appear together or not at all.
    """
    from pipelines.infer_outputs import write_outputs
    from wsi_downsample.io.atomic import check_outputs
    from wsi_downsample.io.sidecars import output_paths
    from wsi_downsample.slides import open_slide, require_mpp

    start = time.perf_counter()
    paths = output_paths(
        output,
        geojson=settings.geojson,
        preview=settings.preview,
        probabilities=settings.probabilities,
    )
    check_outputs(paths.all(), settings.overwrite)
    asked = _parse_downsample(settings.output_downsample)
    timings: dict[str, float] = {}
    with open_slide(slide_path, backend=settings.backend, mpp=settings.slide_mpp) as slide:
        mpp = float(np.mean(require_mpp(slide)))
        t0 = time.perf_counter()
        tissue = find_regions(slide, min_area_um2=settings.min_region_area_um2)
        timings["tissue"] = time.perf_counter() - t0
        results = predict_regions(slide, tissue, predict, mpp)
        for r in results:
            for key, value in getattr(r.prediction, "timings", {}).items():
                timings[key] = timings.get(key, 0.0) + float(value)
        fallback = max(1, 2 ** int(math.log2(max(1.0, tissue.owner.mask_downsample))))
        auto = slide_downsample(results, fallback)
        inverse_d = auto if asked in ("auto", 1) else int(asked)
        output_d = 1 if asked == 1 else inverse_d
        summary = write_outputs(
            slide,
            paths,
            results,
            tissue,
            classes,
            settings,
            mpp=mpp,
            inverse_downsample=inverse_d,
            output_downsample=output_d,
            timings=timings,
        )
    summary["slide"] = str(slide_path)
    summary["auto_downsample"] = auto
    summary["timings"]["total"] = time.perf_counter() - start
    return summary


def _parse_downsample(value: int | str) -> int | str:
    if value == "auto":
        return "auto"
    try:
        d = int(value)
    except (TypeError, ValueError):
        d = 0
    if d < 1:
        raise ConfigError(
            f"output downsample must be 'auto' or an integer >= 1, got {value!r}",
            hint={"output_downsample": "auto"},
        )
    return d


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; others pass through (checked)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked but CUDA is not available", hint={"device": "cpu"}
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(
            f"unknown device {device!r}; use auto, cpu or cuda[:N]", hint={"device": "auto"}
        )
    return device


def _amp_segmenter(model: Any) -> None:
    """Run only the segmenter under float16 autocast (CUDA): the density, the grid (level-0
    coordinates up to ~1e5 px) and the sampling stay in full precision."""
    import torch
    from torch import nn

    class _Autocast(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner, self.multiple = inner, getattr(inner, "multiple", 1)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cuda", dtype=torch.float16):
                return self.inner(image)

    if type(model.segmenter).__name__ != "_Autocast":  # wrap once
        model.segmenter = _Autocast(model.segmenter)


def model_predictor(model: Any, device: str) -> Predictor:
    """``predict(slide, region)`` of a composed model: a slide sampler with the model's level
    choice and source mpp per region, no gradients, AMP (float16 segmenter) on CUDA."""
    import torch

    from wsi_downsample.deformation import SlideSampler

    if device.startswith("cuda"):
        _amp_segmenter(model)

    def predict(slide: Any, region: Region) -> Any:
        with (
            SlideSampler(
                slide, level_choice=model.level_choice, source_mpp=model.source_mpp
            ) as sampler,
            torch.inference_mode(),
        ):
            return model.predict_region(slide, region, sampler=sampler)

    return predict


def use_sampler(model: Any, name: str | None) -> None:
    """Swap the model's density for ``uniform`` (a diagnostic); ``edge`` needs labels."""
    if name is None or name == getattr(model, "density_name", None):
        return
    if name == "edge":
        raise ConfigError(
            "the edge sampler needs the slide's labels, which inference does not have; "
            "use the model's own density or uniform",
            hint={"sampler": "uniform"},
        )
    if name != "uniform":
        raise ConfigError(f"unknown sampler {name!r}; use uniform", hint={"sampler": "uniform"})
    log.warning("sampler uniform: the segmenter was trained on warped images (diagnostic only)")
    from wsi_downsample.deformation import get_density

    model.density = get_density("uniform").to(model.device)
    model.density_name = "uniform"


def model_classes(config: Any) -> list[tuple[int, str, tuple[int, int, int]]]:
    """``(value, name, colour)`` of the config's class table."""
    return [(c.value, c.name, tuple(c.color)) for c in config.classes]


def run_infer(
    slide: str | Path,
    output: str | Path,
    model_path: str | Path,
    settings: InferSettings,
    *,
    checkpoint: str = "best",
    loaded: Any = None,
) -> dict[str, Any]:
    """Infer one slide with a trained run directory or checkpoint (``--model``)."""
    import dataclasses

    from pipelines.run_dir import load_model

    device = resolve_device(settings.device)
    if loaded is None:
        loaded = load_model(model_path, checkpoint=checkpoint, device=device)
    model = loaded.model.eval()
    use_sampler(model, settings.sampler)
    info = {
        "path": str(model_path),
        "checkpoint": checkpoint,
        "arch": loaded.config.model.arch,
        "density": getattr(model, "density_name", None),
        "budget": str(getattr(model, "budget", "")),
        "level_choice": model.level_choice,
        "source_mpp": model.source_mpp,
        "device": device,
    }
    settings = dataclasses.replace(
        settings,
        model_info=info,
        min_region_area_um2=loaded.config.data.min_region_area_um2,
    )
    predict = model_predictor(model, device)
    return infer_slide(slide, output, predict, model_classes(loaded.config), settings)
