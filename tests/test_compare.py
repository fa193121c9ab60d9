"""benchmarks/compare.py: the plan, budget scaling, pooling and the pixels-to-match rule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


compare, results = _load("compare"), _load("compare_results")


def test_plan():
    full = compare.plan_runs(smoke=False)
    names = [r.name for r in full]
    assert len(names) == len(set(names)) == 19  # 9 + 1 + 2 + 1 synthetic (x4 = larger), 6 Gleason
    syn = [r for r in full if r.data == "synthetic"]
    assert sorted({r.seed for r in syn if r.series == "learned (joint)" and r.scale == 1}) == [
        0,
        1,
        2,
    ]
    assert {r.scale for r in syn if r.sampler == "uniform"} == {1.0, 2.0, 4.0}
    assert sum(r.single_loss for r in full) == 1
    assert sorted(r.fold for r in full if r.data == "gleason") == [0, 0, 1, 1, 2, 2]
    smoke = compare.plan_runs(smoke=True)
    assert {r.seed for r in smoke} == {0} and {r.scale for r in smoke} == {1.0}


def test_scaled_budget():
    assert compare.scaled_budget({"dynamic": "40x400"}, 4.0)["dynamic"] == "80x800"
    assert compare.scaled_budget({"size": "48x48"}, 2.0)["size"] == "68x68"
    assert compare.scaled_budget({"downsample": 16.0}, 4.0)["downsample"] == 8.0


def _item(series, scale, seed, miou, fold=None):
    counts = np.zeros((2, 3), np.int64)
    counts[0, 0], counts[0, 1], counts[1, 1] = int(100 * miou), 100 - int(100 * miou), 50
    report = {
        "budget": "b",
        "cost": {"sampled_fraction": 0.01 * scale, "seconds_predict": 1.0, "regions": 1},
        "counts": {k: counts.tolist() for k in results.KEYS},
    }
    report |= {k: None for k in results.KEYS}
    from wsi_downsample.metrics import mean_iou

    report |= {k: mean_iou(counts) for k in results.KEYS}
    run = {"data": "synthetic", "series": series, "scale": scale, "seed": seed, "fold": fold}
    return {"run": run, "report": report, "timings": {"train_s": 10.0}}


def test_group_rows_and_pixels_to_match():
    items = [_item("uniform", 1.0, s, 0.5 + 0.1 * s) for s in range(3)]
    items += [_item("uniform", 2.0, 0, 0.8), _item("uniform", 4.0, 0, 0.9)]
    rows = results.group_rows(items)
    (u1,) = [r for r in rows if r["scale"] == 1.0]
    assert u1["n"] == 3
    assert u1["miou_full_resolution_min"] < u1["miou_full_resolution"]
    assert u1["miou_full_resolution"] == pytest.approx(
        np.mean([i["report"]["miou_full_resolution"] for i in items[:3]])
    )
    m2 = [r for r in rows if r["scale"] == 2.0][0]["miou_full_resolution"]
    m4 = [r for r in rows if r["scale"] == 4.0][0]["miou_full_resolution"]
    halfway = (m2 + m4) / 2
    assert results.pixels_to_match(rows, halfway) == pytest.approx(2 * np.sqrt(2))
    assert results.pixels_to_match(rows, m4 + 0.01) is None
    assert results.pixels_to_match(rows, 0.0) == 1.0


def test_target_verdicts():
    learned = _item("learned (joint)", 1.0, 0, 0.6)
    only_x1 = results.group_rows([_item("uniform", 1.0, 0, 0.5), learned])
    lines = results._target(only_x1)
    assert lines[0].endswith("(target >= +3): met")
    assert lines[1].endswith("more than x1, no larger uniform run (target >= x2): not measured")
    beaten = results.group_rows(
        [_item("uniform", 1.0, 0, 0.5), _item("uniform", 4.0, 0, 0.55), learned]
    )
    assert results._target(beaten)[1].endswith(
        "more than x4 (the largest uniform run) (target >= x2): met"
    )
    matched = results.group_rows(
        [_item("uniform", 1.0, 0, 0.5), _item("uniform", 2.0, 0, 0.7), learned]
    )
    assert results._target(matched)[1].endswith("(target >= x2): missed")
