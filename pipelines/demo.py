"""`wsi-seg demo`: synthetic slides -> a uniform and a learned model -> masks for QuPath.

Writes a few slides of the synthetic set, trains a uniform and a learned-density model with
the same steps (``configs/cpu_demo.yaml``), infers the held-out slide with both (mask,
GeoJSON, preview), scores both at one output downsample against that slide's mask and says
where everything is. ``quick``: a smaller run with the learned model only (for tests).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.config import Config, load_config

__all__ = ["DemoPlan", "PLANS", "demo_config", "run_demo"]


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """How big the demo is: slides (size, count, preset), training steps, samplers."""

    shape_hw: tuple[int, int]
    count: int
    preset: str
    epochs: int
    steps: int
    samplers: tuple[str, ...]
    budget: str | None = None  # dynamic budget override (None: the config's)
    seed: int = 0


#: "full" applies only without configs/cpu_demo.yaml, whose synthetic set and training length
#: the demo otherwise follows; "quick" always applies (tests)
PLANS = {
    "full": DemoPlan((3200, 6000), 5, "budget", 4, 25, ("uniform", "learned")),
    "quick": DemoPlan((1536, 2048), 2, "default", 1, 2, ("learned",), "32x320"),
}

_QUPATH = (
    "open {slide} in QuPath, then drag {geojson} onto the viewer (annotations, coloured by "
    "class); the mask {mask} opens in QuPath or any OME-TIFF viewer for side-by-side viewing"
)


def demo_config(repo_config: Path | None, plan: DemoPlan, *, quick: bool = False) -> Config:
    """``configs/cpu_demo.yaml`` when present (its training length is kept, except in the
    quick plan), else the defaults sized by the plan; always on the CPU."""
    path = repo_config if repo_config is not None and repo_config.is_file() else None
    overrides: dict[str, Any] = {"train.device": "cpu"}
    if path is None or quick:
        overrides |= {"train.epochs": plan.epochs, "train.steps": plan.steps}
    if plan.budget is not None:
        overrides["sampler.dynamic"] = plan.budget
    if len(plan.samplers) == 1:  # nothing to compare: no validation pass, keep the last
        overrides["train.val_every"] = plan.epochs + 1
    return load_config(path, overrides)


def _default_config_path() -> Path:
    return Path(__file__).resolve().parents[1] / "configs" / "cpu_demo.yaml"


def _held_out(manifest: Path, config: Config) -> Any:
    from pipelines.manifest import read_manifest

    rows = read_manifest(manifest, config, require_masks=True)
    tests = [r for r in rows if r.split == "test"]
    return tests[0] if tests else rows[-1]


def _train_and_infer(
    name: str, manifest: Path, config: Config, out: Path, row: Any, progress: bool | None
) -> dict[str, Any]:
    from pipelines.infer import InferSettings, run_infer
    from pipelines.train import run_train

    cfg = dataclasses.replace(config, sampler=dataclasses.replace(config.sampler, name=name))
    t0 = time.perf_counter()
    run_dir = run_train(manifest, cfg, output=out / "runs" / name, progress=progress)
    trained = time.perf_counter() - t0
    checkpoint = "best" if (run_dir / "best.pt").is_file() else "last"
    mask = out / name / f"{row.slide_id}.mask.ome.tif"
    t0 = time.perf_counter()
    summary = run_infer(
        row.slide_path, mask, run_dir, InferSettings(device="cpu"), checkpoint=checkpoint
    )
    return {
        "run_dir": run_dir,
        "mask": mask,
        "summary": summary,
        "train_seconds": trained,
        "infer_seconds": time.perf_counter() - t0,
    }


def _score(manifest: Path, pred_dir: Path, config: Config, split: str) -> float | None:
    """Full-resolution mIoU of the held-out slide at the source level's D (one common D)."""
    from pipelines.evaluate import EvaluateSettings, evaluate_pred_dir

    report = evaluate_pred_dir(manifest, pred_dir, config, EvaluateSettings(split=split))
    value = report.get("miou_full_resolution")
    return None if value is None else float(value)


