"""`wsi-seg infer --slides manifest.csv -o OUT_DIR`: many slides, in-process or on Dask.

Each slide writes ``OUT_DIR/SLIDE_ID.mask.ome.tif`` and its sidecars (STEM rule); finished
slides are skipped; ``summary.csv`` lists every slide's status, seconds and areas. With
``workers > 1`` slides run in parallel on a Dask ``LocalCluster`` (one process per worker),
with ``scheduler`` on an existing cluster (e.g. dask-jobqueue's ``SLURMCluster``), and
``shard=(k, n)`` keeps every n-th slide from the k-th (0-based; SLURM job arrays).

On a SLURM cluster, start the workers with dask-jobqueue and pass the scheduler's address::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=4, memory="16GB", walltime="02:00:00")
    cluster.scale(jobs=8)
    print(cluster.scheduler_address)  # -> wsi-seg infer --slides m.csv -o out --scheduler ADDR

or run one shard per array task: ``wsi-seg infer --slides m.csv -o out
--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`` (``--array=0-<N-1>``; each writes
``summary.shard-K-of-N.csv``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pipelines.infer import InferSettings
from pipelines.manifest import ManifestRow
from wsi_downsample.errors import ConfigError, WsiSegError

__all__ = ["parse_shard", "run_batch", "slide_outputs", "summary_row"]

log = logging.getLogger("wsi_seg.batch")

_MODELS: dict[tuple[str, str, str], Any] = {}  # per process: model path -> LoadedModel


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` (0 <= K < N) -> ``(K, N)``."""
    if text is None:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        k, n = -1, 0
    if not 0 <= k < n:
        raise ConfigError(
            f"shard {text!r} is not K/N with 0 <= K < N (e.g. 0/4 for the first of 4 jobs)",
            hint={"shard": "0/1"},
        )
    return k, n


def slide_outputs(out_dir: Path, row: ManifestRow) -> Path:
    """The mask path of a manifest row: ``OUT_DIR/SLIDE_ID.mask.ome.tif``."""
    return out_dir / f"{row.slide_id}.mask.ome.tif"


def _finished(mask: Path) -> bool:
    from wsi_downsample.io.sidecars import output_paths

    paths = output_paths(mask)
    return mask.is_file() and paths.summary.is_file() and paths.classes.is_file()


def _load(model: str, checkpoint: str, device: str) -> Any:
    from pipelines.run_dir import load_model

    key = (model, checkpoint, device)
    if key not in _MODELS:
        _MODELS[key] = load_model(model, checkpoint=checkpoint, device=device)
    return _MODELS[key]


def infer_row(
    row: ManifestRow, mask: Path, model: str, checkpoint: str, settings: InferSettings
) -> dict[str, Any]:
    """Infer one manifest row; never raises: returns ``status`` ok / error with the message."""
    from pipelines.infer import resolve_device, run_infer

    start = time.perf_counter()
    try:
        device = resolve_device(settings.device)
        loaded = _load(model, checkpoint, device)
        mpp = row.mpp if row.mpp is not None else settings.slide_mpp
        s = dataclasses.replace(settings, slide_mpp=mpp)
        summary = run_infer(row.slide_path, mask, model, s, checkpoint=checkpoint, loaded=loaded)
        return {"status": "ok", "seconds": time.perf_counter() - start, "summary": summary}
    except WsiSegError as exc:
        bad_input, message = True, str(exc)
    except Exception as exc:  # a bug or a broken file: keep the traceback for the record
        bad_input, message = False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    seconds = time.perf_counter() - start
    return {"status": "error", "seconds": seconds, "error": message, "bad_input": bad_input}


def _infer_row_in_worker(*args: Any) -> dict[str, Any]:
    """``infer_row`` on a Dask worker: one torch thread per worker process."""
    import torch

    torch.set_num_threads(1)
    return infer_row(*args)


def summary_row(row: ManifestRow, result: dict[str, Any], class_names: Sequence[str]) -> dict:
    """One line of ``summary.csv``: slide, status, seconds, tissue and class areas (um^2)."""
    out: dict[str, Any] = {
        "slide_id": row.slide_id,
        "slide_path": str(row.slide_path),
        "status": result["status"],
        "seconds": round(float(result.get("seconds", 0.0)), 3),
        "error": result.get("error", "").splitlines()[0] if result.get("error") else "",
    }
    s = result.get("summary") or {}
    out["tissue_area_um2"] = round(s["tissue_area_um2"], 1) if s else ""
    for name in class_names:
        area = s.get("classes", {}).get(name, {}).get("area_um2") if s else None
        out[f"{name} um2"] = "" if area is None else round(area, 1)
    return out


def _run_local(
    jobs: list[tuple[ManifestRow, Path]], args: tuple, skip_errors: bool, bar: Any
) -> Iterator[tuple[ManifestRow, dict]]:
    for row, mask in jobs:
        result = infer_row(row, mask, *args)
        bar.update(1)
        yield row, result
        if result["status"] != "ok" and not skip_errors:
            return


