"""The ``budget`` synthetic preset: determinism, class frequencies, textures, bounds, the gate."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.measure import label as connected_components

from pipelines.synth import run_synth
from wsi_downsample.errors import BudgetError, WsiSegError
from wsi_downsample.synthetic import (
    LESION_CLASSES,
    make_budget_layout,
    render_budget_labels,
    render_budget_rgb,
    write_synthetic_slide,
)
from wsi_downsample.synthetic.budget_layout import MAX_CORES, MAX_LESIONS_PER_CORE
from wsi_downsample.synthetic.budget_texture import LESION_RGB, lesion_textures
from wsi_downsample.synthetic.render import BACKGROUND_RGB

SET_SHAPE = (8192, 12288)  # the gate set's slide size (BENCHMARKS.md, issue 8)


def _slide_labels(layout, shape_hw: tuple[int, int], step: int = 1024) -> np.ndarray:
    """The whole slide's labels, rendered tile by tile."""
    h, w = shape_hw
    out = np.zeros(shape_hw, np.uint8)
    for y in range(0, h, step):
        for x in range(0, w, step):
            th, tw = min(step, h - y), min(step, w - x)
            out[y : y + th, x : x + tw] = render_budget_labels(layout, y, x, th, tw).labels
    return out


@pytest.fixture(scope="module")
def set_labels() -> list[np.ndarray]:
    """Labels of the gate set's first two slides (seeds 0 and 1)."""
    return [_slide_labels(make_budget_layout(SET_SHAPE, s, 0.5), SET_SHAPE) for s in (0, 1)]


def _mask(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].levels[0].asarray()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    shape = (3400, 6400)
    a = write_synthetic_slide(tmp_path / "a", shape, seed=5, preset="budget", progress=False)
    b = write_synthetic_slide(tmp_path / "b", shape, seed=5, preset="budget", progress=False)
    c = write_synthetic_slide(tmp_path / "c", shape, seed=6, preset="budget", progress=False)
    assert a.slide_path.read_bytes() == b.slide_path.read_bytes()
    assert a.mask_path.read_bytes() == b.mask_path.read_bytes()
    assert a.class_counts == b.class_counts and a.regions == b.regions
    assert len(a.regions) == 1 and not np.array_equal(_mask(a.mask_path), _mask(c.mask_path))
    assert tuple(int(v) for v in np.bincount(_mask(a.mask_path).ravel(), minlength=6)) == (
        a.class_counts
    )


def test_tiles_are_independent_of_tiling() -> None:
    layout = make_budget_layout(SET_SHAPE, 0, 0.5)
    les = layout.lesions[0][0]
    y0, x0 = int(les.cy) - 300, int(les.cx) - 300
    whole, _ = render_budget_rgb(layout, y0, x0, 600, 600)
    for dy in (0, 256, 512):
        for dx in (0, 200, 400):
            part, _ = render_budget_rgb(layout, y0 + dy, x0 + dx, 88, 200)
            assert np.array_equal(part, whole[dy : dy + 88, dx : dx + 200])


def test_class_presence_and_frequencies(set_labels) -> None:
    counts = sum(np.bincount(lab.ravel(), minlength=6) for lab in set_labels)
    frac = counts / counts.sum()
    print("class fractions", np.round(frac, 5))
    assert (counts > 0).all()
    assert 0.97 < frac[0] < 0.995  # glass and stroma: unlabelled, like PCa-Histo's 94 %
    lesion = counts[1:] / counts[1:].sum()
    assert 0.35 < lesion[0] < 0.75  # benign: the largest and most frequent lesions
    assert lesion[0] > lesion[1] > lesion[2] > max(lesion[3], lesion[4])
    assert 0.005 < lesion[4] < 0.08 and 0.005 < lesion[3] < 0.08  # HGPIN, atrophy: rare
    for lab in set_labels:  # each slide holds every class
        assert set(np.unique(lab).tolist()) == {0, 1, 2, 3, 4, 5}


