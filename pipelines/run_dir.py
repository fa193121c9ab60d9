"""A self-describing training run directory: config, metrics, atomic ``last``/``best`` checkpoints.

Layout of ``RUN_DIR``::

    config.yaml   the resolved configuration (every key, after flags)
    metrics.csv   one row per epoch (losses, validation scores, timings)
    last.pt       model, optimiser, scheduler, RNG, epoch: what ``--resume`` needs
    best.pt       the model at the best full-resolution validation mIoU

Each checkpoint also embeds the config, class table, architecture, density settings and
library versions, so ``load_model(RUN_DIR)`` (``wsi-seg infer --model RUN_DIR``) needs nothing
else. Every file is written atomically (temporary sibling + rename).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml

from pipelines.config import Config
from wsi_downsample.errors import ConfigError, OutputExistsError
from wsi_downsample.io.atomic import atomic_dir, atomic_path, write_text_atomic

__all__ = [
    "CHECKPOINTS",
    "FORMAT",
    "LoadedModel",
    "build_model",
    "config_to_dict",
    "config_from_dict",
    "check_run_dir",
    "prepare_run_dir",
    "save_checkpoint",
    "read_checkpoint",
    "load_model",
    "write_metrics",
    "read_metrics",
]

FORMAT = "wsi-seg-checkpoint/1"
CHECKPOINTS = ("best", "last")


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain (YAML/JSON-able) dict of a config; ``config_from_dict`` reverses it."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def config_from_dict(data: dict[str, Any], *, where: str = "checkpoint") -> Config:
    """Rebuild (and validate) a config from ``config_to_dict`` output."""
    from pipelines.config import _build, _validate

    config = _build(Config, data, where=f"{where}: ")
    _validate(config, where=where)
    return config  # type: ignore[no-any-return]


def _density_kwargs(config: Config, name: str) -> dict[str, Any]:
    if name == "edge":
        return {"blur": config.sampler.edge_blur, "floor": config.sampler.edge_floor}
    if name == "learned":
        d = config.deformation
        return {"widths": tuple(d.widths), "activation": d.activation}
    return {}


def build_model(config: Config, sampler: str | None = None):  # -> DownsampleSegmenter
    """The composed model a config describes, randomly initialised (nothing is downloaded).

    ``sampler`` overrides ``config.sampler.name`` (``uniform``, ``edge`` or ``learned``).
    """
    from wsi_downsample.deformation import get_density, parse_budget
    from wsi_downsample.models import DownsampleSegmenter, build_segmenter

    name = sampler or config.sampler.name
    s = config.sampler
    budget_text = (
        f"fixed:{s.size}"
        if s.size
        else f"dynamic:{s.dynamic}"
        if s.dynamic
        else f"downsample:{s.downsample:g}"
    )
    segmenter = build_segmenter(
        config.model.arch,
        config.num_classes,
        stem_stride=config.model.stem_stride,
        weights=config.model.weights,
    )
    return DownsampleSegmenter(
        segmenter,
        get_density(name, **_density_kwargs(config, name)),
        density_name=name,
        budget=parse_budget(budget_text),
        num_classes=config.num_classes,
        density_fraction=s.density_fraction,
        sigma=s.sigma,
        radius=s.radius,
        padding=s.padding,
        level_choice=s.level_choice,
        source_mpp=config.data.source_mpp,
        edge_sigma=config.loss.edge_sigma,
    )


def check_run_dir(path: Path, *, resume: bool, overwrite: bool) -> None:
    """Fail early: an existing run directory needs resuming or overwriting; resuming needs
    ``last.pt``."""
    path = Path(path)
    if resume:
        if not (path / "last.pt").is_file():
            raise ConfigError(
                f"{path}: nothing to resume (no last.pt); start the run without resuming",
                hint={"resume": False},
            )
    elif path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} exists already (a previous run?); resume it or replace it",
            hint={"resume": True, "overwrite": True},
        )


def prepare_run_dir(path: Path, config: Config, *, resume: bool, overwrite: bool) -> Path:
    """Create the run directory with its ``config.yaml``; refuse an existing one unless
    resuming (which needs its ``last.pt``) or overwriting (which replaces it whole)."""
    path = Path(path)
    check_run_dir(path, resume=resume, overwrite=overwrite)
    if resume:
        if not (path / "last.pt").is_file():
            raise ConfigError(
                f"{path}: nothing to resume (no last.pt); start the run without resuming",
                hint={"resume": False},
            )
        return path
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} exists already (a previous run?); resume it or replace it",
            hint={"resume": True, "overwrite": True},
        )
    with atomic_dir(path, overwrite=overwrite) as tmp:
        (tmp / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path


def _versions() -> dict[str, str]:
    from pipelines.run_record import versions

    out = versions()
    for name in ("timm", "monai"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is recorded, never fatal
            out[name] = "absent"
    return out


def save_checkpoint(
    run_dir: Path, which: str, model: Any, config: Config, state: dict[str, Any]
) -> Path:
    """Write ``which`` (``last`` or ``best``) atomically: weights, config, description, state."""
    payload = {
        "format": FORMAT,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config_to_dict(config),
        "classes": [dataclasses.asdict(c) for c in config.classes],
        "arch": {"name": config.model.arch, "stem_stride": config.model.stem_stride},
        "density": {
            "name": model.density_name,
            "budget": str(model.budget),
            "density_fraction": model.density_fraction,
            "sigma": model.sigma,
            "radius": model.radius,
            "padding": model.padding,
            "level_choice": model.level_choice,
            "source_mpp": model.source_mpp,
        },
        "versions": _versions(),
        **state,
    }
    path = Path(run_dir) / f"{which}.pt"
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | Path, *, checkpoint: str = "best") -> dict[str, Any]:
    """The checkpoint dict of a run directory (``best.pt`` or ``last.pt``) or a ``.pt`` file."""
    path = Path(path)
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"unknown checkpoint {checkpoint!r}; available: {list(CHECKPOINTS)}")
    file = path / f"{checkpoint}.pt" if path.is_dir() else path
    if not file.is_file():
        found = sorted(p.name for p in path.glob("*.pt")) if path.is_dir() else []
        raise ConfigError(
            f"{file}: no checkpoint there (found {found or 'none'}); give a training run "
            "directory or a .pt checkpoint file"
        )
    try:
        payload = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to users
        raise ConfigError(f"{file}: not a readable wsi-seg checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{file}: not a wsi-seg checkpoint (expected format {FORMAT})")
    payload["path"] = str(file)
    return payload


class LoadedModel(NamedTuple):
    """A model ready for inference, its config and the checkpoint's other fields."""

    model: Any
    config: Config
    meta: dict[str, Any]


def load_model(path: str | Path, *, checkpoint: str = "best", device: str = "cpu") -> LoadedModel:
    """Load a trained model from a run directory or a ``.pt`` file, in eval mode."""
    payload = read_checkpoint(path, checkpoint=checkpoint)
    config = config_from_dict(payload["config"], where=payload["path"])
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, weights=None),  # weights come from here
    )
    model = build_model(config, payload["density"]["name"])
    model.load_state_dict(payload["model"])
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k not in ("model", "optimizer", "scheduler")}
    return LoadedModel(model, config, meta)


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """(Re)write ``metrics.csv`` atomically; columns are the union of the rows' keys."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(Path(run_dir) / "metrics.csv", buffer.getvalue())


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    """Rows of ``metrics.csv`` (empty when there is none yet)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
