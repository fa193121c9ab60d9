"""The paper's comparison on CPU: learned vs uniform vs edge at equal pixel budgets + cost curve.

Usage::

    python benchmarks/compare.py --out runs/compare            # the full comparison
    python benchmarks/compare.py --out /tmp/compare --smoke    # tiny steps, 1 seed, one budget

Every step runs a ``wsi-seg`` command (synth, intrinsic, train, evaluate) and is cached: a
run whose ``last.pt`` has all its epochs is not retrained (a partial one is resumed), a
report that exists is not recomputed, so the command resumes where it stopped. Plan
(``plan_runs``): on the synthetic set (``configs/synthetic_comparison.yaml``, preset
``budget``) at the smaller budget ``uniform``, ``edge`` (the set's frozen blur, chosen by
IoU(Y',Y) when the set was made; no training sweep) and ``learned`` (joint loss, edge loss
scaled by the mean: ``LEARNED``) x 3 seeds, ``learned`` with the paper's min-max edge loss x 1,
``learned`` single loss x 1, ``uniform`` at 2x and 4x the pixels x 1; at the larger budget
(dynamic 80x800 = 4x the pixels) ``uniform`` and ``learned`` x 1; on the Gleason example
tiles ``uniform`` vs ``learned``, 3 folds, and IoU(Y',Y) of uniform, edge (blur chosen here
by IoU(Y',Y)) and the trained density.
hrnet_w18_small, stem stride 4, CPU, the training recipe of ``configs/cpu_demo.yaml``,
``EPOCHS`` x ``STEPS`` steps; every model is scored from its ``last`` checkpoint at the
source level's output downsample. Writes ``results.md``, ``results.json`` and the plots.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WSI_SEG = [sys.executable, "-m", "pipelines.cli"]
SYNTH_CONFIG = REPO / "configs" / "synthetic_comparison.yaml"
TRAIN_CONFIG = REPO / "configs" / "cpu_demo.yaml"  # its model: and train: sections, for all runs
GLEASON_CONFIG = REPO / "configs" / "gleason_examples.yaml"
GLEASON_MANIFEST = REPO / "data_manifests" / "gleason_examples.csv"
ARCH, STEM_STRIDE = "hrnet_w18_small", 4
#: fixed training length of every run: EPOCHS epochs of STEPS batches (above the training
#: regions / batch size the regions cycle), 1000 steps per run; one validation at the end.
#: (The first recipe, 200 steps at the fixed level, left every segmenter predicting class 0
#: only; BENCHMARKS.md "Why the segmenter learned nothing".)
EPOCHS, STEPS = 20, 50
#: the training recipe every run shares, fixed before the comparison ran: samples read from
#: the pyramid level matching the sample spacing (mip-mapped, not aliased point samples of
#: level 0) and a random sub-sample shift of each training grid
RECIPE = {"level_choice": "adaptive", "grid_jitter": 0.5}
SEEDS = (0, 1, 2)
#: edge blurs tried by IoU(Y',Y) where the set's config fixes none (the Gleason tiles); the
#: synthetic set keeps its frozen edge_blur (chosen by the same rule when the set was made)
EDGE_BLURS = (0.5, 1.0, 2.0, 4.0, 8.0)
LARGE_SCALE = 4.0  # the larger budget, dynamic 80x800: 4x the pixels of 40x400
FOLDS = 3
SMOKE = {
    "epochs": 1,
    "steps": 1,
    "seeds": (0,),
    "blurs": (2.0, 4.0),
    "folds": 1,
    "synth": ("3200x6000", 5),  # the smallest slides of the budget preset
}


@dataclass(frozen=True)
class Run:
    """One trained model and its evaluation."""

    data: str  # "synthetic" | "gleason"
    series: str  # legend name
    sampler: str  # uniform | edge | learned
    scale: float  # pixels relative to the smaller budget
    seed: int = 0
    single_loss: bool = False
    fold: int | None = None
    edge_scaling: str = "minmax"  # loss.edge_scaling of a learned run
    clip: str = "together"  # train.grad_clip_mode

    @property
    def name(self) -> str:
        loss = "-single" if self.single_loss else ("-mean" if self.edge_scaling == "mean" else "")
        loss += "-pp" if self.clip == "per_part" else ""
        fold = "" if self.fold is None else f"-fold{self.fold}"
        return f"{self.data}-{self.sampler}{loss}-x{self.scale:g}-s{self.seed}{fold}"


#: the learned density's recipe since the first comparison (both changes in BENCHMARKS.md,
#: "The comparison, second and third recipe"): the edge loss compares the mean-normalised
#: density with the edge oracle's density (contrast included; target blur and floor = the
#: set's edge_blur / edge_floor), and the segmenter's and the deformation net's gradients
#: are clipped apart (together, the edge loss's large gradient shrank the segmenter's step).
#: The paper's min-max edge loss stays in the plan as one seed.
LEARNED = "learned (joint)"
LEARNED_MINMAX = "learned (joint, min-max L_e)"
LEARNED_RECIPE = {"edge_scaling": "mean", "clip": "per_part"}


def plan_runs(smoke: bool) -> list[Run]:
    """Every run of the comparison (smoke: the smaller budget, one seed, fold 0)."""
    seeds = SMOKE["seeds"] if smoke else SEEDS
    runs = []
    for seed in seeds:
        runs += [
            Run("synthetic", "uniform", "uniform", 1.0, seed),
            Run("synthetic", "edge", "edge", 1.0, seed),
            Run("synthetic", LEARNED, "learned", 1.0, seed, **LEARNED_RECIPE),
        ]
    runs.append(Run("synthetic", LEARNED_MINMAX, "learned", 1.0, 0))
    runs.append(Run("synthetic", "learned (single)", "learned", 1.0, 0, single_loss=True))
    if not smoke:
        runs += [Run("synthetic", "uniform", "uniform", s) for s in (2.0, 4.0, LARGE_SCALE)]
        runs.append(Run("synthetic", LEARNED, "learned", LARGE_SCALE, **LEARNED_RECIPE))
    for fold in range(SMOKE["folds"] if smoke else FOLDS):
        runs += [
            Run("gleason", "uniform", "uniform", 1.0, 0, fold=fold),
            Run("gleason", LEARNED, "learned", 1.0, 0, fold=fold, **LEARNED_RECIPE),
        ]
    return list(dict.fromkeys(runs))  # the larger budget's uniform is uniform x4


def wsi_seg(*args: Any, log: Path) -> float:
    """Run one ``wsi-seg`` command (output appended to ``log``); its wall seconds."""
    cmd = [*WSI_SEG, *(str(a) for a in args)]
    start = time.perf_counter()
    with log.open("a") as handle:
        handle.write(f"$ wsi-seg {' '.join(cmd[3:])}\n")
        handle.flush()
        code = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    if code != 0:
        raise SystemExit(f"wsi-seg {args[0]} failed (exit {code}); see {log}")
    return time.perf_counter() - start


def scaled_budget(sampler: dict[str, Any], scale: float) -> dict[str, Any]:
    """The sampler section with ``scale`` times the pixels (sqrt(scale) per side)."""
    out, f = dict(sampler), math.sqrt(scale)
    for key in ("size", "dynamic"):
        if out.get(key):
            a, b = (int(v) for v in str(out[key]).lower().split("x"))
            out[key] = f"{round(a * f)}x{round(b * f)}"
    if out.get("downsample"):
        out["downsample"] = float(out["downsample"]) / f
    return out


def run_config(base: Path, run: Run, out: Path, epochs: int, steps: int, blur: float) -> Path:
    """The run's config: the set's config with the arch, budget, loss and length fixed here."""
    data = copy.deepcopy(yaml.safe_load(base.read_text()) or {})
    data["sampler"] = scaled_budget(data.get("sampler", {}), run.scale)
    data["sampler"]["name"] = run.sampler
    data["sampler"]["edge_blur"] = blur
    data["sampler"]["level_choice"] = RECIPE["level_choice"]
    recipe = yaml.safe_load(TRAIN_CONFIG.read_text()) or {}
    data["model"] = {**recipe.get("model", {}), "arch": ARCH, "stem_stride": STEM_STRIDE}
    data["model"].pop("weights", None)
    if run.single_loss:
        data["loss"] = {**data.get("loss", {}), "gamma": 0.0}
    if run.edge_scaling == "mean":
        from pipelines.config import SamplerConfig

        floor = data["sampler"].get("edge_floor", SamplerConfig().edge_floor)
        loss = {"edge_scaling": "mean", "edge_sigma": blur, "edge_floor": floor}
        data["loss"] = {**data.get("loss", {}), **loss}
    train = {**recipe.get("train", {}), "epochs": epochs, "steps": steps, "val_every": epochs}
    data["train"] = train | {"device": "cpu", "seed": run.seed, "num_workers": 0}
    data["train"]["grid_jitter"] = RECIPE["grid_jitter"]
    data["train"]["grad_clip_mode"] = run.clip
    path = out / "configs" / f"{run.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def synthetic_manifest(out: Path, log: Path, smoke: bool) -> Path:
    """The synthetic set of the config (``wsi-seg synth``, once; smaller slides in smoke)."""
    synth = (yaml.safe_load(SYNTH_CONFIG.read_text()) or {}).get("synthetic", {})
    folder = out / "data" / "synthetic"
    if not (folder / "manifest.csv").is_file():
        size = str(synth.get("size", "3200x6000"))
        count, seed = int(synth.get("count", 5)), int(synth.get("seed", 0))
        if smoke:
            size, count = SMOKE["synth"]
        preset = synth.get("preset", "budget")
        wsi_seg(
            "synth", folder, "--size", size, "--count", count, "--seed", seed, "--preset", preset,
            "--overwrite", log=log,
        )  # fmt: skip
    return folder / "manifest.csv"


def gleason_manifests(out: Path, folds: int) -> tuple[Path, list[Path]]:
    """The example tiles (absolute paths, a fold column) and one manifest per fold."""
    import csv

    with GLEASON_MANIFEST.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        for key in ("slide_path", "mask_path"):
            row[key] = str((GLEASON_MANIFEST.parent / row[key]).resolve())
        row["fold"] = row.get("fold") or str(i % FOLDS)  # the manifest's, else row i mod 3
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "gleason_folds.csv"] + [folder / f"gleason_fold{k}.csv" for k in range(folds)]
    for k, path in enumerate(paths):
        keep = rows if k == 0 else [r for r in rows if r["fold"] == str(k - 1)]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(keep)
    return paths[0], paths[1:]


def train_manifest(manifest: Path) -> Path:
    """The manifest's ``train`` rows (paths made absolute): where the edge blur is chosen."""
    import csv

    with manifest.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("split", "test") == "train"]
    for row in rows:
        for key in ("slide_path", "mask_path"):
            row[key] = str((manifest.parent / row[key]).resolve())
    path = manifest.with_name("train_rows.csv")
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def intrinsic(manifest: Path, config: Path, out: Path, log: Path, *args: Any) -> dict[str, Any]:
    """One ``wsi-seg intrinsic`` report (cached)."""
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        wsi_seg("intrinsic", "--slides", manifest, "--config", config, "-o", out, *args, log=log)
    return dict(json.loads(out.read_text()))


