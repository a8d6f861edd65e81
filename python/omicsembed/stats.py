"""Statistics over Rust kernels: tissue specificity of genes (Tau index, tissue-specific EMD).

Both statistics take a samples × genes expression matrix (``numpy`` array, or an AnnData with
the groups as an ``.obs`` column) and one group label per sample (tissue, cancer type, cell
type ...). They are the tissue-specificity measures of Trofimov et al. 2020, "Factorized
embeddings learns rich and biologically meaningful embedding spaces using factorized tensor
decomposition" (Bioinformatics 36, i417–i426), §3.2:

- :func:`tau_index` — the Tau index of Yanai et al. 2005 (Bioinformatics 21, 650–659), one number
  per gene in ``[0, 1]``;
- :func:`tissue_wasserstein` — for every gene and group, the Wasserstein-1 distance (earth
  mover's distance) between the gene's expression in that group and in all other samples.

The kernels run in Rust (parallel over genes, without the GIL) and read ``float32`` /
``float64`` matrices in place.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from omicsembed import _core
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.io import anndata_matrix

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["TissueWasserstein", "group_codes", "tau_index", "tissue_wasserstein"]

#: Key of :attr:`AnnData.uns` where the AnnData variants record the groups and parameters.
UNS_KEY = "tissue_specificity"


def group_codes(groups: ArrayLike) -> tuple[NDArray[np.int64], NDArray[Any]]:
    """Turn one group label per sample into integer codes.

    Parameters
    ----------
    groups
        1-D labels of the ``n`` samples: strings, integers, a pandas ``Categorical`` /
        categorical ``Series``, ...

    Returns
    -------
    codes : numpy.ndarray
        ``(n,)`` int64 codes in ``0 .. C - 1``.
    names : numpy.ndarray
        ``(C,)`` group names; ``names[codes[i]]`` is the label of sample ``i``. For categorical
        input the order of the categories is kept; otherwise groups are numbered in order of
        first appearance.

    Raises
    ------
    ShapeMismatchError
        If ``groups`` is not 1-D.
    InvalidInputError
        If a label is missing (NaN / None), a category has no samples (e.g. an unused pandas
        category), or there are fewer than two groups.

    """
    dtype = getattr(groups, "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype):
        categorical = pd.Categorical(groups)
        codes = np.asarray(categorical.codes, dtype=np.int64)
        names = np.asarray(categorical.categories)
    else:
        values = groups.to_numpy() if isinstance(groups, pd.Series | pd.Index) else groups
        array = np.asarray(values)
        if array.ndim != 1:
            raise ShapeMismatchError(
                f"groups must be 1-D (one label per sample), got shape {array.shape}"
            )
        raw_codes, uniques = pd.factorize(array, sort=False, use_na_sentinel=True)
        codes = np.asarray(raw_codes, dtype=np.int64)
        names = np.asarray(uniques)
    if codes.ndim != 1:
        raise ShapeMismatchError(
            f"groups must be 1-D (one label per sample), got shape {codes.shape}"
        )
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        raise InvalidInputError(
            f"groups has {missing.size} missing label(s) (NaN/None), first at row(s) "
            f"{missing[:5].tolist()}; drop those samples or give them a label"
        )
    counts = np.bincount(codes, minlength=len(names))
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise InvalidInputError(
            f"group(s) {names[empty][:5].tolist()} have no samples (unused categories?); "
            "remove them first, e.g. with .cat.remove_unused_categories()"
        )
    if len(names) < 2:
        raise InvalidInputError(
            f"tissue specificity compares groups: need at least 2 groups, got {len(names)} "
            f"({names.tolist()})"
        )
    return codes, names


#: Dense values materialised at once when the input is a scipy sparse matrix (genes are
#: densified in chunks of about this many values: 2**25 values = 256 MiB of float64).
_SPARSE_CHUNK_VALUES = 2**25

_Dense = NDArray[np.float32] | NDArray[np.float64]


def _as_matrix(X: Any) -> Any:
    """Validate the shape of ``X``; return a contiguous float32/float64 array or a sparse matrix.

    scipy sparse matrices are returned as CSC (densified by gene chunks in :func:`_apply`).
    """
    if sp.issparse(X):
        if X.ndim != 2:
            raise ShapeMismatchError(f"X must be a 2-D samples × genes matrix, got {X.shape}")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise InvalidInputError(
                f"X is empty (shape {X.shape}); pass at least one sample and one gene"
            )
        if X.dtype.kind not in "biuf":
            raise InvalidInputError(f"X must be numeric, got dtype {X.dtype}")
        return sp.csc_matrix(X)
    array = np.asarray(X)
    if array.ndim != 2:
        raise ShapeMismatchError(
            f"X must be a 2-D samples × genes matrix, got {array.ndim}-D with shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(
            f"X is empty (shape {array.shape}); pass at least one sample and one gene"
        )
    if array.dtype != np.float32 and array.dtype != np.float64:
        if array.dtype.kind not in "biuf":
            raise InvalidInputError(f"X must be numeric, got dtype {array.dtype}")
        array = array.astype(np.float64)
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)
    return array


def _check_sparse_values(matrix: sp.csc_matrix, *, nonnegative: bool) -> None:
    """Raise like the Rust kernels for a NaN/inf (or negative) stored value of a CSC matrix."""
    data = matrix.data
    bad = ~np.isfinite(data)
    if nonnegative:
        bad |= data < 0
    if not bad.any():
        return
    k = int(np.flatnonzero(bad)[0])
    column = int(np.searchsorted(matrix.indptr, k, side="right") - 1)
    row, value = int(matrix.indices[k]), data[k]
    if np.isfinite(value):
        raise InvalidInputError(
            f"X has a negative value ({value}) at row {row}, column {column}; Tau is defined for "
            "non-negative expression: transform to a non-negative scale first (e.g. "
            "2**log_ratio, or log1p of counts)"
        )
    what = "NaN" if np.isnan(value) else "an infinite value"
    raise InvalidInputError(
        f"X contains {what} at row {row}, column {column}; remove or impute non-finite values first"
    )


def _apply(
    kernel: Callable[[_Dense, NDArray[np.int64], int], NDArray[np.float64]],
    matrix: Any,
    codes: NDArray[np.int64],
    n_groups: int,
    *,
    nonnegative: bool,
) -> NDArray[np.float64]:
    """Run a per-gene kernel on a dense array, or on a CSC matrix densified by gene chunks."""
    if not sp.issparse(matrix):
        return kernel(matrix, codes, n_groups)
    _check_sparse_values(matrix, nonnegative=nonnegative)
    n, m = matrix.shape
    width = max(1, _SPARSE_CHUNK_VALUES // n)
    parts = [
        kernel(_as_matrix(matrix[:, j0 : j0 + width].toarray(order="F")), codes, n_groups)
        for j0 in range(0, m, width)
    ]
    return np.concatenate(parts, axis=0)


def _is_anndata(X: object) -> bool:
    # No AnnData can exist unless anndata was imported: avoid importing it (slow) for arrays.
    anndata = sys.modules.get("anndata")
    return anndata is not None and isinstance(X, anndata.AnnData)


def _prepare(
    X: Any, groups: ArrayLike | str, layer: str | None
) -> tuple[Any, NDArray[np.int64], NDArray[Any], str]:
    """Resolve (matrix, codes, names, groupby description) for arrays and AnnData."""
    if _is_anndata(X):
        if isinstance(groups, str):
            if groups not in X.obs.columns:
                raise InvalidInputError(
                    f"{groups!r} is not a column of adata.obs (columns: {list(X.obs.columns)})"
                )
            labels: ArrayLike = X.obs[groups]
            groupby = groups
        else:
            labels = groups
            groupby = "<labels>"
        matrix = anndata_matrix(X, layer)
    else:
        if isinstance(groups, str):
            raise InvalidInputError(
                "groups is a string (an .obs column name), which needs an AnnData; with an array "
                "pass one label per sample"
            )
        if layer is not None:
            raise InvalidInputError("layer= only applies to AnnData input")
        matrix, labels, groupby = X, groups, "<labels>"
    array = _as_matrix(matrix)
    codes, names = group_codes(labels)
    if len(codes) != array.shape[0]:
        raise ShapeMismatchError(
            f"groups has {len(codes)} labels but X has {array.shape[0]} rows (samples); pass "
            "one label per sample"
        )
    return array, codes, names, groupby


def _record(adata: AnnData, key: str, names: NDArray[Any], groupby: str, layer: str | None) -> None:
    entry = adata.uns.get(UNS_KEY)
    if not isinstance(entry, dict):
        entry = {}
    entry["groups"] = [str(name) for name in names]
    params = entry.get("params")
    if not isinstance(params, dict):
        params = {}
    params[key] = {"groupby": groupby, "layer": "X" if layer is None else layer}
    entry["params"] = params
    adata.uns[UNS_KEY] = entry


@overload
def tau_index(
    X: AnnData, groups: ArrayLike | str, *, layer: str | None = ..., copy: Literal[False] = ...
) -> None: ...
@overload
def tau_index(
    X: AnnData, groups: ArrayLike | str, *, layer: str | None = ..., copy: Literal[True]
) -> AnnData: ...
@overload
def tau_index(
    X: ArrayLike, groups: ArrayLike, *, layer: None = ..., copy: bool = ...
) -> NDArray[np.float64]: ...
def tau_index(
    X: ArrayLike | AnnData,
    groups: ArrayLike | str,
    *,
    layer: str | None = None,
    copy: bool = False,
) -> NDArray[np.float64] | AnnData | None:
    """Tau tissue-specificity index of every gene.

    For gene ``j`` with mean expression ``μ_c`` in group ``c`` (``C`` groups),
    ``x̂_c = μ_c / max_c μ_c`` and ``τ_j = Σ_c (1 − x̂_c) / (C − 1)``: 0 when every group has the
    same mean, 1 when a single group expresses the gene. Yanai et al. 2005 (Bioinformatics 21,
    650–659), as used by Trofimov et al. 2020 (Bioinformatics 36), §3.2.

    Parameters
    ----------
    X
        ``(n, m)`` samples × genes expression on a **non-negative** scale (e.g. ``log1p`` of
        counts, or ``2**x`` of log-ratios), float32 or float64 (other numeric dtypes are
        converted to float64; float32/float64 C- or Fortran-ordered arrays are read in place).
        A scipy sparse matrix is densified gene chunk by gene chunk (about 256 MiB at a time).
        Or an AnnData (``.X`` or ``layer``, dense or sparse).
    groups
        ``(n,)`` group label of every sample (any labels, see :func:`group_codes`), or with an
        AnnData the name of an ``.obs`` column.
    layer
        AnnData layer to read instead of ``.X``.
    copy
        AnnData only: write into a copy and return it instead of modifying ``X`` in place.

    Returns
    -------
    numpy.ndarray or AnnData or None
        With an array: ``(m,)`` float64 Tau in ``[0, 1]``; genes whose group means are all 0 get
        NaN. With an AnnData: writes ``.var["tau"]`` and ``.uns["tissue_specificity"]``
        (``{"groups": [...], "params": {"tau": {...}}}``) and returns None, or the copy when
        ``copy=True``.

    Raises
    ------
    InvalidInputError
        Negative, NaN or infinite values (with their row and column), missing labels, empty
        groups, fewer than two groups, an empty matrix, an unknown ``.obs`` column or layer.
    ShapeMismatchError
        ``X`` not 2-D, or ``len(groups) != n``.

    """
    array, codes, names, groupby = _prepare(X, groups, layer)
    tau = _apply(_core.tau_index, array, codes, len(names), nonnegative=True)
    if not _is_anndata(X):
        return tau
    adata = cast("AnnData", X)
    if copy:
        adata = adata.copy()
    adata.var["tau"] = tau
    _record(adata, "tau", names, groupby, layer)
    return adata if copy else None


@dataclass(frozen=True, eq=False)
class TissueWasserstein:
    """Tissue-specific Wasserstein distances of every gene (result of :func:`tissue_wasserstein`).

    Attributes
    ----------
    distances : numpy.ndarray
        ``(m, C)`` float64, ``distances[j, c] = W1(X[groups == c, j], X[groups != c, j]) ≥ 0``
        in the units of ``X``.
    groups : numpy.ndarray
        ``(C,)`` group names, the columns of ``distances``.

    """

    distances: NDArray[np.float64]
    groups: NDArray[Any]

    def top_group(self) -> NDArray[Any]:
        """Name of the group each gene is most specific to (argmax over groups), shape ``(m,)``."""
        return self.groups[np.argmax(self.distances, axis=1)]

    def specific_genes(self, percentile: float = 65.0) -> NDArray[np.bool_]:
        """Genes specific to each group: distance above the group's ``percentile``-th percentile.

        Trofimov et al. 2020, §3.2 call a gene specific to a tissue when its EMD for that tissue
        is above the 65th percentile of the tissue's EMDs over all genes.

        Parameters
        ----------
        percentile
            In ``[0, 100]``; the percentile of each group's column (numpy's linear
            interpolation).

        Returns
        -------
        numpy.ndarray
            ``(m, C)`` bool, True where ``distances[j, c]`` is strictly above the threshold of
            group ``c``.

        Raises
        ------
        InvalidInputError
            If ``percentile`` is not a number in ``[0, 100]``.

        """
        if not 0.0 <= float(percentile) <= 100.0:
            raise InvalidInputError(f"percentile must be in [0, 100], got {percentile}")
        thresholds = np.percentile(self.distances, float(percentile), axis=0)
        return np.asarray(self.distances > thresholds[np.newaxis, :])

    def to_frame(self, gene_names: ArrayLike | None = None) -> pd.DataFrame:
        """Return the distances as a genes × groups :class:`pandas.DataFrame`.

        Parameters
        ----------
        gene_names
            ``(m,)`` index of the frame (default ``0 .. m - 1``).

        Raises
        ------
        ShapeMismatchError
            If ``gene_names`` does not have ``m`` entries.

        """
        index = None
        if gene_names is not None:
            index = pd.Index(np.asarray(gene_names))
            if len(index) != self.distances.shape[0]:
                raise ShapeMismatchError(
                    f"gene_names has {len(index)} entries but there are "
                    f"{self.distances.shape[0]} genes"
                )
        return pd.DataFrame(self.distances, index=index, columns=pd.Index(self.groups))


@overload
def tissue_wasserstein(
    X: AnnData, groups: ArrayLike | str, *, layer: str | None = ..., copy: Literal[False] = ...
) -> None: ...
@overload
def tissue_wasserstein(
    X: AnnData, groups: ArrayLike | str, *, layer: str | None = ..., copy: Literal[True]
) -> AnnData: ...
@overload
def tissue_wasserstein(
    X: ArrayLike, groups: ArrayLike, *, layer: None = ..., copy: bool = ...
) -> TissueWasserstein: ...
def tissue_wasserstein(
    X: ArrayLike | AnnData,
    groups: ArrayLike | str,
    *,
    layer: str | None = None,
    copy: bool = False,
) -> TissueWasserstein | AnnData | None:
    """Tissue-specific Wasserstein distance (EMD) of every gene and group.

    For gene ``j`` and group ``c``: the Wasserstein-1 (earth mover's) distance between the
    empirical distributions of ``X[groups == c, j]`` and ``X[groups != c, j]``, exactly as
    :func:`scipy.stats.wasserstein_distance` computes it (agreement to about 1e-12 relative).
    Trofimov et al. 2020 (Bioinformatics 36), §3.2 use it to find tissue-specific genes (see
    :meth:`TissueWasserstein.specific_genes`).

    Each gene is sorted once and all groups are computed from that sorted column in
    ``O(n log n + C)`` (see ``rust/tissue/emd.rs`` for the algorithm and its rounding analysis),
    in parallel over genes without the GIL.

    Parameters
    ----------
    X
        ``(n, m)`` samples × genes expression (any real values), float32 or float64 (other
        numeric dtypes are converted to float64; float32/float64 C- or Fortran-ordered arrays are
        read in place). A scipy sparse matrix is densified gene chunk by gene chunk (about
        256 MiB at a time). Or an AnnData (``.X`` or ``layer``, dense or sparse).
    groups
        ``(n,)`` group label of every sample (any labels, see :func:`group_codes`), or with an
        AnnData the name of an ``.obs`` column.
    layer
        AnnData layer to read instead of ``.X``.
    copy
        AnnData only: write into a copy and return it instead of modifying ``X`` in place.

    Returns
    -------
    TissueWasserstein or AnnData or None
        With an array: a :class:`TissueWasserstein` holding the ``(m, C)`` float64 distances and
        the ``(C,)`` group names. With an AnnData: writes ``.varm["tissue_wasserstein"]``
        (``(m, C)``), ``.var["tissue_wasserstein_top_group"]`` (categorical) and
        ``.uns["tissue_specificity"]`` (``{"groups": [...], "params": {...}}``; the columns of
        the ``.varm`` entry are these groups) and returns None, or the copy when ``copy=True``.

    Raises
    ------
    InvalidInputError
        NaN or infinite values (with their row and column), missing labels, empty groups, fewer
        than two groups, an empty matrix, an unknown ``.obs`` column or layer.
    ShapeMismatchError
        ``X`` not 2-D, or ``len(groups) != n``.

    """
    array, codes, names, groupby = _prepare(X, groups, layer)
    result = TissueWasserstein(
        distances=_apply(_core.tissue_wasserstein, array, codes, len(names), nonnegative=False),
        groups=names,
    )
    if not _is_anndata(X):
        return result
    adata = cast("AnnData", X)
    if copy:
        adata = adata.copy()
    adata.varm["tissue_wasserstein"] = result.distances
    adata.var["tissue_wasserstein_top_group"] = pd.Categorical(
        result.top_group(), categories=pd.Index(names)
    )
    _record(adata, "tissue_wasserstein", names, groupby, layer)
    return adata if copy else None
