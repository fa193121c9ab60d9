"""Figures from evaluation reports: valid PNGs of the expected size, series named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.config import Config
from pipelines.evaluate_report import summarize
from pipelines.evaluate_score import Tally
from pipelines.plots import plot_class_frequency, plot_cost_curve, plot_trimap, series_name

BANDS = (1.0, 2.0, 4.0, 8.0, 16.0)


def _report(sampler: str, budget: str, samples: int, hit: float, seed: int) -> dict:
    """A report from hand-made counts: ``hit`` of every class's pixels predicted right."""
    rng = np.random.default_rng(seed)
    tally = Tally(6, len(BANDS))
    px = rng.integers(1_000, 10_000, 6)
    for counts in (tally.full, tally.warped, tally.intrinsic):
        counts[np.arange(6), np.arange(6)] = (hit * px).astype(np.int64)
        counts[np.arange(6), (np.arange(6) + 1) % 6] = px - (hit * px).astype(np.int64)
    tally.trimap[:] = [[int(hit * 100 * b), 100 * b] for b in BANDS]
    tally.label_px[:], tally.sampled_px[:] = px, px[::-1]
    tally.regions, tally.samples, tally.source_pixels = 1, samples, 1e6
    report = summarize(tally, Config(), BANDS)
    return report | {"sampler": sampler, "budget": budget, "output_downsample": 1.0}


@pytest.fixture(scope="module")
def reports():
    out = []
    for seed in range(3):
        out.append(_report("uniform", "dynamic:20x40", 800, 0.6 + 0.01 * seed, seed))
        out.append(_report("learned", "dynamic:20x40", 800, 0.7 + 0.01 * seed, seed))
    out.append(_report("uniform", "dynamic:40x80", 3200, 0.75, 9) | {"series": "uniform"})
    return out


def _png(path):
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def test_cost_curve(reports, tmp_path):
    assert _png(plot_cost_curve(reports, tmp_path / "cost.png")) == (600, 400)


def test_class_frequency(reports, tmp_path):
    assert _png(plot_class_frequency(reports, tmp_path / "freq.png"))[1] == 400
    with pytest.raises(ValueError, match="no reports"):
        plot_class_frequency([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_trimap(reports, tmp_path):
    assert _png(plot_trimap(reports, tmp_path / "trimap.png")) == (600, 400)


def test_series_name(reports):
    assert series_name(reports[0]) == "uniform"
    assert series_name(reports[0] | {"series": "learned (joint)"}) == "learned (joint)"
    assert reports[1]["miou_full_resolution"] > reports[0]["miou_full_resolution"]
