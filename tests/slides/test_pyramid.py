"""Level arithmetic: exact level choices and frame conversions."""

from __future__ import annotations

import pytest

from wsi_downsample.errors import LevelError
from wsi_downsample.slides.pyramid import (
    best_level_for_downsample,
    level0_to_level,
    level_box,
    level_for_mpp,
    level_just_finer,
    level_mpps,
    level_to_level0,
)

APERIO = (1.0, 4.000270, 16.00108, 32.0042)  # typical SVS: dims floor-divided


@pytest.mark.parametrize(
    ("ds", "level"),
    [
        (0.5, 0),
        (1.0, 0),
        (3.99, 0),
        (4.0, 1),
        (4.0003, 1),
        (10.0, 1),
        (16.0, 2),
        (31.9, 2),
        (32.0, 3),
        (500.0, 3),
    ],
)
def test_best_level_for_downsample_is_just_finer_or_equal(ds: float, level: int) -> None:
    assert best_level_for_downsample(APERIO, ds) == level


def test_best_level_tolerance_is_relative() -> None:
    assert best_level_for_downsample((1.0, 2.0005), 2.0) == 1
    assert best_level_for_downsample((1.0, 2.0005), 2.0, rtol=0.0) == 0
    assert best_level_for_downsample((1.0, 2.1), 2.0) == 0


def test_level_just_finer_by_mpp() -> None:
    mpps = level_mpps(0.25, (1.0, 4.0, 16.0))
    assert mpps == (0.25, 1.0, 4.0)
    assert level_just_finer(mpps, 0.5) == 0
    assert level_just_finer(mpps, 1.0) == 1
    assert level_just_finer(mpps, 3.99) == 1
    assert level_just_finer(mpps, 8.0) == 2
    assert level_just_finer(mpps, 0.1) == 0


@pytest.mark.parametrize(
    ("mpp", "level"),
    [(0.25, 0), (0.5, 0), (0.51, 1), (1.0, 1), (2.0, 1), (2.1, 2), (64.0, 2)],
)
def test_level_for_mpp_closest_in_ratio_finer_on_ties(mpp: float, level: int) -> None:
    # levels 0.25, 1.0, 4.0: 0.5 is 2x from both 0.25 and 1.0 -> finer; 2.0 likewise -> 1.0
    assert level_for_mpp((0.25, 1.0, 4.0), mpp) == level


def test_level_for_mpp_max_ratio_lists_levels() -> None:
    assert level_for_mpp((0.5, 2.0), 0.55, max_ratio=1.25) == 0
    with pytest.raises(LevelError, match=r"0: 0.5, 1: 2.*slide_mpp=UM_PER_PX"):
        level_for_mpp((0.5, 2.0), 1.0, max_ratio=1.25)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_targets_raise_level_error(bad: float) -> None:
    with pytest.raises(LevelError, match="positive"):
        best_level_for_downsample((1.0, 4.0), bad)
    with pytest.raises(LevelError, match=r"levels: \[0: 0.5, 1: 2\]"):
        level_for_mpp((0.5, 2.0), bad)


def test_no_levels_raise() -> None:
    with pytest.raises(LevelError, match="no levels"):
        level_for_mpp((), 0.5)


def test_point_conversions_follow_the_convention() -> None:
    # the centre of level-2 pixel (row 3, col 5) at downsample 4 is level-0 (22, 14)
    assert level_to_level0((5.5, 3.5), 4.0) == (22.0, 14.0)
    assert level0_to_level((22.0, 14.0), 4.0) == (5.5, 3.5)
    assert level0_to_level((10.0, 9.0), (2.0, 3.0)) == (5.0, 3.0)
    assert level_to_level0(level0_to_level((123.25, 7.5), 2.0005), 2.0005) == pytest.approx(
        (123.25, 7.5)
    )
    with pytest.raises(LevelError):
        level0_to_level((1.0, 1.0), 0.0)


def test_level_box_covers_and_clips() -> None:
    assert level_box((0, 0, 16, 16), 4.0) == (0, 0, 4, 4)
    assert level_box((1, 2, 17, 15), 4.0) == (0, 0, 5, 4)
    assert level_box((3, 5, 30, 29), (2.0, 4.0)) == (1, 1, 15, 8)
    assert level_box((-8, -8, 100, 60), 4.0, shape_hw=(10, 20)) == (0, 0, 20, 10)
    # exact multiples stay exact despite float downsamples
    assert level_box((0, 0, 3 * 2.0005 * 100, 2.0005 * 50), 2.0005) == (0, 0, 300, 50)
