"""Small input normalisers used across the package: tensors to numpy, scalars to (x, y) pairs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_numpy", "as_pair"]


def as_numpy(values: Any) -> np.ndarray:
    """A tensor (detached, on the CPU) or array-like as a numpy array (no copy when possible).

    Duck-typed (``detach``), so importing this module does not import torch.
    """
    if hasattr(values, "detach"):
        return values.detach().cpu().numpy()  # type: ignore[no-any-return]
    return np.asarray(values)


def as_pair(
    value: float | Sequence[float] | np.ndarray,
    what: str = "value",
    *,
    error: type[Exception] = ValueError,
) -> tuple[float, float]:
    """A number or an ``(x, y)`` pair as a pair of positive finite floats.

    ``what`` names the parameter in the error (an ``error`` instance, ValueError by
    default), raised for a pair of another length or a value that is not positive and finite.
    """
    if isinstance(value, str | bytes):
        raise error(f"{what} must be a number or an (x, y) pair, got {value!r}")
    if isinstance(value, Sequence | np.ndarray):
        if len(value) != 2:
            raise error(f"{what} must be a number or an (x, y) pair, got {value!r}")
        x, y = value
    else:
        x = y = value  # type: ignore[assignment]
    try:
        pair = (float(x), float(y))
    except (TypeError, ValueError):
        raise error(f"{what} must be a number or an (x, y) pair, got {value!r}") from None
    if not all(math.isfinite(v) and v > 0 for v in pair):
        raise error(f"{what} must be positive and finite, got {value!r}")
    return pair