def best_blur(manifest: Path, config: Path, out: Path, blurs: tuple[float, ...], log: Path):
    """The edge blur with the best IoU(Y',Y) on ``manifest`` at the config's budget."""
    scores = {}
    for blur in blurs:
        report = intrinsic(
            manifest, config, out / f"edge-blur{blur:g}.json", log, "--sampler", "edge",
            "--blur", blur,
        )  # fmt: skip
        scores[blur] = report["miou"] or 0.0
    return max(scores, key=lambda b: scores[b]), scores


def train_and_evaluate(
    run: Run, manifest: Path, config: Path, out: Path, epochs: int, log: Path
) -> dict[str, Any]:
    """Train (or resume, or skip) one run, evaluate its ``last`` checkpoint (cached)."""
    from pipelines.run_dir import read_metrics

    run_dir, report_dir = out / "runs" / run.name, out / "reports" / run.name
    timing_file = run_dir.parent / f"{run.name}.seconds.json"
    timings = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    done = (run_dir / "last.pt").is_file() and len(read_metrics(run_dir)) >= epochs
    if not done:
        args: list[Any] = ["--slides", manifest, "--config", config, "-o", run_dir]
        args += ["--fold", run.fold] if run.fold is not None else []
        if (run_dir / "last.pt").is_file():
            args.append("--resume")
        elif run_dir.exists():
            args.append("--overwrite")
        timings["train_s"] = timings.get("train_s", 0.0) + wsi_seg("train", *args, log=log)
        timing_file.write_text(json.dumps(timings))
    if not (report_dir / "report.json").is_file():
        which = ["--fold", run.fold] if run.fold is not None else ["--split", "test"]
        timings["evaluate_s"] = wsi_seg(
            "evaluate", "--slides", manifest, "--model", run_dir, "--checkpoint", "last",
            "--device", "cpu", "-o", report_dir, *which, log=log,
        )  # fmt: skip
        timing_file.write_text(json.dumps(timings))
    report = json.loads((report_dir / "report.json").read_text())
    metrics = read_metrics(run_dir)
    return {
        "run": asdict(run) | {"name": run.name},
        "report": report,
        "timings": timings,
        "train_rows": metrics,
    }


