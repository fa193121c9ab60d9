"""The training loop: epochs of (density -> grid -> sample -> segment -> joint loss), validation,
metrics rows, atomic ``last``/``best`` checkpoints, exact resume."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipelines import distributed as ddp
from pipelines.config import IGNORE, Config
from pipelines.data import (
    EpochIndices,
    OpenSlides,
    RegionDataset,
    collate_items,
    find_regions,
    split_rows,
    stain_jitter,
)
from pipelines.run_dir import build_model, save_checkpoint, write_metrics
from wsi_downsample.errors import CorruptSlideError, WsiSegError

__all__ = ["TrainingDivergedError", "Trainer", "batch_loss", "peak_rss_mb"]

log = logging.getLogger(__name__)
BEST_METRIC = "val_miou_full_resolution"


class TrainingDivergedError(WsiSegError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def peak_rss_mb() -> float:
    """This process's own high-water resident memory (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@dataclass
class Trainer:
    """Everything one training process holds; ``fit`` runs the remaining epochs."""

    config: Config
    run_dir: Path
    device: torch.device
    core: Any  # DownsampleSegmenter
    model: Any  # the same, wrapped in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: Any
    seg_loss: Any
    train_set: RegionDataset
    val_set: RegionDataset | None
    loader: Any
    shard: Any
    slides: OpenSlides
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    best: float = -math.inf
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.train.epochs

    @classmethod
    def create(
        cls,
        manifest: str | Path,
        config: Config,
        run_dir: Path,
        device: torch.device,
        *,
        fold: int | None = None,
        skip_errors: bool = False,
    ) -> Trainer:
        from monai.utils import set_determinism

        from pipelines.manifest import read_manifest
        from wsi_downsample.losses import SegmentationLoss

        rows = read_manifest(manifest, config, require_masks=True)
        train_rows, val_rows = split_rows(rows, fold, manifest)
        train_set = RegionDataset(
            find_regions(train_rows, config, skip_errors=skip_errors),
            config,
            train=True,
            skip_errors=skip_errors,
        )
        if len(train_set) == 0:
            from wsi_downsample.errors import ManifestError

            raise ManifestError(f"{manifest}: no tissue region in the training slides")
        val_records = find_regions(val_rows, config, skip_errors=skip_errors)
        val_set = (
            RegionDataset(val_records, config, train=False, skip_errors=skip_errors)
            if val_records
            else None
        )
        set_determinism(seed=config.train.seed)
        core = build_model(config).to(device)
        _cuda_options(core, config, device)
        model = core
        if ddp.is_distributed():
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            model = DistributedDataParallel(core, device_ids=ids)
        t = config.train
        optimizer = torch.optim.Adam(_param_groups(core, t), lr=t.lr, weight_decay=t.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, t.lr_step, gamma=t.lr_gamma)
        loader, shard = _loader(train_set, config)
        steps = len(loader) if t.steps is None else t.steps  # > len(loader): passes cycle
        slides = OpenSlides(level_choice=core.level_choice, source_mpp=core.source_mpp)
        core.grid_jitter = t.grid_jitter
        if t.stain_jitter > 0:
            gen = torch.Generator().manual_seed(t.seed)
            core.augment = lambda image: stain_jitter(image, t.stain_jitter, gen)
        seg = SegmentationLoss(
            config.loss.segmentation, ignore_index=IGNORE, weight=_class_weights(train_set, config)
        ).to(device)
        return cls(
            config,
            run_dir,
            device,
            core,
            model,
            optimizer,
            scheduler,
            seg,
            train_set,
            val_set,
            loader,
            shard,
            slides,
            steps,
        )

    def state(self) -> dict[str, Any]:
        """What ``last`` holds besides the model: optimiser, scheduler, position, RNG, rows."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "rows": self.rows,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, payload: dict[str, Any]) -> None:
        """Continue from a ``last`` checkpoint (at most one epoch of work is lost)."""
        self.core.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.epoch, self.step = int(payload["epoch"]), int(payload["step"])
        self.best, self.rows = float(payload["best"]), list(payload["rows"])
        torch.set_rng_state(payload["torch_rng"])

    def fit(self, *, progress: bool = False) -> None:
        """Run the remaining epochs; validate every ``val_every`` epochs and after the last
        one (unless ``val_every`` exceeds the epochs). ``best`` is the best-scoring epoch, or
        the latest one while nothing has been scored."""
        epochs = self.config.train.epochs
        for epoch in range(self.epoch, epochs):
            row = self.train_epoch(epoch, progress)
            self.scheduler.step()
            every = self.config.train.val_every
            due = (epoch + 1) % every == 0 or (epoch + 1 == epochs and every <= epochs)
            if self.val_set is not None and due:
                from pipelines.validation import validate

                row |= validate(self.core, self.val_set, self.slides, self.config)
            row["peak_rss_mb"] = round(peak_rss_mb(), 1)
            self.epoch = epoch + 1
            self.rows.append(row)
            self._checkpoint(row)

    def _checkpoint(self, row: dict[str, Any]) -> None:
        score = row.get(BEST_METRIC)
        if score is None:  # not validated (yet): best follows last until a score exists
            improved = self.best == -math.inf
        else:
            improved = not math.isnan(score) and score > self.best
        if improved and score is not None:
            self.best = float(score)
        if ddp.is_main():
            if improved:
                save_checkpoint(self.run_dir, "best", self.core, self.config, self.state())
            write_metrics(self.run_dir, self.rows)
            save_checkpoint(self.run_dir, "last", self.core, self.config, self.state())
            _tensorboard(self.run_dir, row)
        ddp.barrier()

    def train_epoch(self, epoch: int, progress: bool) -> dict[str, Any]:
        """One epoch (``steps_per_epoch`` batches); returns its metrics row."""
        from tqdm.auto import tqdm

        self.model.train()
        sums = {"loss": 0.0, "seg": 0.0, "edge": 0.0, "data_wait": 0.0, "sampling": 0.0}
        sums |= {"model": 0.0, "regions": 0.0, "steps": 0.0, "grad_seg": 0.0, "grad_density": 0.0}
        start = time.perf_counter()
        bar = tqdm(total=self.steps_per_epoch, disable=not progress, desc=f"epoch {epoch + 1}")
        passes = -(-self.steps_per_epoch // max(len(self.loader), 1))
        pass_index = 0
        batches = self._pass(epoch, pass_index, passes)
        for _ in range(self.steps_per_epoch):
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:  # the regions are used up: the next pass, new order and flips
                pass_index += 1
                batches = self._pass(epoch, pass_index, passes)
                batch = next(batches, None)
            if batch is None:
                break
            t1 = time.perf_counter()
            if not batch:
                continue
            parts = self.train_step(batch)
            t2 = time.perf_counter()
            sampling = parts["density_grid"] + parts["sample"]
            for key, value in (
                ("loss", parts["loss"]),
                ("seg", parts["seg"]),
                ("edge", parts["edge"]),
                ("grad_seg", parts["grad_norm_segmenter"]),
                ("grad_density", parts["grad_norm_density"]),
            ):
                sums[key] += value
            sums["data_wait"] += t1 - t0
            sums["sampling"] += sampling
            sums["model"] += t2 - t1 - sampling
            sums["regions"] += len(batch)
            sums["steps"] += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{parts['loss']:.4f}",
                regions_s=f"{sums['regions'] / (time.perf_counter() - start):.2f}",
            )
        bar.close()
        return self._train_row(epoch, sums, time.perf_counter() - start)

    def _pass(self, epoch: int, index: int, passes: int) -> Any:
        """An iterator over the loader for pass ``index`` of an epoch of ``passes`` passes
        (``train.steps`` above the number of batches): shuffling and flips are drawn for the
        pass ``epoch * passes + index``, so one pass per epoch is the plain epoch."""
        if index >= passes:
            return iter(())
        self.shard.set_epoch(epoch * passes + index)
        self.train_set.set_epoch(epoch * passes + index)
        return iter(self.loader)

    def _train_row(self, epoch: int, sums: dict[str, float], seconds: float) -> dict[str, Any]:
        totals = {k: ddp.all_reduce_sum(v) for k, v in sums.items()}
        n = max(totals["steps"], 1.0)
        return {
            "epoch": epoch + 1,
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": totals["loss"] / n,
            "train_seg_loss": totals["seg"] / n,
            "train_edge_loss": totals["edge"] / n,
            "grad_norm_segmenter": totals["grad_seg"] / n,
            "grad_norm_density": totals["grad_density"] / n,
            "regions": int(totals["regions"]),
            "seconds": round(seconds, 3),
            "regions_per_s": totals["regions"] / max(seconds, 1e-9),
            "data_wait_s_per_step": sums["data_wait"] / max(sums["steps"], 1.0),
            "sampling_s_per_step": sums["sampling"] / max(sums["steps"], 1.0),
            "model_s_per_step": sums["model"] / max(sums["steps"], 1.0),
        }

    def train_step(self, batch: list[dict[str, Any]]) -> dict[str, float]:
        """Loss, backward, clip, optimiser step; returns the loss parts and timings."""
        try:
            loss, parts = batch_loss(self.model, batch, self, self.step)
        except (OSError, CorruptSlideError) as exc:
            names = ", ".join(self.train_set.records[b["index"]].slide_path for b in batch)
            raise CorruptSlideError(
                f"reading {names} failed at step {self.step}: {exc}; check the slide or "
                "leave it out of the manifest"
            ) from exc
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms = _clip_gradients(self.core, self.config.train)
        self.optimizer.step()
        self.step += 1
        return parts | norms | {"loss": float(loss.detach())}

    def close(self) -> None:
        if self.loader is not None and hasattr(self.loader, "_iterator"):
            self.loader._iterator = None


def batch_loss(
    model: Any, batch: list[dict[str, Any]], trainer: Trainer, step: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """The joint loss of a batch: ``seg + gamma(step) * mean edge`` (edge: ``learned`` only)."""
    from wsi_downsample.losses import edge_loss, gamma_at
    from wsi_downsample.models import image_sampler

    data = trainer.train_set
    records = [data.records[b["index"]] for b in batch]
    pairs = [trainer.slides.samplers(r, data.luts, data.known) for r in records]
    items = [b["item"] for b in batch]
    out = model(items, [image_sampler(p[0]) for p in pairs], [p[1] for p in pairs])
    seg = trainer.seg_loss(out.logits.float(), out.labels)
    loss_cfg, gamma = trainer.config.loss, 0.0
    edge = torch.zeros((), device=seg.device)
    if trainer.core.density_name == "learned" and loss_cfg.gamma > 0:
        gamma = gamma_at(
            step,
            gamma=loss_cfg.gamma,
            schedule=loss_cfg.gamma_schedule,
            total_steps=trainer.total_steps,
            power=loss_cfg.gamma_power,
        )
        edges = [
            edge_loss(
                out.density[i : i + 1, :, :h, :w],
                out.edge_target[i : i + 1, :, :h, :w],
                scaling=loss_cfg.edge_scaling,
                floor=loss_cfg.edge_floor,
            )
            for i, (h, w) in enumerate(out.density_hw)
        ]
        edge = torch.stack(edges).mean()
    total = seg + gamma * edge
    if not bool(torch.isfinite(total)):
        names = ", ".join(f"{r.slide_id} region {r.region.index}" for r in records)
        raise TrainingDivergedError(
            f"loss is {float(total.detach())} at step {step} ({names}); training stopped and "
            "the last good checkpoint is kept; lower the learning rate or the edge weight",
            hint={"lr": trainer.config.train.lr / 10},
        )
    parts = {"seg": float(seg.detach()), "edge": float(edge.detach()), "gamma": gamma}
    return total, parts | out.timings


def _split_params(core: Any) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """The segmenter's parameters (everything but the density) and the density network's."""
    density = list(core.density.parameters())
    ids = {id(p) for p in density}
    return [p for p in core.parameters() if id(p) not in ids], density


def _clip_gradients(core: Any, train: Any) -> dict[str, float]:
    """Clip by ``train.grad_clip`` (all parameters under one norm, or the two networks apart
    with ``grad_clip_mode: per_part``); return both networks' norms before clipping (0 for a
    density without parameters) for metrics.csv: clipped together, a large edge-loss
    gradient shrinks the segmenter's step, and these columns show by how much."""
    parts = [[p for p in part if p.grad is not None] for part in _split_params(core)]
    zero = torch.zeros((), device=next(core.parameters()).device)
    norms = [  # one pass over the gradients, reused by the clip
        torch.nn.utils.get_total_norm([p.grad for p in part]) if part else zero for part in parts
    ]
    if train.grad_clip is not None:
        if train.grad_clip_mode == "per_part":
            for part, norm in zip(parts, norms, strict=True):
                torch.nn.utils.clip_grads_with_norm_(part, train.grad_clip, norm)
        else:
            total = torch.linalg.vector_norm(torch.stack(norms))
            torch.nn.utils.clip_grads_with_norm_(parts[0] + parts[1], train.grad_clip, total)
    seg, density = (float(n) for n in norms)
    return {"grad_norm_segmenter": seg, "grad_norm_density": density}


