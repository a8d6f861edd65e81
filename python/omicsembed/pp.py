"""Preprocessing of samples x genes matrices: log, variable genes, scaling, size factors, binary.

Every function accepts a numpy array (and returns an array; the input is never modified) or an
:class:`anndata.AnnData` (first argument; keyword-only options; ``copy=False`` modifies it in
place and returns ``None`` or returns a modified copy when ``copy=True``), as in scanpy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import scipy.sparse as sp

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.io import anndata_matrix

if TYPE_CHECKING:
    import anndata as ad
    from numpy.typing import ArrayLike, NDArray

__all__ = [
    "dichotomize",
    "highly_variable",
    "log_transform",
    "normalize_size_factors",
    "size_factors",
    "standardize",
]


def _is_anndata(data: object) -> bool:
    try:
        import anndata as ad
    except ImportError:  # pragma: no cover - anndata is a dependency
        return False
    return isinstance(data, ad.AnnData)


def _set_matrix(adata: ad.AnnData, layer: str | None, value: Any) -> None:
    if layer is None:
        adata.X = value
    else:
        adata.layers[layer] = value


def _as_float_2d(x: Any, what: str) -> NDArray[np.floating[Any]]:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise InvalidInputError(f"{what} must be a 2-D samples x genes matrix, got {arr.ndim}-D")
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr


# --------------------------------------------------------------------------------------------
# log transform
# --------------------------------------------------------------------------------------------
def _log_values(
    values: NDArray[np.floating[Any]], base: float | None, pseudocount: float, what: str
) -> NDArray[np.floating[Any]]:
    finite = np.isfinite(values)
    if not np.all(finite | np.isnan(values)):
        raise InvalidInputError(f"{what} contains infinite values; remove or impute them first")
    with np.errstate(invalid="ignore"):
        bad = values <= -pseudocount
    if np.any(bad):
        flat = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"{what} has value {values.flat[flat]!r} <= -pseudocount ({-pseudocount}) "
            f"(first at flat index {flat}); the log of a non-positive number is undefined. "
            "Expected non-negative abundances (TPM, counts); pass a larger pseudocount or "
            "check whether the data are already log-transformed"
        )
    out = np.log1p(values) if pseudocount == 1.0 else np.log(values + pseudocount)
    if base is not None:
        out = out / math.log(base)
    return out.astype(values.dtype, copy=False)


# anndata ships no type information (AnnData is Any to mypy): arrays get a precise type.
@overload
def log_transform(
    data: NDArray[Any],
    *,
    base: float | None = ...,
    pseudocount: float = ...,
    layer: str | None = ...,
    copy: bool = ...,
) -> NDArray[np.floating[Any]]: ...
@overload
def log_transform(
    data: ad.AnnData | ArrayLike,
    *,
    base: float | None = ...,
    pseudocount: float = ...,
    layer: str | None = ...,
    copy: bool = ...,
) -> Any: ...
def log_transform(
    data: Any,
    *,
    base: float | None = 10,
    pseudocount: float = 1.0,
    layer: str | None = None,
    copy: bool = False,
) -> Any:
    """Logarithm with a pseudocount: ``log_base(x + pseudocount)``, by default log10(TPM + 1).

    The default is the transform of Trofimov et al. 2020 (Bioinformatics), §2.1, applied to
    TPM values before training factorized embeddings. NaN (missing values) stay NaN.

    Parameters
    ----------
    data
        Array (n_samples, n_genes) of non-negative abundances (float input keeps its dtype;
        integer input becomes float64), or AnnData (``X`` or ``layers[layer]``; dense, or
        scipy sparse when ``pseudocount == 1`` so that zeros stay zeros).
    base
        Logarithm base (> 0, != 1); ``None`` for the natural logarithm.
    pseudocount
        Added before the logarithm (>= 0). Every value must be > ``-pseudocount``.
    layer
        AnnData only: transform ``layers[layer]`` instead of ``X`` (the result replaces it).
    copy
        AnnData only: return a transformed copy instead of modifying ``data`` in place.

    Returns
    -------
    numpy.ndarray or anndata.AnnData or None
        Array input: a new array of the same shape. AnnData: ``None`` (in place) or the copy;
        ``uns["log_transform"]["params"]`` records ``base`` and ``pseudocount``.

    Raises
    ------
    InvalidInputError
        If ``base`` or ``pseudocount`` is invalid, the matrix is not numeric 2-D, contains
        infinite values or values <= ``-pseudocount``, or is sparse with ``pseudocount != 1``.

    """
    if base is not None and (not math.isfinite(base) or base <= 0 or base == 1):
        raise InvalidInputError(
            f"base must be a positive number other than 1 (or None), got {base}"
        )
    if not math.isfinite(pseudocount) or pseudocount < 0:
        raise InvalidInputError(f"pseudocount must be a finite number >= 0, got {pseudocount}")

    if not _is_anndata(data):
        if layer is not None:
            raise InvalidInputError("layer= only applies to AnnData input")
        if sp.issparse(data):
            raise InvalidInputError(
                "pass sparse matrices inside an AnnData, or densify with .toarray() first"
            )
        return _log_values(_as_float_2d(data, "data"), base, pseudocount, "data")

    adata = data.copy() if copy else data
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    x = anndata_matrix(adata, layer)
    if sp.issparse(x):
        if pseudocount != 1.0:
            raise InvalidInputError(
                f"{where} is sparse and pseudocount={pseudocount} would make zeros non-zero; "
                "use pseudocount=1 or densify the matrix first"
            )
        x = x.astype(x.dtype if x.dtype.kind == "f" else np.float64, copy=True)
        x.data = _log_values(np.asarray(x.data), base, pseudocount, where)
        new: Any = x
    else:
        new = _log_values(_as_float_2d(x, where), base, pseudocount, where)
    _set_matrix(adata, layer, new)
    adata.uns["log_transform"] = {
        "params": {"base": base, "pseudocount": pseudocount, "layer": layer}
    }
    return adata if copy else None


# --------------------------------------------------------------------------------------------
# highly variable genes
# --------------------------------------------------------------------------------------------
def _column_variance(x: Any) -> NDArray[np.float64]:
    if sp.issparse(x):
        xc = sp.csr_matrix(x, dtype=np.float64)
        mean = np.asarray(xc.mean(axis=0)).ravel()
        mean_sq = np.asarray(xc.multiply(xc).mean(axis=0)).ravel()
        return np.maximum(mean_sq - mean**2, 0.0)
    arr = _as_float_2d(x, "data").astype(np.float64, copy=False)
    n_obs = np.sum(~np.isnan(arr), axis=0)
    var = np.full(arr.shape[1], np.nan)
    ok = n_obs > 0
    if np.any(ok):
        sub = arr[:, ok]
        mean = np.nansum(sub, axis=0) / n_obs[ok]
        var[ok] = np.nansum((sub - mean) ** 2, axis=0) / n_obs[ok]
    return var


def highly_variable(
    data: ad.AnnData | ArrayLike, n_top: int, *, layer: str | None = None
) -> NDArray[np.int64]:
    """Column indices of the ``n_top`` genes of largest variance.

    Variance across samples (population variance, ``ddof=0``; the ranking does not depend on
    ``ddof``), ignoring NaN entries; genes with no observed value rank last.

    Parameters
    ----------
    data
        Array (n_samples, n_genes), dense, or AnnData (``X`` or ``layers[layer]``, dense or
        scipy sparse).
    n_top
        Number of genes to keep, ``1 <= n_top <= n_genes``.
    layer
        AnnData only: rank the genes of ``layers[layer]``.

    Returns
    -------
    numpy.ndarray
        int64 (n_top,), column indices ordered by decreasing variance (ties: lower index
        first). Use ``np.sort`` to keep genes in their original order, e.g.
        ``adata[:, np.sort(idx)]``.

    Raises
    ------
    InvalidInputError
        If ``n_top`` is out of range or the matrix is not numeric 2-D.

    """
    if _is_anndata(data):
        x: Any = anndata_matrix(data, layer)
    else:
        if layer is not None:
            raise InvalidInputError("layer= only applies to AnnData input")
        x = data if sp.issparse(data) else _as_float_2d(data, "data")
    n_genes = x.shape[1]
    if isinstance(n_top, bool) or not isinstance(n_top, int | np.integer):
        raise InvalidInputError(f"n_top must be an integer, got {n_top!r}")
    if not 1 <= n_top <= n_genes:
        raise InvalidInputError(f"n_top must be between 1 and n_genes={n_genes}, got {n_top}")
    var = _column_variance(x)
    key = np.where(np.isnan(var), -np.inf, var)
    order = np.lexsort((np.arange(n_genes), -key))
    return order[: int(n_top)].astype(np.int64)


# --------------------------------------------------------------------------------------------
# standardize
# --------------------------------------------------------------------------------------------
def _standardize_values(
    x: NDArray[np.floating[Any]], ddof: int
) -> tuple[NDArray[np.floating[Any]], NDArray[np.float64], NDArray[np.float64]]:
    x64 = x.astype(np.float64, copy=False)
    n_obs = np.sum(~np.isnan(x64), axis=0)
    safe_n = np.maximum(n_obs, 1)
    mean = np.nansum(x64, axis=0) / safe_n
    centered = x64 - mean
    ss = np.nansum(centered**2, axis=0)
    denom = np.maximum(n_obs - ddof, 1)
    std = np.sqrt(ss / denom)
    scale = np.where(std > 0, std, 1.0)
    return (centered / scale).astype(x.dtype, copy=False), mean, std


@overload
def standardize(
    data: NDArray[Any], *, ddof: int = ..., layer: str | None = ..., copy: bool = ...
) -> NDArray[np.floating[Any]]: ...
@overload
def standardize(
    data: ad.AnnData | ArrayLike, *, ddof: int = ..., layer: str | None = ..., copy: bool = ...
) -> Any: ...
def standardize(data: Any, *, ddof: int = 0, layer: str | None = None, copy: bool = False) -> Any:
    """Centre every gene to mean 0 and scale it to standard deviation 1 (z-scores).

    NaN entries are ignored for the statistics and stay NaN. Constant genes are only centred
    (they become 0).

    Parameters
    ----------
    data
        Dense array (n_samples, n_genes) or AnnData (``X`` or ``layers[layer]``; must be
        dense: centring destroys sparsity).
    ddof
        Delta degrees of freedom of the standard deviation (0: population, 1: sample).
    layer
        AnnData only: standardize ``layers[layer]``.
    copy
        AnnData only: return a standardized copy instead of modifying in place.

    Returns
    -------
    numpy.ndarray or anndata.AnnData or None
        Array input: a new array (float dtype kept; integers become float64). AnnData:
        ``None`` or the copy; ``var["mean"]`` and ``var["std"]`` hold the statistics used and
        ``uns["standardize"]["params"]`` the options.

    Raises
    ------
    InvalidInputError
        If the matrix is sparse, not numeric 2-D, contains infinite values, or ``ddof < 0``.

    """
    if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
        raise InvalidInputError(f"ddof must be an integer >= 0, got {ddof!r}")
    if not _is_anndata(data):
        if layer is not None:
            raise InvalidInputError("layer= only applies to AnnData input")
        if sp.issparse(data):
            raise InvalidInputError("standardize needs a dense matrix; use .toarray() first")
        arr = _as_float_2d(data, "data")
        _check_no_inf(arr, "data")
        return _standardize_values(arr, ddof)[0]

    adata = data.copy() if copy else data
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    x = anndata_matrix(adata, layer)
    if sp.issparse(x):
        raise InvalidInputError(f"{where} is sparse; standardize needs a dense matrix")
    arr = _as_float_2d(x, where)
    _check_no_inf(arr, where)
    z, mean, std = _standardize_values(arr, ddof)
    _set_matrix(adata, layer, z)
    adata.var["mean"] = mean
    adata.var["std"] = std
    adata.uns["standardize"] = {"params": {"ddof": ddof, "layer": layer}}
    return adata if copy else None


def _check_no_inf(arr: NDArray[np.floating[Any]], what: str) -> None:
    if np.isinf(arr).any():
        raise InvalidInputError(f"{what} contains infinite values; remove or impute them first")


# --------------------------------------------------------------------------------------------
# size factors (DESeq median of ratios)
# --------------------------------------------------------------------------------------------
def _where(data: Any, layer: str | None) -> str:
    if not _is_anndata(data):
        return "data"
    return "adata.X" if layer is None else f"adata.layers[{layer!r}]"


def _count_matrix(data: Any, layer: str | None, what: str) -> Any:
    """Return validated counts: float64 ndarray or scipy sparse (no NaN, inf or negatives)."""
    x = anndata_matrix(data, layer)
    if sp.issparse(x):
        if x.ndim != 2:
            raise InvalidInputError(f"{what} must be a 2-D samples x genes matrix")
        if x.dtype.kind not in "biuf":
            raise InvalidInputError(f"{what} must be numeric, got dtype {x.dtype}")
        x = _canonical_sparse(x)
        values = np.asarray(x.data, dtype=np.float64)
    else:
        x = _as_float_2d(x, what).astype(np.float64, copy=False)
        values = x
    if not np.isfinite(values).all():
        raise InvalidInputError(
            f"{what} contains NaN or infinite values; size factors need complete counts"
        )
    if values.size and values.min() < 0:
        raise InvalidInputError(
            f"{what} has negative values (minimum {values.min()!r}); size factors need "
            "non-negative counts, not log-transformed or centred data"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidInputError(f"{what} is empty (shape {x.shape})")
    return x


def _median_of_ratios(x: Any, what: str) -> NDArray[np.float64]:
    n_samples = x.shape[0]
    if sp.issparse(x):
        csc = sp.csc_matrix(x)
        positive = np.asarray((csc > 0).sum(axis=0)).ravel() == n_samples
        used = np.asarray(csc[:, positive].toarray(), dtype=np.float64)
    else:
        positive = np.all(x > 0, axis=0)
        used = x[:, positive]
    if not positive.any():
        raise InvalidInputError(
            f"no gene of {what} is positive in every sample, so the geometric means of the "
            "median-of-ratios method are all zero; remove empty samples, aggregate sparse "
            "single-cell counts (pseudo-bulk), or pick a subset of well-expressed genes"
        )
    log_counts = np.log(used)
    log_geometric_means = log_counts.mean(axis=0)
    return np.exp(np.median(log_counts - log_geometric_means, axis=1))


def _positive_counts(x: Any, what: str) -> NDArray[np.float64]:
    """DESeq2's ``type="poscounts"`` size factors (see :func:`size_factors`)."""
    csr = sp.csr_matrix(x, dtype=np.float64)
    csr.eliminate_zeros()
    n_samples = csr.shape[0]
    log_values = np.log(csr.data)
    # per gene: Σ log of the positive counts / number of samples (zeros count in the divisor)
    log_geometric_means = np.bincount(csr.indices, log_values, csr.shape[1]) / n_samples
    ratios = log_values - log_geometric_means[csr.indices]
    # every stored value is positive and its gene has a positive count: each one is used
    factors = np.empty(n_samples)
    for row in range(n_samples):
        used = ratios[csr.indptr[row] : csr.indptr[row + 1]]
        if used.size == 0:
            raise InvalidInputError(
                f"sample {row} of {what} has no positive count; its size factor is undefined "
                "(remove empty samples)"
            )
        factors[row] = np.median(used)
    # scaled to geometric mean 1, as DESeq2 does for its own geometric means
    return np.exp(factors - factors.mean())