def _run_dask(
    jobs: list[tuple[ManifestRow, Path]],
    args: tuple,
    skip_errors: bool,
    bar: Any,
    workers: int,
    scheduler: str | None,
) -> Iterator[tuple[ManifestRow, dict]]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    client = Client(scheduler if scheduler else cluster)
    try:
        futures = {
            client.submit(_infer_row_in_worker, row, mask, *args, pure=False): row
            for row, mask in jobs
        }
        for future in as_completed(futures):
            result = future.result()
            bar.update(1)
            yield futures[future], result
            if result["status"] != "ok" and not skip_errors:
                for other in futures:
                    other.cancel()
                return
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_batch(
    manifest: str | Path,
    out_dir: str | Path,
    model: str | Path,
    settings: InferSettings,
    *,
    checkpoint: str = "best",
    skip_errors: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    shard: str | None = None,
    config: Any = None,
) -> dict[str, Any]:
    """Infer every slide of a manifest into ``out_dir``; returns counts and the CSV's path.

    Without ``skip_errors`` the run stops at the first failing slide and raises its error,
    naming the slide; with it failures are recorded in ``summary.csv`` and the run goes on.
    """
    from tqdm.auto import tqdm

    from pipelines.manifest import read_manifest
    from pipelines.run_dir import read_checkpoint

    out_dir = Path(out_dir)
    part = parse_shard(shard)
    if config is None:  # the model's class table names the CSV's columns
        config = _config_of(read_checkpoint(model, checkpoint=checkpoint)["config"])
    rows = read_manifest(manifest, config, slide_mpp=settings.slide_mpp)
    if part is not None:
        rows = rows[part[0] :: part[1]]
    jobs, skipped = [], []
    for row in rows:
        mask = slide_outputs(out_dir, row)
        (skipped if _finished(mask) and not settings.overwrite else jobs).append((row, mask))
    args = (str(model), checkpoint, settings)
    names = [c.name for c in config.classes]
    lines = [summary_row(r, {"status": "skipped"}, names) for r, _ in skipped]
    failed = None
    with tqdm(total=len(jobs), desc="slides", unit="slide", disable=_no_bar(settings)) as bar:
        if workers > 1 or scheduler:
            results = _run_dask(jobs, args, skip_errors, bar, workers, scheduler)
        else:
            results = _run_local(jobs, args, skip_errors, bar)
        for row, result in results:
            lines.append(summary_row(row, result, names))
            if result["status"] != "ok":
                log.warning("slide %s failed: %s", row.slide_id, result["error"].splitlines()[0])
                failed = failed or (row, result)
    csv_path = _write_summary(out_dir, lines, part)
    if failed is not None and not skip_errors:
        row, result = failed
        raise _slide_error(row, result)
    ok = sum(1 for line in lines if line["status"] == "ok")
    return {
        "summary_csv": csv_path,
        "ok": ok,
        "skipped": len(skipped),
        "failed": sum(1 for line in lines if line["status"] == "error"),
    }


def _config_of(data: Any) -> Any:
    from pipelines.run_dir import config_from_dict

    return config_from_dict(data)


def _no_bar(settings: InferSettings) -> bool | None:
    return None if settings.progress is None else not settings.progress


def _slide_error(row: ManifestRow, result: dict[str, Any]) -> Exception:
    message = (
        f"slide {row.slide_id} ({row.slide_path}, manifest line {row.line}) failed: "
        f"{result['error'].splitlines()[0]}; fix it or pass skip_errors=True to go on"
    )
    if result.get("bad_input"):
        return WsiSegError(message, hint={"skip_errors": True})
    return RuntimeError(message)


def _write_summary(out_dir: Path, lines: list[dict], part: tuple[int, int] | None) -> Path:
    from wsi_downsample.io.atomic import write_text_atomic

    name = "summary.csv" if part is None else f"summary.shard-{part[0]}-of-{part[1]}.csv"
    columns: list[str] = []
    for line in lines:
        columns += [k for k in line if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns or ["slide_id", "status"])
    writer.writeheader()
    writer.writerows(sorted(lines, key=lambda d: d["slide_id"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(out_dir / name, buf.getvalue())


def infer_from_options(
    slide: Path | None,
    manifest: Path | None,
    output: Path,
    model: Path,
    *,
    checkpoint: str = "best",
    output_downsample: str = "auto",
    geojson: Path | None = None,
    no_geojson: bool = False,
    preview: Path | None = None,
    no_preview: bool = False,
    probabilities: Path | None = None,
    sampler: str | None = None,
    device: str = "auto",
    slide_mpp: float | None = None,
    backend: str = "auto",
    overwrite: bool = False,
    skip_errors: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    shard: str | None = None,
) -> str:
    """The CLI's ``infer``: one SLIDE to ``-o mask.tif``, or ``--slides`` to ``-o OUT_DIR``.

    Returns the line to print: where the outputs are.
    """
    import sys

    from pipelines.infer import run_infer

    if (slide is None) == (manifest is None):
        raise ConfigError("give either one SLIDE or --slides MANIFEST.csv (not both, not none)")
    batch = manifest is not None
    if batch and (geojson or preview or probabilities):
        raise ConfigError(
            "output paths name one slide's files; in a batch they follow the slide ids"
        )
    settings = InferSettings(
        output_downsample=output_downsample,
        geojson=False if no_geojson else (geojson or True),
        preview=False if no_preview else (preview or True),
        probabilities=probabilities,
        sampler=sampler,
        device=device,
        slide_mpp=slide_mpp,
        backend=backend,
        overwrite=overwrite,
        progress=sys.stderr.isatty(),
    )
    if manifest is not None:
        result = run_batch(
            manifest,
            output,
            model,
            settings,
            checkpoint=checkpoint,
            skip_errors=skip_errors,
            workers=workers,
            scheduler=scheduler,
            shard=shard,
        )
        return (
            f"{result['ok']} slide(s) inferred, {result['skipped']} skipped, {result['failed']} "
            f"failed; summary: {result['summary_csv']}"
        )
    assert slide is not None
    summary = run_infer(slide, output, model, settings, checkpoint=checkpoint)
    flagged = summary["flagged_regions"]
    note = f"; regions {flagged} too coarse to trust" if flagged else ""
    return (
        f"{output} ({summary['mask_shape_hw'][1]} x {summary['mask_shape_hw'][0]} px at "
        f"{summary['mask_mpp']:g} um/px, D = {summary['output_downsample']}, "
        f"{len(summary['regions'])} region(s){note})"
    )