def test_lesion_sizes_follow_their_class(set_labels) -> None:
    """Equivalent diameters of the lesion components lie in (about) the class's range."""
    for spec in LESION_CLASSES:
        diam = []
        for lab in set_labels:
            comps = connected_components(lab == spec.value)
            areas = np.bincount(comps.ravel())[1:]
            diam += list(2 * np.sqrt(areas / np.pi) * 0.5)  # um at 0.5 um/px
        lo, hi = spec.diameter_um
        assert lo * 0.6 < np.median(diam) < hi * 1.1, (spec.name, np.median(diam))


def test_lesion_pixels_carry_their_class_texture() -> None:
    """Same mean colour over a lesion (low resolution cannot tell the class), different
    structure at full resolution (lumen fraction and lumen size)."""
    layout = make_budget_layout(SET_SHAPE, 0, 0.5)
    stats = {}
    for spec in LESION_CLASSES:
        pixels, lumen_sizes = [], []
        for core_lesions in layout.lesions:
            for les in core_lesions:
                if les.cls != spec.value:
                    continue
                r = int(les.reach) + 2
                rgb, lab = render_budget_rgb(layout, int(les.cy) - r, int(les.cx) - r, 2 * r, 2 * r)
                inside = lab.labels == spec.value
                pixels.append(rgb[inside])
                bright = (rgb.min(axis=2) > 215) & inside
                sizes = np.bincount(connected_components(bright).ravel())[1:]
                lumen_sizes += list(sizes)
        px = np.concatenate(pixels).astype(np.float64)
        stats[spec.value] = (px.mean(axis=0), (px.min(axis=1) > 215).mean(), np.median(lumen_sizes))
    means = np.array([m for m, _, _ in stats.values()])
    print({k: (np.round(m), round(f, 3), s) for k, (m, f, s) in stats.items()})
    assert np.abs(means - LESION_RGB).max() < 12  # every class: the same purple on average
    tex = lesion_textures(0, 0.5)
    for cls in range(1, 6):  # the periodic textures themselves match to within rounding
        rgb = tex[cls].view(np.uint8).reshape(*tex.shape[1:], 4)[..., :3]
        assert np.abs(rgb.reshape(-1, 3).mean(axis=0) - LESION_RGB).max() < 1.0
    frac = {k: f for k, (_, f, _) in stats.items()}
    size = {k: s for k, (_, _, s) in stats.items()}
    assert frac[4] > frac[1] > frac[2] and frac[3] > frac[5]  # atrophy: thin rims, wide lumens
    assert size[1] > 3 * size[3] and size[1] > 3 * size[2]  # benign lumens vs G4 holes, G3


def test_stroma_is_pinker_than_lesions_at_low_resolution() -> None:
    layout = make_budget_layout(SET_SHAPE, 0, 0.5)
    core = layout.cores[0]
    y, x = int(core.cy) - 512, int(core.cx) - 512
    rgb, lab = render_budget_rgb(layout, y, x, 1024, 1024)
    stroma = rgb[(lab.labels == 0) & (lab.core >= 0)].astype(float).mean(axis=0)
    assert stroma[1] - LESION_RGB[1] > 25  # greener (pinker) than every lesion class
    glass = rgb[lab.core < 0]
    assert (glass == BACKGROUND_RGB).all()


@pytest.mark.parametrize("shape_hw", [(64, 100000), (100000, 64), (3199, 50000), (3200, 5000)])
def test_impossible_shapes_are_refused(shape_hw: tuple[int, int], tmp_path: Path) -> None:
    with pytest.raises(BudgetError, match="cannot hold a biopsy core") as info:
        make_budget_layout(shape_hw, 0, 0.5)
    assert "shape_hw" in info.value.hint
    with pytest.raises(WsiSegError, match="cannot hold a biopsy core") as info:
        run_synth(tmp_path / "set", shape_hw, count=1, preset="budget")
    fix = "3200x6000" if shape_hw[0] <= shape_hw[1] else "6000x3200"
    assert info.value.hint == {"shape_hw": fix}
    assert not (tmp_path / "set").exists()