def _size_factors_by(x: Any, what: str, method: str) -> NDArray[np.float64]:
    if method == "ratio":
        return _median_of_ratios(x, what)
    if method == "poscounts":
        return _positive_counts(x, what)
    raise InvalidInputError(f"method must be 'ratio' or 'poscounts', got {method!r}")


@overload
def size_factors(
    data: NDArray[Any],
    *,
    method: Literal["ratio", "poscounts"] = ...,
    layer: str | None = ...,
    copy: bool = ...,
) -> NDArray[np.float64]: ...
@overload
def size_factors(
    data: ad.AnnData | ArrayLike,
    *,
    method: Literal["ratio", "poscounts"] = ...,
    layer: str | None = ...,
    copy: bool = ...,
) -> Any: ...
def size_factors(
    data: Any,
    *,
    method: Literal["ratio", "poscounts"] = "ratio",
    layer: str | None = None,
    copy: bool = False,
) -> Any:
    """DESeq size factors by the median-of-ratios method (Anders & Huber 2010, eq. 5).

    With counts ``k[i, g]`` (sample ``i``, gene ``g``), the geometric mean of each gene over
    the samples is the reference sample; the size factor of sample ``i`` is the median over
    genes of ``k[i, g] / geometric_mean_g``:

        s_i = median_g  k[i, g] / (prod_j k[j, g]) ** (1 / n_samples)

    Genes with a zero count in any sample have a zero geometric mean and are excluded from the
    median, as in DESeq2's ``estimateSizeFactorsForMatrix``, which also takes the median on
    the log scale: with an even number of genes, the factor is the geometric mean of the two
    middle ratios. The factors are not
    rescaled (their geometric mean is close to, not exactly, 1). Scaling sample ``i`` by ``c``
    multiplies its factor relative to every other sample's by ``c`` (the reference moves too:
    its own factor changes by ``c ** (1 - 1 / n_samples)``, the others' by
    ``c ** (-1 / n_samples)``).

    Sparse single-cell counts rarely have a gene positive in every cell; ``method="poscounts"``
    is DESeq2's estimator for them (``estimateSizeFactors(type="poscounts")``): the geometric
    mean of gene ``g`` is ``exp(Σ_{k[j,g] > 0} log k[j, g] / n_samples)`` (zeros left out of
    the sum, not the divisor), the factor of sample ``i`` the median of
    ``k[i, g] / geometric_mean_g`` over its genes with ``k[i, g] > 0``, and the factors are
    divided by their geometric mean. With every count positive it is the ratio method's
    factors rescaled to geometric mean 1.

    Parameters
    ----------
    data
        Counts, samples x genes: array (n_samples, n_genes) of non-negative numbers (integer
        or float; dense or scipy sparse) or AnnData (``X`` or ``layers[layer]``).
    method
        ``"ratio"`` (median of ratios, DESeq) or ``"poscounts"`` (DESeq2, for sparse counts).
    layer
        AnnData only: use ``layers[layer]``.
    copy
        AnnData only: return a copy with the result instead of writing into ``data``.

    Returns
    -------
    numpy.ndarray or anndata.AnnData or None
        Array input: float64 (n_samples,) positive size factors. AnnData: ``None`` (in place)
        or the copy; ``obs["size_factors"]`` holds the factors and
        ``uns["size_factors"]["params"]`` the layer and the number of genes used.

    Raises
    ------
    InvalidInputError
        If the matrix is not numeric 2-D, is empty, has NaN, infinite or negative values, if
        no gene is positive in every sample (``"ratio"``; e.g. an all-zero sample, or sparse
        single-cell data: use ``"poscounts"``), if a sample has no positive count
        (``"poscounts"``), or for an unknown method.

    Examples
    --------
    >>> import numpy as np
    >>> base = np.array([10.0, 20.0, 5.0, 8.0])
    >>> size_factors(np.vstack([base, 2 * base, 4 * base]))
    array([0.5, 1. , 2. ])

    """
    where = _where(data, layer)
    if not _is_anndata(data):
        return _size_factors_by(_count_matrix(data, layer, where), where, method)
    adata = data.copy() if copy else data
    x = _count_matrix(adata, layer, where)
    factors = _size_factors_by(x, where, method)
    positive_in = np.asarray((x > 0).sum(axis=0)).ravel()
    n_used = int(np.count_nonzero(positive_in == x.shape[0] if method == "ratio" else positive_in))
    adata.obs["size_factors"] = factors
    adata.uns["size_factors"] = {
        "params": {"layer": layer, "method": method, "n_genes_used": n_used}
    }
    return adata if copy else None


