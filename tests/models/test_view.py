"""Region views: transposes and flips of arrays and grids, half-open level-0 mapping."""

from __future__ import annotations

import torch

from wsi_downsample._types import Region
from wsi_downsample.deformation import uniform_grid
from wsi_downsample.models import RegionView


def test_portrait_regions_are_transposed_only_when_asked():
    region = Region(0, 10, 20, 40, 120, 1.0)  # 100 rows x 30 columns
    assert RegionView.of(region).shape_hw == (100, 30)
    view = RegionView.of(region, landscape=True)
    assert view.transpose and view.shape_hw == (30, 100)


def test_arrays_round_trip_and_match_the_grid_mapping():
    region = Region(0, 100, 200, 160, 240, 1.0)  # 40 x 60
    image = torch.arange(40 * 60, dtype=torch.float64).reshape(1, 40, 60)
    for transpose in (False, True):
        for fx in (False, True):
            for fy in (False, True):
                view = RegionView((100, 200, 160, 240), transpose=transpose, flip_x=fx, flip_y=fy)
                seen = view.to_view(image)
                assert seen.shape[-2:] == view.shape_hw
                assert torch.equal(view.from_view(seen), image)
                # pixel centres of the view map to the pixel of the region they show
                h_v, w_v = view.shape_hw
                centres = uniform_grid((0, 0, w_v, h_v), (h_v, w_v), dtype=torch.float64)
                xy = view.to_level0(centres)
                cols = (xy[..., 0] - 100).floor().long()
                rows = (xy[..., 1] - 200).floor().long()
                assert torch.equal(image[0, rows, cols], seen[0])
                assert xy.shape == (h_v, w_v, 2)
                back = view.grid_from_view(xy)
                own = uniform_grid(region_box(region), (40, 60), dtype=torch.float64)
                assert torch.equal(back, own)


def region_box(region: Region) -> tuple[int, int, int, int]:
    return (region.x0, region.y0, region.x1, region.y1)


def test_flipped_points_never_land_on_x1_or_y1():
    view = RegionView((0, 0, 50, 30), flip_x=True, flip_y=True)
    corner = torch.tensor([[0.0, 0.0]], dtype=torch.float64)  # view origin -> region x1, y1
    xy = view.to_level0(corner)[0]
    assert xy[0] < 50 and xy[1] < 30 and xy.floor().tolist() == [49.0, 29.0]