def test_layout_stays_bounded_on_huge_and_thin_slides() -> None:
    start = time.perf_counter()
    huge = make_budget_layout((100000, 100000), 0, 0.5)
    thin = make_budget_layout((3200, 2_000_000), 0, 0.5)
    assert time.perf_counter() - start < 20  # ~3 s on the project's 2-core machine
    for layout in (huge, thin):
        assert 1 <= len(layout.cores) <= MAX_CORES
        assert all(len(les) <= MAX_LESIONS_PER_CORE for les in layout.lesions)
    assert len(make_budget_layout((3200, 6000), 0, 0.5).cores) == 1
    tile = render_budget_labels(thin, 0, 0, 3200, 4096).labels
    assert tile.shape == (3200, 4096)


def _core_labels(layout, k: int = 0) -> np.ndarray:
    """The labels of core ``k``'s tissue box (what ``find_tissue_regions`` crops)."""
    h, w = layout.shape_hw
    x0, y0, x1, y1 = (int(v) for v in layout.cores[k].box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    tile = render_budget_labels(layout, y0, x0, y1 - y0, x1 - x0)
    rows, cols = np.flatnonzero((tile.core >= 0).any(1)), np.flatnonzero((tile.core >= 0).any(0))
    return tile.labels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def test_intrinsic_gate_on_a_small_instance() -> None:
    """The budget matters on this set: uniform keeps a fair part of the lesions at the demo
    budget (dynamic 40x400) but not all, and the oracle edge density (the chosen settings of
    configs/cpu_demo.yaml) recovers clearly more. Fails when the set becomes trivially easy
    (uniform near 1, nothing to gain) or hopeless (lesions lost by every sampler)."""
    import torch

    from pipelines.config import load_config
    from wsi_downsample.deformation.budget import budget_shape, parse_budget
    from wsi_downsample.intrinsic import intrinsic_counts
    from wsi_downsample.metrics import iou_from_counts

    torch.set_num_threads(1)
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "cpu_demo.yaml")
    s = config.sampler
    labels = _core_labels(make_budget_layout((3400, 9000), 0, 0.5))
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 3, 4, 5}
    shape = budget_shape(parse_budget(f"dynamic:{s.dynamic}"), labels.shape)
    miou = {}
    for sampler in ("uniform", "edge"):
        counts = intrinsic_counts(
            labels,
            shape,
            sampler=sampler,
            blur=s.edge_blur,
            floor=s.edge_floor,
            density_fraction=s.density_fraction,
            sigma=s.sigma,
            radius=s.radius,
            num_classes=6,
        )
        miou[sampler] = float(np.nanmean(iou_from_counts(counts)))
    print("IoU(Y', Y) mIoU at dynamic 40x400:", miou)  # 0.634 / 0.786 when written
    assert 0.5 < miou["uniform"] < 0.8
    assert miou["edge"] - miou["uniform"] > 0.06


def test_configs_hold_the_set_and_the_chosen_density_settings() -> None:
    from pipelines.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    demo = load_config(root / "cpu_demo.yaml")
    comparison = load_config(root / "synthetic_comparison.yaml")
    for config in (demo, comparison):
        assert (config.synthetic.preset, config.synthetic.size) == ("budget", "8192x12288")
        assert (config.synthetic.count, config.synthetic.seed) == (6, 0)
        s = config.sampler
        assert (s.dynamic, s.density_fraction) == ("40x400", 1.0)
        assert (s.sigma, s.radius, s.edge_blur, s.edge_floor) == (1.5, 4, 0.5, 0.1)
        assert s.radius <= round(40 * s.density_fraction) // 2  # half the lattice's short side
    # the demo trains with the comparison's recipe (benchmarks/compare.py sets the same)
    assert (demo.sampler.level_choice, comparison.sampler.level_choice) == ("adaptive", "fixed")
    assert (demo.train.epochs * demo.train.steps, demo.train.grid_jitter) == (1000, 0.5)
    assert demo.train.grad_clip_mode == "per_part"
    assert (demo.loss.edge_scaling, demo.loss.edge_sigma, demo.loss.edge_floor) == (
        "mean",
        demo.sampler.edge_blur,
        demo.sampler.edge_floor,
    )
