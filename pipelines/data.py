"""Manifest -> tissue regions -> a Dataset of grid-free region inputs, and per-process readers.

DataLoader workers (spawn; slides opened inside each worker) prepare what does not depend on
the density: the region's view (random flips), ``X_lr`` and the pooled label boundaries. The
training process, where the autograd graph lives, samples images and labels with the grid
through ``SlideSampler`` / ``LabelSampler`` kept open per slide (``OpenSlides``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from pipelines.config import Config
from pipelines.manifest import ManifestRow
from wsi_downsample._types import Region
from wsi_downsample.errors import CorruptSlideError, ManifestError, WsiSegError

__all__ = [
    "RegionRecord",
    "find_regions",
    "split_rows",
    "RegionDataset",
    "OpenSlides",
    "collate_items",
    "EpochIndices",
    "stain_jitter",
    "region_class_counts",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegionRecord:
    """One tissue region of one manifest row (plain values: pickles to spawn workers)."""

    slide_id: str
    slide_path: str
    mask_path: str
    mpp: float | None
    label_map: str | None
    region: Region


def split_rows(
    rows: list[ManifestRow], fold: int | None, manifest: Path | str
) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Training and validation rows: by ``split`` (train/val), or with ``fold`` K the rows of
    fold K validate and every other row with a fold trains (``split`` is then ignored)."""
    if fold is None:
        train = [r for r in rows if r.split == "train"]
        val = [r for r in rows if r.split == "val"]
    else:
        train = [r for r in rows if r.fold is not None and r.fold != fold]
        val = [r for r in rows if r.fold == fold]
    if not train:
        which = f"no row outside fold {fold}" if fold is not None else "no row with split=train"
        raise ManifestError(
            f"{manifest}: empty training set ({which}); mark rows split=train or give folds"
        )
    return train, val


def find_regions(
    rows: list[ManifestRow], config: Config, *, skip_errors: bool = False
) -> list[RegionRecord]:
    """Tissue regions of every row (``data.min_region_area_um2``); a failing slide aborts
    naming it, or is logged and skipped with ``skip_errors``."""
    from wsi_downsample.slides import find_tissue_regions, open_slide

    records: list[RegionRecord] = []
    for row in rows:
        try:
            with open_slide(row.slide_path, mpp=row.mpp) as slide:
                regions = find_tissue_regions(slide, min_area_um2=config.data.min_region_area_um2)
        except (WsiSegError, OSError) as exc:
            if not skip_errors:
                raise
            log.warning("skipping %s: %s", row.slide_path, exc)
            continue
        records += [
            RegionRecord(
                row.slide_id, str(row.slide_path), str(row.mask_path), row.mpp, row.label_map, r
            )
            for r in regions
        ]
    return records


class _ReaderCache:
    """A small LRU of open (slide, mask) pairs, one per process (never pickled)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._open: OrderedDict[str, tuple[Any, Any]] = OrderedDict()

    def get(self, record: RegionRecord) -> tuple[Any, Any]:
        from wsi_downsample.slides import open_mask, open_slide

        key = record.slide_path
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        slide = open_slide(record.slide_path, mpp=record.mpp)
        try:
            mask = open_mask(record.mask_path, slide=slide)
        except BaseException:
            slide.close()
            raise
        self._open[key] = (slide, mask)
        while len(self._open) > self.size:
            for reader in self._open.popitem(last=False)[1]:
                reader.close()
        return slide, mask


class RegionDataset(Dataset):
    """Region inputs for the model: ``{"index", "item"}`` with a ``PreparedRegion``.

    Flips are drawn from ``(seed, epoch, index)`` so a run is reproducible whatever the
    number of workers; call ``set_epoch`` before each epoch. With ``skip_errors`` a region
    whose slide fails gives ``{"index", "error"}`` instead (``collate_items`` drops it).
    """

    def __init__(
        self,
        records: list[RegionRecord],
        config: Config,
        *,
        train: bool,
        skip_errors: bool = False,
    ) -> None:
        from wsi_downsample.deformation import parse_budget

        self.records, self.train, self.skip_errors = records, train, skip_errors
        self.flips = train and config.train.flips
        self.seed, self.epoch = config.train.seed, 0
        s = config.sampler
        text = (
            f"fixed:{s.size}"
            if s.size
            else (f"dynamic:{s.dynamic}" if s.dynamic else f"downsample:{s.downsample:g}")
        )
        self.budget = parse_budget(text)
        self.density_fraction = s.density_fraction
        maps = {r.label_map for r in records}
        self.luts = {m: config.label_lut(m) for m in maps}
        self.known = {m: sorted(config.mapped_values(m)) for m in maps}
        self._readers: _ReaderCache | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_readers"] = None  # open readers stay in their process
        return state

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def readers(self, record: RegionRecord) -> tuple[Any, Any]:
        if self._readers is None:
            self._readers = _ReaderCache()
        return self._readers.get(record)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """``dataset[index]`` at the current epoch, or ``dataset[(epoch, index)]``."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        try:
            return {"index": index, "item": self._prepare(index, epoch)}
        except (WsiSegError, OSError) as exc:
            record = self.records[index]
            message = f"{record.slide_path} (region {record.region.index}): {exc}"
            if not self.skip_errors:
                if isinstance(exc, WsiSegError):
                    raise
                raise CorruptSlideError(
                    f"{message}; check the file or leave the slide out",
                    hint={"skip_errors": True},
                ) from exc
            return {"index": index, "error": message}

    def _prepare(self, index: int, epoch: int) -> Any:
        from wsi_downsample.models import RegionView, prepare_region

        record = self.records[index]
        slide, mask = self.readers(record)
        rng = np.random.default_rng((self.seed, epoch, index))
        flip_x, flip_y = (bool(v) for v in rng.integers(0, 2, 2)) if self.flips else (False,) * 2
        view = RegionView.of(
            record.region, landscape=self.budget.mode != "fixed", flip_x=flip_x, flip_y=flip_y
        )
        return prepare_region(
            slide,
            record.region,
            budget=self.budget,
            density_fraction=self.density_fraction,
            view=view,
            mask=mask,
            lut=self.luts[record.label_map],
            known_values=self.known[record.label_map],
        )