def main(argv: list[str] | None = None) -> None:
    global SYNTH_CONFIG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Cache and results folder.")
    parser.add_argument("--smoke", action="store_true", help="Tiny steps, 1 seed, one budget.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per command.")
    parser.add_argument("--synthetic-config", type=Path, default=SYNTH_CONFIG)
    parser.add_argument(
        "--only",
        default="",
        help="Comma-separated prefixes of run names: train and report only those runs "
        "(e.g. synthetic-uniform-x1,synthetic-learned-mean-pp-x1); the Gleason intrinsic study is "
        "skipped unless a gleason run is selected.",
    )
    args = parser.parse_args(argv)
    from compare_results import write_results

    SYNTH_CONFIG = args.synthetic_config.resolve()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    epochs, steps = (SMOKE["epochs"], SMOKE["steps"]) if args.smoke else (EPOCHS, STEPS)
    blurs = SMOKE["blurs"] if args.smoke else EDGE_BLURS
    folds = SMOKE["folds"] if args.smoke else FOLDS
    start = time.perf_counter()
    synthetic = synthetic_manifest(out, log, args.smoke)
    gleason_all, gleason_folds = gleason_manifests(out, folds)
    bases = {"synthetic": (SYNTH_CONFIG, synthetic), "gleason": (GLEASON_CONFIG, gleason_all)}
    prefixes = [p for p in args.only.split(",") if p]
    plan = [r for r in plan_runs(args.smoke) if not prefixes or r.name.startswith(tuple(prefixes))]
    blur_choice: dict[str, Any] = {}
    for data, (base, manifest) in bases.items():
        if not any(r.data == data for r in plan):
            continue
        frozen = (yaml.safe_load(base.read_text()) or {}).get("sampler", {}).get("edge_blur")
        if frozen is not None:
            blur_choice[data] = {"blur": float(frozen), "chosen": f"frozen in {base.name}"}
            continue
        rows = train_manifest(manifest) if data == "synthetic" else manifest
        probe = run_config(base, Run(data, "edge", "edge", 1.0), out, epochs, steps, 4.0)
        blur, scores = best_blur(rows, probe, out / "intrinsic" / data, blurs, log)
        blur_choice[data] = {"blur": blur, "intrinsic_miou_by_blur": scores}
    results = []
    for run in plan:
        base, manifest = bases[run.data]
        config = run_config(base, run, out, epochs, steps, blur_choice[run.data]["blur"])
        results.append(train_and_evaluate(run, manifest, config, out, epochs, log))
    extra = {}
    if any(r.data == "gleason" for r in plan):
        extra = gleason_intrinsic(
            out, gleason_all, gleason_folds, blur_choice["gleason"]["blur"], log
        )
    meta = {
        "command": " ".join(["python benchmarks/compare.py", *(argv or sys.argv[1:])]),
        "epochs": epochs,
        "steps_per_epoch_max": steps,
        "seeds": list(SMOKE["seeds"] if args.smoke else SEEDS),
        "arch": ARCH,
        "stem_stride": STEM_STRIDE,
        "recipe": RECIPE,
        "runs": [r.name for r in plan],
        "edge": blur_choice,
        "wall_s": time.perf_counter() - start,
        "machine": f"{os.cpu_count()} CPU cores, torch threads {args.threads}",
    }
    write_results(out, results, extra, meta)
    print(out / "results.md")


def gleason_intrinsic(
    out: Path, manifest: Path, folds: list[Path], blur: float, log: Path
) -> dict[str, Any]:
    """IoU(Y',Y) on the example tiles: uniform and edge over all tiles, the trained density
    per fold (its held-out tiles); counts are kept so folds sum."""
    folder = out / "intrinsic" / "gleason"
    reports = {
        "uniform": [intrinsic(manifest, GLEASON_CONFIG, folder / "uniform.json", log)],
        "edge": [
            intrinsic(
                manifest,
                GLEASON_CONFIG,
                folder / f"edge-blur{blur:g}.json",
                log,
                "--sampler",
                "edge",
                "--blur",
                blur,
            )  # fmt: skip
        ],
        LEARNED: [],
    }
    for k, fold_manifest in enumerate(folds):
        run = Run("gleason", LEARNED, "learned", 1.0, 0, fold=k, **LEARNED_RECIPE)
        last = out / "runs" / run.name / "last.pt"
        reports[LEARNED].append(
            intrinsic(
                fold_manifest,
                GLEASON_CONFIG,
                folder / f"{run.name}.json",  # named by the run: a new model, a new study
                log,
                "--sampler",
                "learned",
                "--model",
                last,
            )  # fmt: skip
        )
    return reports


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