@overload
def normalize_size_factors(
    data: NDArray[Any],
    *,
    factors: ArrayLike | None = ...,
    method: Literal["ratio", "poscounts"] = ...,
    layer: str | None = ...,
    copy: bool = ...,
) -> NDArray[np.float64]: ...
@overload
def normalize_size_factors(
    data: ad.AnnData | ArrayLike,
    *,
    factors: ArrayLike | None = ...,
    method: Literal["ratio", "poscounts"] = ...,
    layer: str | None = ...,
    copy: bool = ...,
) -> Any: ...
def normalize_size_factors(
    data: Any,
    *,
    factors: ArrayLike | None = None,
    method: Literal["ratio", "poscounts"] = "ratio",
    layer: str | None = None,
    copy: bool = False,
) -> Any:
    """Divide every sample's counts by its size factor (DESeq normalised counts).

    Parameters
    ----------
    data
        Counts, samples x genes: array (dense or scipy sparse) or AnnData (``X`` or
        ``layers[layer]``), as for :func:`size_factors`.
    factors
        Positive size factors, one per sample; ``None`` computes them with
        :func:`size_factors` (Anders & Huber 2010).
    method
        Method of :func:`size_factors` when ``factors`` is None.
    layer
        AnnData only: normalise ``layers[layer]`` (the result replaces it).
    copy
        AnnData only: return a normalised copy instead of modifying ``data``.

    Returns
    -------
    numpy.ndarray or scipy.sparse matrix or anndata.AnnData or None
        Array input: float64 normalised counts of the same shape (sparse stays sparse CSR).
        AnnData: ``None`` or the copy; ``obs["size_factors"]`` holds the factors used.

    Raises
    ------
    InvalidInputError
        Invalid counts (see :func:`size_factors`) or factors that are not finite and positive.
    ShapeMismatchError
        If ``factors`` does not have one value per sample.

    """
    where = _where(data, layer)
    adata = (data.copy() if copy else data) if _is_anndata(data) else None
    x = _count_matrix(adata if adata is not None else data, layer, where)
    if factors is None:
        scale = _size_factors_by(x, where, method)
    else:
        scale = np.asarray(factors, dtype=np.float64).ravel()
        if scale.shape != (x.shape[0],):
            raise ShapeMismatchError(
                f"factors must have one value per sample ({x.shape[0]}), got shape {scale.shape}"
            )
        bad = ~(np.isfinite(scale) & (scale > 0))
        if bad.any():
            raise InvalidInputError(
                f"size factors must be finite and > 0; sample {int(np.flatnonzero(bad)[0])} "
                f"has {scale[bad][0]!r}"
            )
        # a tiny factor divides a count past float64
        largest = (
            np.asarray(abs(x).max(axis=1).todense()).ravel()
            if sp.issparse(x)
            else np.abs(x).max(axis=1, initial=0.0)
        )
        with np.errstate(over="ignore"):
            overflow = ~np.isfinite(largest / scale)
        if overflow.any():
            row = int(np.flatnonzero(overflow)[0])
            raise InvalidInputError(
                f"size factor {scale[row]!r} of sample {row} divides its counts past float64; "
                "give factors of a sensible scale"
            )
    if sp.issparse(x):
        normalized: Any = sp.csr_matrix(sp.diags(1.0 / scale) @ sp.csr_matrix(x, dtype=np.float64))
    else:
        normalized = x / scale[:, None]
    if adata is None:
        return normalized
    _set_matrix(adata, layer, normalized)
    adata.obs["size_factors"] = scale
    adata.uns["normalize_size_factors"] = {"params": {"layer": layer}}
    return adata if copy else None