class EpochIndices(Sampler):
    """Yields ``(epoch, index)`` from a (distributed) sampler, so that workers that outlive an
    epoch (persistent workers hold their own dataset copy) still draw that epoch's flips."""

    def __init__(self, shard: Any) -> None:
        self.shard, self.epoch = shard, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.shard.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, int(i)) for i in self.shard)

    def __len__(self) -> int:
        return len(self.shard)


def collate_items(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep a batch as a list (regions differ in size); log and drop failed regions."""
    for entry in batch:
        if "error" in entry:
            log.warning("skipping region: %s", entry["error"])
    return [entry for entry in batch if "item" in entry]


class OpenSlides:
    """Slide and label samplers kept open in the training process (a small LRU per slide)."""

    def __init__(
        self, *, level_choice: str, source_mpp: float, size: int = 4, threads: int = 2
    ) -> None:
        self.level_choice, self.source_mpp, self.threads = level_choice, source_mpp, threads
        self._cache = _ReaderCache(size)
        self._samplers: dict[str, tuple[Any, Any]] = {}

    def samplers(self, record: RegionRecord, luts: dict, known: dict) -> tuple[Any, Any]:
        """``(image_sampler, label_sampler)`` for a region's slide."""
        from wsi_downsample.deformation import SlideSampler
        from wsi_downsample.models import LabelSampler

        slide, mask = self._cache.get(record)
        entry = self._samplers.get(record.slide_path)
        if entry is None or entry[0].slide is not slide:
            image = SlideSampler(
                slide,
                level_choice=self.level_choice,  # type: ignore[arg-type]
                source_mpp=self.source_mpp,
                threads=self.threads,
            )
            labels = LabelSampler(
                mask,
                source_mpp=self.source_mpp,
                lut=luts[record.label_map],
                known_values=known[record.label_map],
            )
            entry = self._samplers[record.slide_path] = (image, labels)
        return entry


def stain_jitter(image: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random H&E stain jitter: scale and shift each stain's optical density (HED space).

    Differentiable in ``image`` (so gradients still reach the grid).

    Shape: ``(3, h, w)`` in [0, 1] -> same.
    """
    from skimage.color import hed_from_rgb, rgb_from_hed

    if strength <= 0:
        return image
    to_hed = torch.as_tensor(hed_from_rgb, dtype=image.dtype, device=image.device)
    to_rgb = torch.as_tensor(rgb_from_hed, dtype=image.dtype, device=image.device)
    od = -torch.log(image.clamp_min(1e-6)).permute(1, 2, 0) @ to_hed
    scale = 1 + strength * (2 * torch.rand(3, generator=generator) - 1)
    shift = strength * 0.1 * (2 * torch.rand(3, generator=generator) - 1)
    od = od * scale.to(od) + shift.to(od)
    return torch.exp(-(od @ to_rgb)).clamp(0, 1).permute(2, 0, 1)


def region_class_counts(
    records: list[RegionRecord], config: Config, *, max_downsample: float = 8.0
) -> np.ndarray:
    """Pixels per class inside the regions' boxes, read from the coarsest mask level at most
    ``max_downsample`` level-0 pixels per pixel (counts of that level; ignored values
    dropped). The frequencies ``loss.class_weights: balanced`` is computed from.

    Shape: ``-> (num_classes,)`` int64.
    """
    from wsi_downsample.slides import open_mask, open_slide

    counts = np.zeros(256, np.int64)
    by_slide: dict[str, list[RegionRecord]] = {}
    for record in records:
        by_slide.setdefault(record.slide_path, []).append(record)
    for group in by_slide.values():
        first = group[0]
        with open_slide(first.slide_path, mpp=first.mpp) as slide:
            mask = open_mask(first.mask_path, slide=slide)
            try:
                scales = [mask.frame_downsample * d for d in mask.level_downsamples]
                level = max(
                    (k for k, d in enumerate(scales) if d <= max_downsample), key=scales.__getitem__
                )
                lut, array = config.label_lut(first.label_map), mask.level_array(level)
                for rec in group:
                    r, d = rec.region, scales[level]
                    y0, x0, y1, x1 = (int(v // d) for v in (r.y0, r.x0, -r.y1, -r.x1))
                    block = np.asarray(array[y0:-y1, x0:-x1])
                    block = block[..., 0] if block.ndim == 3 else block
                    counts += np.bincount(lut[block.ravel()], minlength=256)[:256]
            finally:
                mask.close()
    return counts[: config.num_classes]