def _param_groups(core: Any, train: Any) -> list[dict[str, Any]]:
    """One Adam group, or two when ``train.deformation_lr`` sets the deformation network's
    own rate (the segmenter keeps ``train.lr``)."""
    if train.deformation_lr is None:
        return [{"params": list(core.parameters())}]
    rest, density = _split_params(core)
    groups = [{"params": rest}]
    if density:
        groups.append({"params": density, "lr": train.deformation_lr})
    return groups


def _class_weights(dataset: RegionDataset, config: Config) -> torch.Tensor | None:
    """``loss.class_weights``: None, or balanced weights from the training regions' labels."""
    from pipelines.data import region_class_counts
    from wsi_downsample.losses import class_weights_from_counts

    loss = config.loss
    if loss.class_weights == "none":
        return None
    counts = region_class_counts(dataset.records, config)
    weights = class_weights_from_counts(
        torch.from_numpy(counts), power=loss.class_weight_power, max_ratio=loss.class_weight_max
    )
    log.info("class weights %s from pixel counts %s", weights.tolist(), counts.tolist())
    return weights


def _loader(dataset: RegionDataset, config: Config) -> tuple[Any, Any]:
    """A MONAI DataLoader over a rank's shard (spawned workers), and its sampler."""
    from monai.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    t = config.train
    shard = EpochIndices(
        DistributedSampler(
            dataset, num_replicas=ddp.world_size(), rank=ddp.rank(), shuffle=True, seed=t.seed
        )
    )
    kwargs: dict[str, Any] = {}
    if t.num_workers > 0:
        kwargs = {"multiprocessing_context": "spawn", "persistent_workers": True}
    loader = DataLoader(
        dataset,
        batch_size=t.batch_size,
        sampler=shard,
        num_workers=t.num_workers,
        collate_fn=collate_items,
        **kwargs,
    )
    return loader, shard


def _cuda_options(core: Any, config: Config, device: torch.device) -> None:
    """AMP (bfloat16 autocast of the segmenter) and channels-last, on CUDA only."""
    if device.type != "cuda":
        return
    if config.train.amp:
        core.autocast_dtype = torch.bfloat16
    if config.train.channels_last:
        core.segmenter.to(memory_format=torch.channels_last)
        core.channels_last = True


def _tensorboard(run_dir: Path, row: dict[str, Any]) -> None:
    """TensorBoard scalars next to metrics.csv, when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return
    with SummaryWriter(str(run_dir / "tensorboard")) as writer:
        for key, value in row.items():
            if isinstance(value, int | float) and key != "epoch":
                writer.add_scalar(key, value, row["epoch"])
