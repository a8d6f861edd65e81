"""Preprocessing of samples x genes matrices: log transform, variable-gene selection, scaling.

Every function accepts a numpy array (and returns an array; the input is never modified) or an
:class:`anndata.AnnData` (first argument; keyword-only options; ``copy=False`` modifies it in
place and returns ``None`` or returns a modified copy when ``copy=True``), as in scanpy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import scipy.sparse as sp

from omicsembed.exceptions import InvalidInputError

if TYPE_CHECKING:
    import anndata as ad
    from numpy.typing import ArrayLike, NDArray

__all__ = ["highly_variable", "log_transform", "standardize"]


def _is_anndata(data: object) -> bool:
    try:
        import anndata as ad
    except ImportError:  # pragma: no cover - anndata is a dependency
        return False
    return isinstance(data, ad.AnnData)


def _get_matrix(adata: ad.AnnData, layer: str | None) -> Any:
    if layer is None:
        if adata.X is None:
            raise InvalidInputError("adata.X is empty; pass layer= to use a layer")
        return adata.X
    if layer not in adata.layers:
        raise InvalidInputError(
            f"layer {layer!r} not found; available layers: {list(adata.layers.keys())}"
        )
    return adata.layers[layer]


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
    x = _get_matrix(adata, layer)
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
        x: Any = _get_matrix(data, layer)  # type: ignore[arg-type]
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
    x = _get_matrix(adata, layer)
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
