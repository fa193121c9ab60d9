"""Pixel budgets: fixed HxW, dynamic SHORTxLONG, downsample K; density size."""

from __future__ import annotations

import pytest

from wsi_downsample.deformation.budget import Budget, budget_shape, density_shape, parse_budget
from wsi_downsample.errors import BudgetError


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ((2000, 20000), (80, 800)),
        ((2000, 3400), (80, 136)),
        ((20000, 2000), (800, 80)),
        ((2000, 7820), (80, 313)),
        ((1000, 1000), (80, 80)),
        ((1000, 30000), (27, 800)),  # the long side binds: fewer pixels
        ((50, 100), (80, 160)),
    ],
)
def test_dynamic_budget(region, expected):
    assert budget_shape(parse_budget("dynamic:80x800"), region) == expected
    assert budget_shape(parse_budget("80x800", mode="dynamic"), region) == expected


def test_fixed_and_downsample_budgets():
    assert budget_shape("96x800", (2000, 20000)) == (96, 800)
    assert budget_shape(parse_budget("25"), (2000, 20000)) == (80, 800)
    assert budget_shape(parse_budget("downsample:4"), (30, 10)) == (8, 3)  # 7.5 rounds up
    assert budget_shape(parse_budget("downsample:1000"), (30, 10)) == (1, 1)


def test_parse_forms_and_round_trip():
    assert parse_budget("80x800") == Budget("fixed", 80, 800)
    assert parse_budget(" Dynamic : 40 X 400 ") == Budget("dynamic", 40, 400)
    assert parse_budget("2.5") == Budget("downsample", 2.5)
    for text in ["80x800", "dynamic:80x800", "downsample:2.5"]:
        assert str(parse_budget(text)) == text


@pytest.mark.parametrize(
    "text", ["80x", "axb", "0x5", "dynamic:800x80", "downsample:-1", "fixed:7", "", "nan"]
)
def test_bad_budgets_name_the_accepted_forms(text):
    with pytest.raises(BudgetError, match="HxW|SHORT"):
        parse_budget(text)


def test_density_shape():
    assert density_shape((80, 800)) == (20, 200)
    assert density_shape((80, 136)) == (20, 34)
    assert density_shape((2, 3)) == (1, 1)
    assert density_shape((48, 48), fraction=1.0) == (48, 48)
    with pytest.raises(BudgetError):
        density_shape((8, 8), fraction=0)
