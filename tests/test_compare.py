"""benchmarks/compare.py: the plan, budget scaling, pooling and the pixels-to-match rule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

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
    # synthetic: 9 (3 seeds x uniform, edge, learned) + min-max + single + uniform x2, x4 +
    # learned x4 (the larger budget's uniform is uniform x4); Gleason: 2 x 3 folds
    assert len(names) == len(set(names)) == 20
    syn = [r for r in full if r.data == "synthetic"]
    learned = [r for r in syn if r.series == compare.LEARNED]
    assert sorted(r.seed for r in learned if r.scale == 1) == [0, 1, 2]
    assert {(r.edge_scaling, r.clip) for r in full if r.series == compare.LEARNED} == {
        ("mean", "per_part")
    }
    assert "synthetic-learned-mean-pp-x1-s0" in names and "synthetic-learned-x1-s0" in names
    assert [r.edge_scaling for r in full if r.series == compare.LEARNED_MINMAX] == ["minmax"]
    assert {r.scale for r in syn if r.sampler == "uniform"} == {1.0, 2.0, 4.0}
    assert sum(r.single_loss for r in full) == 1
    assert sorted(r.fold for r in full if r.data == "gleason") == [0, 0, 1, 1, 2, 2]
    smoke = compare.plan_runs(smoke=True)
    assert {r.seed for r in smoke} == {0} and {r.scale for r in smoke} == {1.0}


def test_run_config_sets_the_mean_edge_loss_from_the_sets_oracle(tmp_path):
    base = tmp_path / "set.yaml"
    base.write_text("sampler:\n  dynamic: 40x400\n  edge_blur: 0.5\n  edge_floor: 0.1\n")
    mean = compare.Run("synthetic", compare.LEARNED, "learned", 1.0, 0, **compare.LEARNED_RECIPE)
    data = yaml.safe_load(compare.run_config(base, mean, tmp_path, 2, 3, 0.5).read_text())
    assert data["loss"] == {"edge_scaling": "mean", "edge_sigma": 0.5, "edge_floor": 0.1}
    assert data["train"]["grad_clip_mode"] == "per_part"
    paper = compare.Run("synthetic", compare.LEARNED_MINMAX, "learned", 1.0, 0)
    data = yaml.safe_load(compare.run_config(base, paper, tmp_path, 2, 3, 0.5).read_text())
    assert "loss" not in data and data["train"]["steps"] == 3
    assert data["train"]["grad_clip_mode"] == "together"
    assert data["sampler"]["level_choice"] == "adaptive"


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
    assert len(lines) == 2 and lines[0].startswith("- learned (joint) - uniform")
    assert lines[0].endswith("(target >= +3): met")
    assert lines[1].endswith("more than x1, no larger uniform run (target >= x2): not measured")
    beaten = results.group_rows(
        [_item("uniform", 1.0, 0, 0.5), _item("uniform", 4.0, 0, 0.55), learned]
    )
    assert results._target(beaten)[1].endswith(
        "more than x4 (the largest uniform run) (target >= x2): met"
    )
    paper = _item("learned (joint, min-max L_e)", 1.0, 0, 0.51)
    matched = results.group_rows(
        [_item("uniform", 1.0, 0, 0.5), _item("uniform", 2.0, 0, 0.7), learned, paper]
    )
    lines = results._target(matched)
    assert len(lines) == 4 and lines[1].endswith("(target >= x2): missed")
    assert lines[2].startswith("- learned (joint, min-max L_e) - uniform")
    assert lines[2].endswith("(target >= +3): missed")
    assert results._target(results.group_rows([learned])) == ["Target check: not enough runs."]


def test_compute_minutes_sums_cached_train_and_evaluate_timings():
    items = [_item("uniform", 1.0, s, 0.5) for s in range(3)]
    items[0]["timings"] = {"train_s": 100.0, "evaluate_s": 20.0}
    items[1]["timings"] = {"train_s": 50.0}
    items[2]["timings"] = {}
    assert results._compute_minutes(items) == pytest.approx(170.0 / 60)


def test_val_column_reads_the_last_validation_of_each_run():
    uniform = [_item("uniform", 1.0, s, 0.5) for s in range(2)]
    learned = _item("learned (joint)", 1.0, 0, 0.6)
    uniform[0]["train_rows"] = [{"val_miou_full_resolution": "0.30"}, {"train_loss": "1"}]
    uniform[1]["train_rows"] = [{"val_miou_full_resolution": "0.20"}]
    learned["train_rows"] = [{"val_miou_full_resolution": ""}, {"train_loss": "1"}]
    rows = results.group_rows([*uniform, learned])
    (u,) = [r for r in rows if r["series"] == "uniform"]
    assert u["val_miou_full_resolution"] == pytest.approx(0.25)
    assert (u["val_miou_full_resolution_min"], u["val_miou_full_resolution_max"]) == (0.2, 0.3)
    assert len(results._target(rows)) == 2  # no val score for learned: no val line
    learned["train_rows"] = [{"val_miou_full_resolution": "0.21"}]
    lines = results._target(results.group_rows([*uniform, learned]))
    assert lines[2].endswith("chosen by nothing): -4.0 points")
    assert "| 25.0 [20.0, 30.0] |" in "\n".join(results._table(results.group_rows(uniform)))
