"""Shared argument checks (evaluate, explain and simulate modules)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from omicsembed.exceptions import InvalidInputError


def as_matrix(x: Any, what: str, *, allow_nan: bool = False, hint: str = "") -> NDArray[Any]:
    """Return ``x`` as a float64 2-D array, rejecting infinite (and, optionally, NaN) values."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be a numeric matrix: {exc}") from exc
    if arr.ndim != 2:
        raise InvalidInputError(
            f"{what} must be 2-D (n_samples, n_features), got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f"{what} is empty (shape {arr.shape})")
    if np.isinf(arr).any():
        raise InvalidInputError(f"{what} contains infinite values")
    if not allow_nan and np.isnan(arr).any():
        row = int(np.flatnonzero(np.isnan(arr).any(axis=1))[0])
        raise InvalidInputError(
            f"{what} contains NaN (first in row {row}){'; ' + hint if hint else ''}"
        )
    return arr


def check_count(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an int, rejecting bools, non-integers and values below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
