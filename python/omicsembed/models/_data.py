"""Shared input handling of the estimators: AnnData or arrays in, validated dense matrices out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError

__all__ = ["dense_matrix", "descriptor_codes", "match_features"]


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
