"""Shared input handling of the estimators: AnnData or arrays in, validated matrices out.

Matrices come out as float32 dense arrays or CSR matrices (sparse input stays sparse; models
read them a minibatch of rows at a time). Value checks run over the stored values in blocks, so
validating a large matrix needs little extra memory, and name the first offending row and
feature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from omicsembed._seeds import TORCH_SEEDS, Seed, seed_int
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.io import anndata_matrix

__all__ = [
    "RowMatrix",
    "Seed",
    "binary_matrix",
    "check_unique_genes",
    "check_values",
    "count_matrix",
    "dense_matrix",
    "descriptor_codes",
    "feature_names",
    "match_features",
    "row_batches",
    "row_matrix",
    "torch_generator",
]


#: A cells × features matrix read one minibatch of rows at a time.
RowMatrix: TypeAlias = np.ndarray | sparse.csr_matrix | sparse.csr_array
#: A value check: (elementwise "is bad" function, what is wrong, what to do).
ValueCheck: TypeAlias = tuple[Callable[[np.ndarray], np.ndarray], str, str]

_CHECK_BLOCK = 1 << 20  # values checked at a time


def row_matrix(
    data: AnnData | np.ndarray | Any, *, layer: str | None = None, what: str = "the data"
) -> RowMatrix:
    """Return ``data`` (``.X`` or ``.layers[layer]`` for AnnData) as float32 dense or CSR.

    Sparse input stays sparse (CSR, duplicates summed); dense input becomes a C-contiguous
    float32 array. Values are not checked (see :func:`check_values`).

    Raises
    ------
    InvalidInputError
        Unknown layer, no ``.X``, ``layer`` with an array, non-numeric values, or a matrix that
        is not 2-D or is empty.

    """
    matrix = anndata_matrix(data, layer)
    result: RowMatrix
    if sparse.issparse(matrix):
        if matrix.dtype.kind not in "biuf":
            raise InvalidInputError(f"{what} must be numeric, got dtype {matrix.dtype}")
        result = sparse.csr_matrix(matrix, dtype=np.float32)
        result.sum_duplicates()
    else:
        try:
            result = np.ascontiguousarray(np.asarray(matrix, dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"{what} must be numeric: {error}") from error
    if result.ndim != 2 or result.shape[0] == 0 or result.shape[1] == 0:
        raise InvalidInputError(
            f"{what} must be a non-empty 2-D samples × features matrix, got shape {result.shape}"
        )
    return result


def _locate(matrix: RowMatrix, k: int) -> tuple[int, int]:
    """(row, column) of the k-th stored value."""
    if isinstance(matrix, np.ndarray):
        row, column = divmod(k, matrix.shape[1])
        return int(row), int(column)
    row = int(np.searchsorted(matrix.indptr, k, side="right") - 1)
    return row, int(matrix.indices[k])


def check_values(
    matrix: RowMatrix,
    checks: Sequence[ValueCheck],
    *,
    what: str,
    names: Sequence[Any] | None = None,
    kind: str = "feature",
    cells: Sequence[Any] | None = None,
) -> None:
    """Run elementwise checks over the stored values of ``matrix``, in blocks.

    Raises
    ------
    InvalidInputError
        At the first check that finds a bad value: how many, the first one, its row and its
        column (0-based, as in numpy; named by ``cells`` and ``names`` when given), and the
        advice of the check.

    """
    values: np.ndarray = np.asarray(matrix.data) if sparse.issparse(matrix) else matrix.reshape(-1)
    blocks = range(0, values.size, _CHECK_BLOCK)
    for check, label, advice in checks:
        for start in blocks:
            bad = check(values[start : start + _CHECK_BLOCK])
            if not bad.any():
                continue
            k = start + int(np.flatnonzero(bad)[0])
            row, column = _locate(matrix, k)
            cell = f" (cell {str(cells[row])!r})" if cells is not None else ""
            name = f" ({kind} {str(names[column])!r})" if names is not None else ""
            n_bad = sum(np.count_nonzero(check(values[b : b + _CHECK_BLOCK])) for b in blocks)
            raise InvalidInputError(
                f"{n_bad} {label} in {what}, the first {values[k].item()!r} at row {row}{cell}, "
                f"column {column}{name}; {advice}"
            )


# the indexes themselves: only an offending gene's or cell's name is made a string
def _names(data: Any) -> Sequence[Any] | None:
    return data.var_names if isinstance(data, AnnData) else None


def _cell_names(data: Any) -> Sequence[Any] | None:
    return data.obs_names if isinstance(data, AnnData) else None


def binary_matrix(
    data: AnnData | np.ndarray | Any,
    *,
    layer: str | None = None,
    what: str = "the data",
    model: str = "this model",
) -> RowMatrix:
    """Return validated 0/1 data as float32 dense or CSR (sparse stays sparse).

    Raises
    ------
    InvalidInputError
        As :func:`row_matrix`, or NaN or values other than 0 and 1 (the message names the
        first offending row and feature).

    """
    matrix = row_matrix(data, layer=layer, what=what)
    check_values(
        matrix,
        (
            (np.isnan, "missing (NaN) values", f"{model} needs complete binary data"),
            (
                lambda v: (v != 0) & (v != 1),
                "non-binary values (other than 0 and 1)",
                "dichotomise first, e.g. omicsembed.pp.dichotomize",
            ),
        ),
        what=what,
        names=_names(data),
        cells=_cell_names(data),
    )
    return matrix


_INTEGER_TOLERANCE = 1e-6


def count_matrix(
    data: AnnData | np.ndarray | Any, *, layer: str | None = None, what: str = "the counts"
) -> RowMatrix:
    """Return validated counts as float32 dense or CSR (sparse stays sparse).

    Raises
    ------
    InvalidInputError
        As :func:`row_matrix`, or NaN, infinite, negative or non-integer values (beyond 1e-6;
        the message names row and gene).

    """
    matrix = row_matrix(data, layer=layer, what=what)
    check_values(
        matrix,
        (
            (lambda v: ~np.isfinite(v), "NaN or infinite values", "counts must be finite"),
            (lambda v: v < 0, "negative values", "counts must be ≥ 0"),
            (
                lambda v: np.abs(v - np.round(v)) > _INTEGER_TOLERANCE,
                "non-integer values",
                "the model needs raw counts, not normalised or log-transformed values (use "
                "the raw counts layer, e.g. layer='counts')",
            ),
        ),
        what=what,
        names=_names(data),
        kind="gene",
        cells=_cell_names(data),
    )
    return matrix


def dense_matrix(data: AnnData | np.ndarray, *, layer: str | None = None) -> np.ndarray:
    """Return the n×m float32 dense matrix of ``data`` (``.X`` or ``.layers[layer]``).

    NaN marks missing values and is kept; infinite values raise.

    Raises
    ------
    InvalidInputError
        As :func:`row_matrix`, or infinite values.

    """
    matrix: Any = row_matrix(data, layer=layer, what="expression values")
    array = np.ascontiguousarray(matrix.toarray() if sparse.issparse(matrix) else matrix)
    check_values(
        array,
        ((np.isinf, "infinite values", "use NaN for missing values"),),
        what="the matrix",
        names=_names(data),
        kind="gene",
        cells=_cell_names(data),
    )
    return array


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
        AnnData that lacks fitted genes (the message lists some) or has duplicated gene names,
        or arrays of the wrong width.

    """
    if isinstance(data, AnnData):
        present = pd.Index(data.var_names)
        check_unique_genes(present)
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


def torch_generator(seed: Seed) -> torch.Generator:
    """Return a CPU torch generator seeded by ``seed`` (same draws on any device).

    ``seed`` is read by :func:`omicsembed._seeds.seed_int`, below 2**63.
    """
    return torch.Generator().manual_seed(seed_int(seed, below=TORCH_SEEDS))


def check_unique_genes(names: pd.Index) -> None:
    """Raise InvalidInputError if gene names (``var_names``) repeat: genes are matched by name."""
    if not names.is_unique:
        repeated = list(names[names.duplicated()].unique()[:5])
        raise InvalidInputError(
            f"gene names repeat, e.g. {repeated}; genes (var_names) are matched by name, so "
            "make them unique first (AnnData.var_names_make_unique())"
        )


def feature_names(data: Any, size: int, prefix: str = "feature") -> list[str]:
    """Column names of AnnData, or ``<prefix>_<index>`` for arrays.

    Raises
    ------
    InvalidInputError
        AnnData whose gene names repeat.

    """
    if isinstance(data, AnnData):
        check_unique_genes(pd.Index(data.var_names))
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