_MARKER = ".wsi-seg-demo"
_ONE_SEED = "one seed, one slide; BENCHMARKS.md has the comparison over seeds and budgets"


def _check_replaceable(final: Path) -> None:
    """The demo replaces only its own earlier folder (or an empty one), never other files."""
    from wsi_downsample.errors import OutputExistsError

    if not final.exists():
        return
    if final.is_dir() and ((final / _MARKER).is_file() or not any(final.iterdir())):
        return
    raise OutputExistsError(
        f"{final} exists and is not an earlier demo output; the demo replaces only its own "
        "folder: choose another output folder"
    )


def run_demo(
    output: str | Path = "out/demo",
    *,
    quick: bool = False,
    config_path: Path | None = None,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo into ``output`` (replaced as a whole when it exists); return the results."""
    from pipelines.synth import run_synth
    from wsi_downsample.io.atomic import atomic_dir

    path = config_path or _default_config_path()
    plan = PLANS["quick" if quick else "full"]
    config = demo_config(path, plan, quick=quick)
    if not quick and path.is_file():  # the synthetic set the config was made for
        syn = config.synthetic
        shape = tuple(int(v) for v in syn.size.lower().split("x"))
        plan = dataclasses.replace(plan, shape_hw=shape, count=syn.count, preset=syn.preset)
        plan = dataclasses.replace(plan, seed=syn.seed)
    final = Path(output)
    _check_replaceable(final)
    start = time.perf_counter()
    results: dict[str, Any] = {}
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / _MARKER).write_text("written by wsi-seg demo; a rerun replaces this folder\n")
        echo(f"demo: writing {plan.count} synthetic slides ({plan.shape_hw[0]}x{plan.shape_hw[1]})")
        manifest = run_synth(
            tmp / "slides", plan.shape_hw, count=plan.count, seed=plan.seed, preset=plan.preset
        )
        row = _held_out(manifest, config)
        for name in plan.samplers:
            train = config.train
            echo(f"demo: training the {name} model ({train.epochs} epochs x {train.steps} steps)")
            results[name] = _train_and_infer(name, manifest, config, tmp, row, progress)
            results[name]["miou"] = _score(manifest, tmp / name, config, row.split)
    seconds = time.perf_counter() - start
    for line in _report_lines(results, final, tmp, row, seconds):
        echo(line)
    return {"output": final, "seconds": seconds, "slide": row.slide_id, **results}


def _report_lines(results: dict, final: Path, tmp: Path, row: Any, seconds: float) -> list[str]:
    """What the demo found and where it put it (paths moved from the staging folder)."""

    def moved(path: Path) -> Path:
        return final / Path(path).relative_to(tmp)

    lines = [f"demo: done in {seconds:.0f} s; held-out slide {row.slide_id}"]
    for name, res in results.items():
        miou = "n/a" if res["miou"] is None else f"{res['miou']:.3f}"
        d = res["summary"]["output_downsample"]
        lines.append(
            f"  {name:8s} full-resolution mIoU {miou} (scored at the source level); "
            f"mask at D = {d}: {moved(res['mask'])}"
        )
    scored = {n: r["miou"] for n, r in results.items() if r["miou"] is not None}
    if len(scored) > 1:
        best = max(scored, key=lambda n: scored[n])
        if max(scored.values()) - min(scored.values()) < 5e-4:
            lines.append(f"  equal mIoU ({_ONE_SEED})")
        else:
            lines.append(f"  higher mIoU: {best} ({_ONE_SEED})")
    last = results[list(results)[-1]]
    mask = moved(last["mask"])
    stem = mask.name.removesuffix(".ome.tif")
    slide = final / "slides" / Path(row.slide_path).name
    lines.append(
        "  QuPath: "
        + _QUPATH.format(slide=slide, geojson=mask.with_name(stem + ".geojson"), mask=mask)
    )
    lines.append(f"  preview: {mask.with_name(stem + '.preview.png')}")
    return lines