# --------------------------------------------------------------------------------------------
# dichotomize
# --------------------------------------------------------------------------------------------
def _column_quantiles(x: Any, quantile: float, chunk: int = 512) -> NDArray[np.float64]:
    """Per-column float64 quantiles (numpy's linear interpolation); sparse in column chunks."""
    if not sp.issparse(x):
        return np.asarray(np.quantile(x.astype(np.float64), quantile, axis=0))
    csc = sp.csc_matrix(x)
    out = np.empty(csc.shape[1], dtype=np.float64)
    for start in range(0, csc.shape[1], chunk):
        block = csc[:, start : start + chunk].toarray().astype(np.float64)
        out[start : start + block.shape[1]] = np.quantile(block, quantile, axis=0)
    return out


def _binarize(x: Any, thresholds: NDArray[np.float64]) -> Any:
    if not sp.issparse(x):
        return np.ascontiguousarray(x > thresholds, dtype=np.uint8)
    if np.all(thresholds >= 0):  # zeros stay 0: the result stays sparse
        csr = sp.csr_matrix(x)
        keep = np.asarray(csr.data, dtype=np.float64) > thresholds[csr.indices]
        out = sp.csr_matrix(
            (keep.astype(np.uint8), csr.indices.copy(), csr.indptr.copy()), shape=csr.shape
        )
        out.eliminate_zeros()
        return out
    return np.ascontiguousarray(sp.csr_matrix(x).toarray() > thresholds, dtype=np.uint8)


