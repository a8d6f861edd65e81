"""Shared input handling of the estimators: AnnData or arrays in, validated dense matrices out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from omicsembed._settings import settings as package_settings
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError

__all__ = [
    "Seed",
    "dense_matrix",
    "descriptor_codes",
    "feature_names",
    "match_features",
    "numpy_rng",
    "row_batches",
    "seed_value",
    "torch_generator",
]


def dense_matrix(data: AnnData | np.ndarray, *, layer: str | None = None) -> np.ndarray:
    """Return the n×m float32 matrix of ``data`` (``.X`` or ``.layers[layer]`` for AnnData).

    NaN marks missing values and is kept; infinite values raise.

    Raises
    ------
    InvalidInputError
        Unknown layer, non-numeric or infinite values, or a matrix that is not 2-D.

    """
    if isinstance(data, AnnData):
        if layer is not None and layer not in data.layers:
            raise InvalidInputError(
                f"layer {layer!r} not found; available layers: {sorted(data.layers)}"
            )
        matrix: Any = data.layers[layer] if layer is not None else data.X
    else:
        if layer is not None:
            raise InvalidInputError("layer= is only meaningful for AnnData input")
        matrix = data
    if matrix is None:
        raise InvalidInputError("the AnnData object has no .X; pass layer=")
    if sparse.issparse(matrix):
        matrix = matrix.toarray()
    try:
        array = np.asarray(matrix, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"expression values must be numeric: {error}") from error
    if array.ndim != 2:
        raise InvalidInputError(f"expected a 2-D samples × genes matrix, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(f"the matrix is empty (shape {array.shape})")
    infinite = np.isinf(array)
    if infinite.any():
        row, column = np.argwhere(infinite)[0]
        raise InvalidInputError(
            f"{int(infinite.sum())} infinite values, first at row {row}, column {column}; "
            "use NaN for missing values"
        )
    return np.ascontiguousarray(array)


def descriptor_codes(
    data: AnnData | np.ndarray,
    descriptors: Sequence[str] | np.ndarray | pd.DataFrame | None,
    levels: Sequence[Sequence[Any]] | None = None,
) -> tuple[np.ndarray | None, list[str], list[list[Any]]]:
    """Encode per-sample categorical descriptors (batch, sex, donor, ...) as int64 codes.

    Parameters
    ----------
    data
        The samples (AnnData: ``descriptors`` may name ``.obs`` columns).
    descriptors
        ``.obs`` column names, an (n, d) array or a DataFrame with n rows, or None.
    levels
        Known levels per descriptor (from a fitted model); values outside them raise.

    Returns
    -------
    codes, names, levels
        int64 (n, d) codes (None when there are no descriptors), descriptor names, and levels.

    Raises
    ------
    InvalidInputError
        Missing columns, missing values, or levels unseen at fit time.
    ShapeMismatchError
        A descriptor table whose row count differs from the samples.

    """
    if descriptors is None or (
        not isinstance(descriptors, np.ndarray | pd.DataFrame) and not len(descriptors)
    ):
        return None, [], []
    n_samples = data.shape[0]
    if isinstance(descriptors, pd.DataFrame):
        table = descriptors
    elif isinstance(descriptors, np.ndarray):
        values = descriptors.reshape(n_samples, -1) if descriptors.ndim == 1 else descriptors
        table = pd.DataFrame(values, columns=[f"descriptor_{i}" for i in range(values.shape[1])])
    else:
        if not isinstance(data, AnnData):
            raise InvalidInputError("descriptor column names need AnnData input; pass an array")
        missing = [name for name in descriptors if name not in data.obs.columns]
        if missing:
            raise InvalidInputError(
                f"descriptor columns {missing} not in .obs; available: {list(data.obs.columns)}"
            )
        table = data.obs[list(descriptors)]
    if len(table) != n_samples:
        raise ShapeMismatchError(
            f"descriptors have {len(table)} rows but the data has {n_samples} samples"
        )
    codes = np.empty((n_samples, table.shape[1]), dtype=np.int64)
    found_levels: list[list[Any]] = []
    for index, name in enumerate(table.columns):
        column = pd.Series(np.asarray(table[name]))
        if column.isna().any():
            raise InvalidInputError(
                f"descriptor {name!r} has missing values at rows "
                f"{np.flatnonzero(column.isna().to_numpy())[:5].tolist()}"
            )
        known = list(levels[index]) if levels is not None else sorted(column.unique().tolist())
        lookup = {level: code for code, level in enumerate(known)}
        unseen = sorted({value for value in column if value not in lookup}, key=str)
        if unseen:
            raise InvalidInputError(
                f"descriptor {name!r} has levels unseen at fit time: {unseen[:5]}"
            )
        codes[:, index] = column.map(lookup).to_numpy()
        found_levels.append(known)
    return codes, [str(c) for c in table.columns], found_levels


def match_features(
    data: AnnData | np.ndarray, feature_names: Sequence[str]
) -> AnnData | np.ndarray:
    """Reorder AnnData columns to ``feature_names``; check the width of arrays.

    Raises
    ------
    InvalidInputError
        AnnData that lacks fitted genes (the message lists some) or arrays of the wrong width.

    """
    if isinstance(data, AnnData):
        present = pd.Index(data.var_names)
        missing = [name for name in feature_names if name not in present]
        if missing:
            raise InvalidInputError(
                f"{len(missing)} genes of the fitted model are missing from the data, e.g. "
                f"{missing[:5]}; the model needs the same genes it was fitted on"
            )
        if list(present) == list(feature_names):
            return data
        return data[:, list(feature_names)]
    if data.ndim != 2 or data.shape[1] != len(feature_names):
        raise ShapeMismatchError(
            f"expected {len(feature_names)} genes (columns), got shape {np.shape(data)}"
        )
    return data


#: A seed: an int, a numpy Generator (an int is drawn from it), or None (the package seed).
Seed = int | np.random.Generator | None


def seed_value(seed: Seed, *, non_negative: bool = False) -> int:
    """Return an int seed (None: ``omicsembed.settings.seed``; a Generator draws one).

    Raises
    ------
    InvalidInputError
        If ``seed`` is not an int or Generator (or negative when ``non_negative``).

    """
    if seed is None:
        return int(package_settings.seed)
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        kind = "a non-negative int" if non_negative else "an int"
        raise InvalidInputError(f"seed must be {kind} or a numpy Generator, got {seed!r}")
    if non_negative and seed < 0:
        raise InvalidInputError(
            f"seed must be a non-negative int or a numpy Generator, got {seed!r}"
        )
    return int(seed)


def torch_generator(seed: Seed) -> torch.Generator:
    """Return a CPU torch generator seeded by :func:`seed_value` (same draws on any device)."""
    return torch.Generator().manual_seed(seed_value(seed))


def numpy_rng(seed: Seed) -> np.random.Generator:
    """Return ``seed`` if it is a numpy Generator, else one seeded by :func:`seed_value`."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed_value(seed))


def feature_names(data: Any, size: int, prefix: str = "feature") -> list[str]:
    """Column names of AnnData, or ``<prefix>_<index>`` for arrays."""
    if isinstance(data, AnnData):
        return [str(name) for name in data.var_names]
    return [f"{prefix}_{index}" for index in range(size)]


def row_batches(
    rows: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    fold_single_last: bool = False,
) -> list[np.ndarray]:
    """Split ``rows`` into minibatches; shuffled with ``default_rng([seed, epoch])``.

    With ``fold_single_last`` a last batch of one row is merged into the one before (batch
    norm cannot train on a single cell).
    """
    order = np.random.default_rng([seed, epoch]).permutation(rows) if shuffle else rows
    batches = [order[start : start + batch_size] for start in range(0, order.size, batch_size)]
    if fold_single_last and len(batches) > 1 and batches[-1].size < 2:
        batches[-2] = np.concatenate([batches[-2], batches.pop()])
    return batches
