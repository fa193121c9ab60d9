"""The package's one tensor-to-numpy helper and one scalar-or-pair normaliser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsi_downsample._arrays import as_numpy, as_pair
from wsi_downsample.errors import LevelError


def test_as_numpy_detaches_tensors_and_passes_arrays():
    t = torch.arange(6.0, requires_grad=True).reshape(2, 3)
    out = as_numpy(t * 2)
    assert isinstance(out, np.ndarray) and out.tolist() == [[0, 2, 4], [6, 8, 10]]
    arr = np.zeros(3)
    assert as_numpy(arr) is arr and as_numpy([1, 2]).tolist() == [1, 2]


def test_as_pair_accepts_numbers_and_pairs_only():
    assert as_pair(0.5) == (0.5, 0.5) and as_pair((0.25, 0.3)) == (0.25, 0.3)
    assert as_pair(np.array([2, 4])) == (2.0, 4.0) and as_pair(4) == (4.0, 4.0)
    with pytest.raises(ValueError, match=r"mpp must be a number or an \(x, y\) pair"):
        as_pair((1.0, 2.0, 3.0), "mpp")
    with pytest.raises(LevelError, match="downsample must be positive and finite, got -2"):
        as_pair(-2, "downsample", error=LevelError)
    with pytest.raises(ValueError, match="positive and finite"):
        as_pair(float("inf"))
    with pytest.raises(ValueError, match="number or an"):
        as_pair("0.5")