def _canonical_sparse(x: Any) -> Any:
    """Return ``x`` as CSR with its duplicate entries summed (copied if that changes it).

    scipy allows several entries for one cell; their sum is its value.
    """
    csr = x.tocsr()
    if not csr.has_canonical_format:
        csr = csr.copy() if csr is x else csr
        csr.sum_duplicates()
    return csr


def _dichotomize_input(x: Any, what: str) -> Any:
    if sp.issparse(x):
        if x.dtype.kind not in "biuf":
            raise InvalidInputError(f"{what} must be numeric, got dtype {x.dtype}")
        x = _canonical_sparse(x)
        values = np.asarray(x.data, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InvalidInputError(f"{what} contains NaN or infinite values; impute them first")
        return x
    arr = _as_float_2d(x, what)
    finite = np.isfinite(arr)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise InvalidInputError(
            f"{what} has {int((~finite).sum())} NaN or infinite values, first at row {row}, "
            f"column {column}; impute or remove them before dichotomising"
        )
    return arr


@overload
def dichotomize(
    data: NDArray[Any], *, quantile: float = ..., layer: str | None = ..., copy: bool = ...
) -> NDArray[np.uint8]: ...
@overload
def dichotomize(
    data: ad.AnnData | ArrayLike,
    *,
    quantile: float = ...,
    layer: str | None = ...,
    copy: bool = ...,
) -> Any: ...
def dichotomize(
    data: Any, *, quantile: float = 0.5, layer: str | None = None, copy: bool = False
) -> Any:
    """Binarise every gene at a per-gene quantile: 1 where the value is above it, else 0.

    The dichotomisation of Hess, Hackenberg & Binder (2020, Bioinformatics 36:5045), §2.5 and
    §3.2: each gene is cut at its median over the samples (the authors also used the 0.7
    quantile) before training Boltzmann machines and Bernoulli VAEs.

    The threshold of gene ``g`` is ``t_g = numpy.quantile(x[:, g], quantile)`` (linear
    interpolation between order statistics: R's type 7, the default of Julia's
    ``Statistics.quantile``), and ``x[i, g] > t_g`` gives 1. **Ties go to 0**: values equal to
    the threshold become 0, so genes with many equal values (e.g. zeros of sparse counts) get
    fewer than ``1 - quantile`` ones; with more than half zeros the median is 0 and a cell is 1
    exactly when the gene is detected. A constant gene becomes all 0 (no error).

    Parameters
    ----------
    data
        Array (n_samples, n_genes), dense or scipy sparse, or AnnData (``X`` or
        ``layers[layer]``). Values need not be counts (any real numbers; no NaN or inf).
    quantile
        Probability of the per-gene threshold, 0 <= quantile <= 1 (default 0.5: the median;
        1 makes every value 0).
    layer
        AnnData only: dichotomise ``layers[layer]`` (the result replaces it).
    copy
        AnnData only: return a dichotomised copy instead of modifying ``data``.

    Returns
    -------
    numpy.ndarray or scipy.sparse matrix or anndata.AnnData or None
        Array input: uint8 0/1 array of the same shape (sparse input gives a sparse CSR uint8
        result when all thresholds are >= 0, else a dense array). AnnData: ``None`` (in place)
        or the copy; ``var["dichotomize_threshold"]`` holds the thresholds and
        ``uns["dichotomize"]["params"]`` the quantile and layer.

    Raises
    ------
    InvalidInputError
        If ``quantile`` is outside [0, 1], or the matrix is not numeric 2-D, is empty or holds
        NaN or infinite values.

    Examples
    --------
    >>> import numpy as np
    >>> dichotomize(np.array([[0, 1], [1, 1], [5, 1], [2, 1]]))
    array([[0, 0],
           [0, 0],
           [1, 0],
           [1, 0]], dtype=uint8)

    """
    if (
        isinstance(quantile, bool)
        or not isinstance(quantile, int | float | np.integer | np.floating)
        or not 0.0 <= float(quantile) <= 1.0
    ):
        raise InvalidInputError(f"quantile must be a number in [0, 1], got {quantile!r}")
    q = float(quantile)
    if not _is_anndata(data):
        if layer is not None:
            raise InvalidInputError("layer= only applies to AnnData input")
        x = _dichotomize_input(data, "data")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise InvalidInputError(f"data is empty (shape {x.shape})")
        return _binarize(x, _column_quantiles(x, q))
    adata = data.copy() if copy else data
    where = _where(adata, layer)
    x = _dichotomize_input(anndata_matrix(adata, layer), where)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidInputError(f"{where} is empty (shape {x.shape})")
    thresholds = _column_quantiles(x, q)
    _set_matrix(adata, layer, _binarize(x, thresholds))
    adata.var["dichotomize_threshold"] = thresholds
    adata.uns["dichotomize"] = {"params": {"quantile": q, "layer": layer}}
    return adata if copy else None
