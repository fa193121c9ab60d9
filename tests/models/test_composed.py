"""The composed model on a synthetic slide: gradients through the slide sampler, the contract."""

from __future__ import annotations

import pytest
import torch

from wsi_downsample.deformation import SlideSampler, get_density, parse_budget
from wsi_downsample.deformation.grid import saliency_to_grid
from wsi_downsample.errors import ConfigError
from wsi_downsample.models import (
    DownsampleSegmenter,
    LabelSampler,
    build_segmenter,
    image_sampler,
    prepare_region,
)
from wsi_downsample.slides import find_tissue_regions, open_mask, open_slide


@pytest.fixture(scope="module")
def slide_and_mask(tmp_path_factory):
    from tests.pipelines.train_testkit import make_slides

    torch.set_num_threads(1)
    manifest = make_slides(tmp_path_factory.mktemp("slides"), count=1)
    slide = open_slide(manifest.parent / "synthetic_000.svs")
    mask = open_mask(manifest.parent / "synthetic_000.mask.ome.tif", slide=slide)
    yield slide, mask, find_tissue_regions(slide)
    mask.close()
    slide.close()


def _model(density: str = "learned") -> DownsampleSegmenter:
    torch.manual_seed(0)
    return DownsampleSegmenter(
        build_segmenter("hrnet_w18_small", 6),
        get_density(density),
        density_name=density,
        budget=parse_budget("dynamic:32x256"),
        num_classes=6,
        sigma=2.0,
        radius=4,
    )


def test_density_derivative_through_the_slide_sampler_matches_finite_differences(
    slide_and_mask,
):
    slide, _, regions = slide_and_mask
    region = regions[0]
    box = (region.x0, region.y0, region.x1, region.y1)
    torch.manual_seed(0)
    d0 = torch.rand(1, 1, 6, 24, dtype=torch.float64) + 0.5
    weights = torch.randn(3, 24, 96, dtype=torch.float64)
    sampler = SlideSampler(slide)

    def loss(d: torch.Tensor) -> torch.Tensor:
        grid = saliency_to_grid(d / d.sum(), box, (24, 96), sigma=2.0, radius=4)[0]
        return (sampler.sample(grid).values * weights).sum()

    d = d0.clone().requires_grad_()
    loss(d).backward()
    direction = torch.randn_like(d0)
    eps = 1e-7
    numeric = (loss(d0 + eps * direction) - loss(d0 - eps * direction)) / (2 * eps)
    analytic = (d.grad * direction).sum()
    assert analytic.abs().item() > 1.0  # a real signal, not 0 == 0
    assert abs(numeric.item() - analytic.item()) <= 1e-3 * abs(analytic.item())


def test_forward_pads_batches_and_masks_padding(slide_and_mask):
    slide, mask, regions = slide_and_mask
    model = _model()
    items = [prepare_region(slide, r, budget=model.budget, mask=mask) for r in regions[:2]]
    sampler, labels = SlideSampler(slide), LabelSampler(mask)
    out = model(items, [image_sampler(sampler)] * 2, [labels] * 2)
    shapes = [i.task_hw for i in items]
    assert all(h == 32 for h, _ in shapes) and shapes[0][1] != shapes[1][1]
    width = max(w for _, w in shapes)
    assert out.logits.shape == (2, 6, 32, width + -width % 32)
    short = min(range(2), key=lambda i: shapes[i][1])
    assert (out.labels[short, :, shapes[short][1] :] == 255).all()  # padding is ignored
    assert (out.labels[:, 32:] == 255).all()
    assert out.edge_target is not None and out.density.shape[1] == 1
    assert set(out.timings) == {"density_grid", "sample", "model"}


def test_predict_region_contract(slide_and_mask):
    slide, mask, regions = slide_and_mask
    model = _model()
    sampler = SlideSampler(slide, level_choice=model.level_choice, source_mpp=model.source_mpp)
    pred = model.predict_region(slide, regions[0], sampler=sampler)
    h, w = pred.task_hw
    assert pred.probs.shape == (6, h, w) and pred.probs.dtype == torch.float32
    assert torch.allclose(pred.probs.sum(0), torch.ones(h, w), atol=1e-5)
    assert pred.grid.shape == (h, w, 2) and pred.grid.dtype == torch.float64
    r = regions[0]
    assert pred.grid[..., 0].min() >= r.x0 and pred.grid[..., 0].max() < r.x1
    assert pred.grid[..., 1].min() >= r.y0 and pred.grid[..., 1].max() < r.y1
    assert pred.density.shape == (round(h / 4), round(w / 4))
    assert set(pred.timings) == {"lowres", "density_grid", "sample", "model"}
    assert not model.training
    with pytest.raises(ConfigError, match="needs the label mask"):
        _model("edge").predict_region(slide, regions[0], sampler=sampler)
    edge = _model("edge").predict_region(slide, regions[0], sampler=sampler, labels=mask)
    assert edge.density.std() > 0  # denser at label boundaries


def test_portrait_region_prediction_comes_back_in_its_own_orientation(slide_and_mask):
    from wsi_downsample._types import Region

    slide, _, _ = slide_and_mask
    model = _model()
    region = Region(0, 400, 100, 600, 1100, 1.0)  # 1000 rows x 200 columns
    sampler = SlideSampler(slide)
    pred = model.predict_region(slide, region, sampler=sampler)
    assert pred.task_hw == (160, 32) and pred.probs.shape[1:] == (160, 32)
    # rows of the grid run down the region (y grows along the first axis)
    assert (pred.grid[1:, 0, 1] > pred.grid[:-1, 0, 1]).all()
    assert (pred.grid[0, 1:, 0] > pred.grid[0, :-1, 0]).all()


def test_jitter_grid_is_one_shift_inside_the_box():
    from wsi_downsample.models.composed import jitter_grid

    torch.manual_seed(3)
    ys, xs = torch.meshgrid(
        torch.linspace(120.0, 480.0, 10, dtype=torch.float64),
        torch.linspace(220.0, 980.0, 20, dtype=torch.float64),
        indexing="ij",
    )
    # box 200..1000 x 100..500, 20 x 10 samples: spacing 40 px, points 20 px inside the box
    grid = torch.stack([xs, ys], -1).requires_grad_(True)
    box = (200, 100, 1000, 500)
    shifted = jitter_grid(grid, box, 0.5)
    delta = (shifted - grid).detach().reshape(-1, 2)
    assert torch.allclose(delta, delta[0].expand_as(delta), atol=1e-9)  # one offset, no clamping
    assert 0 < delta[0].abs().max() <= 20.0
    shifted.sum().backward()
    assert torch.equal(grid.grad, torch.ones_like(grid.grad))  # a plain shift
    with torch.no_grad():
        draws = torch.stack([(jitter_grid(grid, box, 0.5) - grid)[5, 10] for _ in range(400)])
        assert (draws.min(0).values < -19).all() and (draws.max(0).values > 19).all()
        assert draws.abs().max() <= 20.0  # fills +-0.5 spacing, never leaves the box
        edge = grid.detach().clone()
        edge[..., 0] -= 20.0  # first column exactly on the box edge x0
        moved = torch.stack([(jitter_grid(edge, box, 0.5) - edge)[0, 0] for _ in range(100)])
        assert (moved[:, 0] >= 0).all() and 15 < moved[:, 0].max() <= 20  # inwards only
        assert (moved[:, 0] == 0).sum() > 25  # outward draws stop at the edge
        assert torch.equal(jitter_grid(grid, box, 0.0), grid)
